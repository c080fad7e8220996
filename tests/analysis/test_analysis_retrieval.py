"""Retrieval diagnostics: agents of known behaviour give known evidence recall and success splits."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import pytest

from gather_envs.agents.base import Agent, EpisodePolicy
from gather_envs.agents.scripted import OracleAgent
from gather_envs.analysis import episode_retrieval, retrieval_diagnostics
from gather_envs.cli import main
from gather_envs.evaluation import evaluate
from gather_envs.records import EpisodeRecord
from gather_envs.runs import append_records, read_records

ENV_ID = "Gather-MultiHop-v0"
TASKS = 6


class _Hoarder(Agent):
    """Follows the gold path (so it retrieves every supporting document), then answers wrong."""

    agent_id = "hoarder"

    def __init__(self, env: Any) -> None:
        self._oracle = OracleAgent(env)

    def start(self, seed: int) -> EpisodePolicy:
        return _HoarderPolicy(self._oracle.start(seed))


class _HoarderPolicy(EpisodePolicy):
    def __init__(self, oracle: EpisodePolicy) -> None:
        self._oracle = oracle

    def act(self, observation: str, info: dict[str, Any]) -> str:
        action = self._oracle.act(observation, info)
        return action if action.startswith("search") else "answer[not this]"


class _Repeater(Agent):
    """Searches the same words every turn, whatever it sees, then gives up."""

    agent_id = "repeater"

    def start(self, seed: int) -> EpisodePolicy:
        return _RepeaterPolicy()


class _RepeaterPolicy(EpisodePolicy):
    def act(self, observation: str, info: dict[str, Any]) -> str:
        if info["tool_calls_left"] > 0:
            return "search[the same  Question]" if info["tool_calls_used"] else "search[The same question]"
        return "answer[no idea]"


def _run(agent: Any, budgets: list[int]) -> list[EpisodeRecord]:
    return evaluate(ENV_ID, agent, n=2, budgets=budgets, tasks=TASKS, seed=5, progress=False)


def test_an_agent_that_finds_the_evidence_and_never_uses_it_has_full_recall_and_no_success() -> None:
    records = _run(_Hoarder(gym.make(ENV_ID).unwrapped), [5])
    diagnostics = retrieval_diagnostics(records)
    assert diagnostics.mean_recall == 1.0
    assert (
        diagnostics.with_full_evidence.episodes == len(records) and diagnostics.with_full_evidence.rate == 0.0
    )
    assert diagnostics.without_full_evidence.episodes == 0 and diagnostics.not_recorded == 0


def test_the_oracle_succeeds_exactly_when_its_budget_lets_it_retrieve_all_evidence() -> None:
    records = _run("oracle", [1, 5])
    diagnostics = retrieval_diagnostics(records)
    assert diagnostics.with_full_evidence.rate == 1.0
    assert diagnostics.without_full_evidence.rate == 0.0
    assert diagnostics.without_full_evidence.episodes == sum(r.budget == 1 for r in records)
    for record in records:
        row = episode_retrieval(record)
        assert row.searches == min(record.budget, record.hops) and row.full_evidence is (
            record.budget >= record.hops
        )
    assert sum(r.episodes for r in diagnostics.by_hops.values()) == len(records)
    assert sum(diagnostics.searches_histogram.values()) == len(records)


def test_repeated_queries_count_every_search_after_the_first() -> None:
    records = _run(_Repeater(), [3])
    diagnostics = retrieval_diagnostics(records)
    assert diagnostics.repeated_queries == 2 * len(records)
    assert diagnostics.episodes_with_repeats == len(records)
    assert diagnostics.searches_histogram == {3: len(records)}


def test_records_keep_retrieved_doc_ids_through_a_file_and_old_records_count_as_not_recorded(
    tmp_path,
) -> None:
    records = _run("oracle", [5])
    path = tmp_path / "run.jsonl"
    append_records(path, records)
    assert read_records(path) == records
    assert all(r.retrieved_doc_ids and r.supporting_doc_ids for r in records)
    assert all(len(r.retrieved_doc_ids or ()) == len(r.queries) for r in records)  # one list per search
    old = {
        k: v for k, v in records[0].to_json().items() if k not in ("retrieved_doc_ids", "supporting_doc_ids")
    }
    old["schema_version"] = 1
    legacy = EpisodeRecord.from_json(old)
    assert legacy.retrieved_doc_ids is None
    diagnostics = retrieval_diagnostics([legacy])
    assert diagnostics.not_recorded == 1 and diagnostics.mean_recall is None


@pytest.mark.parametrize("fmt", ["table", "md", "json"])
def test_report_shows_the_retrieval_section(tmp_path, capsys, fmt) -> None:
    path = tmp_path / "run.jsonl"
    append_records(path, _run("oracle", [1, 5]))
    assert main(["report", str(path), "--bootstrap", "0", "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        retrieval = json.loads(out)["retrieval"]["oracle"]
        assert retrieval["with_full_evidence"]["rate"] == 1.0
    else:
        assert "Retrieval diagnostics" in out and "success, all evidence found" in out
