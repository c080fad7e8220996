"""Cross-policy swap: a composite agent whose known turn structure gives known swap tables."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import pytest

from gather_envs.agents.base import Agent, EpisodePolicy
from gather_envs.agents.swap import SWAP_KEY, SwapAgent
from gather_envs.analysis.swap import swap_table
from gather_envs.cli import main
from gather_envs.errors import ConfigError, RecordsError
from gather_envs.evaluation import evaluate
from gather_envs.records import EpisodeRecord
from gather_envs.runs import append_records

ENV_ID = "Gather-SingleHop-v0"
SEARCHES = 2
BUDGET = 3
TURNS = SEARCHES + 1  # two searches, then the answer
N, TASKS = 2, 6


class _Searcher(Agent):
    """Searches ``SEARCHES`` times, then answers: the gold answer if ``knows``, else a wrong one.

    Only its last turn (the answer) decides the episode, so a swap succeeds iff the answering
    policy knows.
    """

    def __init__(self, name: str, knows: bool) -> None:
        self.agent_id, self.knows = name, knows
        self.corpus: Any = gym.make(ENV_ID).unwrapped.corpus  # type: ignore[attr-defined]

    def start(self, seed: int) -> EpisodePolicy:
        return _SearcherPolicy(self)


class _SearcherPolicy(EpisodePolicy):
    def __init__(self, agent: _Searcher) -> None:
        self._agent = agent
        self.handed: list[Any] | None = None

    def take_over(self, turns: list[Any]) -> None:
        self.handed = turns

    def act(self, observation: str, info: dict[str, Any]) -> str:
        if info["tool_calls_used"] < SEARCHES:
            return f"search[{self._agent.agent_id} query {info['tool_calls_used']}]"
        task = self._agent.corpus.task(info["task_id"])
        return f"answer[{task.answer if self._agent.knows else 'not it'}]"


def _run(agent: Any, **options: Any) -> list[EpisodeRecord]:
    return evaluate(
        ENV_ID, agent, n=N, budgets=[BUDGET], tasks=TASKS, seed=7, progress=False, agent_options=options
    )


def _swap(first: Agent, then: Agent, after: int) -> list[EpisodeRecord]:
    return _run("swap", first=first, then=then, after=after)


def test_a_swap_succeeds_exactly_when_the_policy_that_answers_knows() -> None:
    knower, guesser = _Searcher("knower", True), _Searcher("guesser", False)
    runs = [_run(knower), _run(guesser)]
    for after in range(TURNS + 1):
        runs += [_swap(knower, guesser, after), _swap(guesser, knower, after)]
    rows = swap_table(runs, bootstrap=100)
    assert len(rows) == 2 * (TURNS + 1)
    for row in rows:
        answered_by_first = row.after >= TURNS
        knows = (row.first == "knower") == answered_by_first
        assert row.pass_at_k == (1.0 if knows else 0.0), row
        pure_first, pure_then = float(row.first == "knower"), float(row.then == "knower")
        assert row.vs_first == pytest.approx(row.pass_at_k - pure_first)
        assert row.vs_then == pytest.approx(row.pass_at_k - pure_then)
        assert (row.vs_first_p < 0.05) == (row.vs_first != 0) and (row.vs_then_p < 0.05) == (row.vs_then != 0)


def test_swap_records_say_who_played_which_turns_and_the_history_is_handed_over() -> None:
    knower, guesser = _Searcher("knower", True), _Searcher("guesser", False)
    records = _swap(knower, guesser, 1)
    assert {r.agent_id for r in records} == {"knower>guesser@1"}
    swap = records[0].extra[SWAP_KEY]
    assert swap == {
        "first": "knower",
        "then": "guesser",
        "after": 1,
        "first_turns": 1,
        "handover": "take_over",
    }
    assert records[0].queries == ("knower query 0", "guesser query 1")
    agent = SwapAgent(gym.make(ENV_ID).unwrapped, first=knower, then=guesser, after=1)
    policy = agent.start(0)
    env = gym.make(ENV_ID)
    observation, info = env.reset(seed=0)
    action = policy.act(observation, info)
    observation, _, _, _, info = env.step(action)
    policy.act(observation, info)
    handed = policy._then.handed  # type: ignore[attr-defined]
    assert handed is not None and [turn[2] for turn in handed] == [action]


def test_the_swap_agent_builds_registered_agents_and_refuses_missing_options() -> None:
    env = gym.make(ENV_ID).unwrapped
    agent = SwapAgent(env, first="oracle", then="random", after=2, then_options={"search_probability": 0.0})
    assert agent.agent_id == "oracle>random@2"
    with pytest.raises(ConfigError, match="needs the option then"):
        SwapAgent(env, first="oracle", after=1)


def test_a_policy_without_take_over_is_replayed_so_the_oracle_picks_up_where_the_oracle_left() -> None:
    """oracle → oracle after J turns must play exactly like the oracle: the replay restores its count."""
    pure = evaluate("Gather-MultiHop-v0", "oracle", n=1, budgets=[5], tasks=5, progress=False)
    for after in (1, 2):
        swapped = evaluate(
            "Gather-MultiHop-v0", "swap", n=1, budgets=[5], tasks=5, progress=False,
            agent_options={"first": "oracle", "then": "oracle", "after": after},
        )  # fmt: skip
        assert [r.queries for r in swapped] == [r.queries for r in pure]
        assert all(r.success for r in swapped) and swapped[0].extra[SWAP_KEY]["handover"] == "replay"


def test_analyze_swap_prints_the_table_and_names_a_missing_pure_run(tmp_path, capsys) -> None:
    knower, guesser = _Searcher("knower", True), _Searcher("guesser", False)
    paths = []
    for i, records in enumerate([_run(knower), _run(guesser), _swap(knower, guesser, 3)]):
        paths.append(tmp_path / f"run{i}.jsonl")
        append_records(paths[-1], records)
    assert main(["analyze", "swap", *map(str, paths), "--bootstrap", "20", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / f"swap_T{BUDGET}_k1.png").read_bytes().startswith(b"\x89PNG")
    assert "knower → guesser" in out and "1.000" in out
    assert main(["analyze", "swap", str(paths[0]), str(paths[2])]) == 2
    assert "needs the pure run(s) of guesser" in capsys.readouterr().err
    with pytest.raises(RecordsError, match="no swap run"):
        swap_table([_run(knower)])
