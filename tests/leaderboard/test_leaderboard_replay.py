"""Verify replays every episode: each forgery of a shipped entry is refused with its own rule.

Every forgery is built here from a shipped submission (one env of it, without its claimed results
so that only the replay and bookkeeping rules speak); the honest copy is accepted.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import pytest

from gather_envs.agents.base import Agent, EpisodePolicy
from gather_envs.errors import BackendError
from gather_envs.evaluation.runner import evaluate
from gather_envs.evaluation.seeds import episode_seed
from gather_envs.leaderboard.replay import Replayer
from gather_envs.leaderboard.schema import load_schema, validate
from gather_envs.leaderboard.tracks import DUPLICATE_LIMIT, TRACKS
from gather_envs.leaderboard.verify import SUBMISSION_FILE, verify_submission
from gather_envs.runs import read_records

SUBMISSIONS = Path(__file__).resolve().parents[2] / "baselines" / "submissions"
ENV = "Gather-MultiHop-v0"
Rows = list[dict]


def copy_entry(tmp_path: Path, name: str, env_id: str = ENV) -> Path:
    """A copy of shipped entry ``name`` reduced to ``env_id``, without its claimed results."""
    out = tmp_path / name
    (out / "records").mkdir(parents=True)
    shutil.copyfile(SUBMISSIONS / name / "records" / f"{env_id}.jsonl", out / "records" / f"{env_id}.jsonl")
    data = json.loads((SUBMISSIONS / name / SUBMISSION_FILE).read_text(encoding="utf-8"))
    data["envs"] = {env_id: {"records": [f"records/{env_id}.jsonl"]}}
    write_submission(out, data)
    return out


def write_submission(directory: Path, data: dict) -> None:
    (directory / SUBMISSION_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def edit_submission(directory: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads((directory / SUBMISSION_FILE).read_text(encoding="utf-8"))
    edit(data)
    write_submission(directory, data)


def records_file(directory: Path, env_id: str = ENV) -> Path:
    return directory / "records" / f"{env_id}.jsonl"


def rewrite(directory: Path, edit: Callable[[Rows], Rows], env_id: str = ENV) -> None:
    path = records_file(directory, env_id)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("".join(json.dumps(row) + "\n" for row in edit(rows)), encoding="utf-8")


def rules(directory: Path) -> set[str]:
    return {problem.rule for problem in verify_submission(directory).problems}


@pytest.fixture
def heuristic(tmp_path: Path) -> Path:
    return copy_entry(tmp_path, "heuristic")


def first(rows: Rows, test: Callable[[dict], bool]) -> dict:
    return next(row for row in rows if test(row))


def edit_one(test: Callable[[dict], bool], **changes: object) -> Callable[[Rows], Rows]:
    """An edit that changes the first record passing ``test``."""

    def edit(rows: Rows) -> Rows:
        first(rows, test).update(changes)
        return rows

    return edit


def test_the_honest_copy_is_accepted(heuristic: Path) -> None:
    verification = verify_submission(heuristic)
    assert verification.ok, "\n".join(map(str, verification.problems))
    assert all(record.actions for record in verification.envs[ENV].records)


def test_success_flipped_on_a_wrong_answer_is_refused(heuristic: Path) -> None:
    rewrite(heuristic, edit_one(lambda r: not r["success"] and r["answer"], success=True))
    problems = verify_submission(heuristic).problems
    assert [p.rule for p in problems] == ["replay-success"]
    assert "recorded success true but the replay gives false" in problems[0].message
    assert problems[0].file == str(records_file(heuristic))


def test_reward_disagreeing_with_success_is_refused(heuristic: Path) -> None:
    rewrite(heuristic, edit_one(lambda r: not r["success"], reward=1.0))
    assert rules(heuristic) == {"replay-reward"}


def test_t0_answers_replaced_by_the_gold_answer_are_refused(heuristic: Path) -> None:
    def gold(rows: Rows) -> Rows:
        for row in rows:
            if row["budget"] == 0 and not row["success"]:
                row.update(answer=row["gold_answer"], success=True, reward=1.0)
        return rows

    rewrite(heuristic, gold)
    assert rules(heuristic) == {"replay-answer", "replay-success", "replay-reward"}


def test_more_queries_than_the_budget_with_tool_calls_left_alone_is_refused(heuristic: Path) -> None:
    def six(rows: Rows) -> Rows:
        row = first(rows, lambda r: r["budget"] == 1 and r["tool_calls"] == 1)
        row["queries"] = [*row["queries"], *["Ada Lovelace"] * 5]
        return rows

    rewrite(heuristic, six)
    assert rules(heuristic) == {"replay-queries"}


def test_invalid_actions_termination_with_success_is_refused(heuristic: Path) -> None:
    rewrite(heuristic, edit_one(lambda r: r["success"], termination="invalid_actions"))
    assert rules(heuristic) == {"replay-termination"}


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("family", "single-hop", "replay-family"),
        ("hops", 1, "replay-hops"),
        ("gold_answer", "x", "replay-gold"),
    ],
)
def test_rewritten_task_fields_are_refused(heuristic: Path, field: str, value: object, rule: str) -> None:
    rewrite(heuristic, edit_one(lambda r: r[field] != value, **{field: value}))
    assert rules(heuristic) == {rule}


def test_retrieved_ids_no_search_returns_are_refused(heuristic: Path) -> None:
    def other(rows: Rows) -> Rows:
        row = first(rows, lambda r: r["retrieved_doc_ids"])
        row["retrieved_doc_ids"][0] = ["not-a-document"]
        return rows

    rewrite(heuristic, other)
    assert rules(heuristic) == {"replay-retrieved"}


def trajectory_of(row: dict) -> list[dict]:
    """The honest trajectory of a record, played again through the env."""
    env = gym.make(ENV)
    observation, _ = env.reset(
        seed=row["seed"], options={"task_id": row["task_id"], "max_tool_calls": row["budget"]}
    )
    steps = [{"action": None, "observation": observation, "reward": 0.0}]
    for action in row["actions"]:
        observation, reward, *_ = env.step(action)
        steps.append({"action": action, "observation": observation, "reward": float(reward)})
    env.close()
    return steps


def test_recorded_observations_must_be_the_replays(heuristic: Path) -> None:
    def with_trajectory(rows: Rows) -> Rows:
        row = first(rows, lambda r: r["tool_calls"] >= 2)
        row["trajectory"] = trajectory_of(row)
        return rows

    rewrite(heuristic, with_trajectory)
    assert rules(heuristic) == set()

    def show_gold(rows: Rows) -> Rows:
        row = first(rows, lambda r: r["trajectory"])
        row["trajectory"][1]["observation"] += f"\nThe answer is {row['gold_answer']}."
        return rows

    rewrite(heuristic, show_gold)
    assert rules(heuristic) == {"replay-observations"}


def test_the_best_tasks_records_copied_onto_every_task_are_refused(heuristic: Path) -> None:
    def copy_best(rows: Rows) -> Rows:
        tasks = sorted({r["task_id"] for r in rows})
        best = max(tasks, key=lambda t: sum(r["success"] for r in rows if r["task_id"] == t))
        out = []
        for task in tasks:
            for row in (r for r in rows if r["task_id"] == best):
                seed = episode_seed(TRACKS["quick"].seed, task, row["budget"], row["episode_index"])
                out.append({**row, "task_id": task, "seed": seed})
        return out

    rewrite(heuristic, copy_best)
    found = rules(heuristic)
    assert {"replay-gold", "replay-success"} <= found
    assert not found & {"seed", "tasks", "duplicate", "missing-cell"}  # the bookkeeping alone passes it


def lucky_copies(rows: Rows) -> Rows:
    """Each cell's first episode pasted over the others, keeping their published seeds."""
    kept: dict[tuple[str, int], dict] = {}
    out = []
    for row in rows:
        lucky = kept.setdefault((row["task_id"], row["budget"]), row)
        out.append({**lucky, "episode_index": row["episode_index"], "seed": row["seed"]})
    return out


def test_a_sampled_agents_copied_episodes_are_refused_as_duplicates(tmp_path: Path) -> None:
    entry = copy_entry(tmp_path, "random")
    assert verify_submission(entry).envs[ENV].duplicates.searching < DUPLICATE_LIMIT
    rewrite(entry, lucky_copies)
    problems = verify_submission(entry).problems
    assert [p.rule for p in problems] == ["duplicates"]
    assert "87.5% of the episodes at T >= 1 repeat" in problems[0].message  # 7 of each 8


def test_a_temperature_0_entry_with_identical_trajectories_is_accepted(tmp_path: Path) -> None:
    entry = copy_entry(tmp_path, "random")

    def greedy(rows: Rows) -> Rows:
        for row in rows:
            row["extra"]["agent_settings"]["temperature"] = 0.0
        return lucky_copies(rows)

    rewrite(entry, greedy)
    edit_submission(entry, lambda data: data["agent"]["settings"].update(temperature=0.0))
    verification = verify_submission(entry)
    assert verification.ok, "\n".join(map(str, verification.problems))
    assert verification.envs[ENV].duplicates.searching == pytest.approx(7 / 8)


def test_failures_relabelled_as_infrastructure_errors_are_refused(heuristic: Path) -> None:
    def relabel(rows: Rows) -> Rows:
        failed = [r for r in rows if not r["success"]][: len(rows) // 25]  # 4%, under the 5% allowance
        for row in failed:
            row.update(termination="infra_error", infra_error="BackendError: timeout")
        return rows

    rewrite(heuristic, relabel)
    assert rules(heuristic) == {"infra-finished"}


def test_an_honest_infrastructure_error_cut_short_is_accepted(heuristic: Path) -> None:
    def cut(rows: Rows) -> Rows:
        row = first(rows, lambda r: r["tool_calls"] >= 2 and r["invalid_actions"] == 0)
        row.update(termination="infra_error", infra_error="BackendError: timeout", success=False, answer=None)
        row.update(actions=row["actions"][:1], queries=row["queries"][:1], tool_calls=1, reward=0.0)
        row.update(retrieved_doc_ids=row["retrieved_doc_ids"][:1])
        return rows

    rewrite(heuristic, cut)
    assert rules(heuristic) == set()


class _SearchThenFail(EpisodePolicy):
    def __init__(self) -> None:
        self.turn = 0

    def act(self, observation: str, info: dict) -> str:
        self.turn += 1
        if self.turn > 1:
            raise BackendError("simulated server: connection refused")
        return "search[Ada Lovelace]"


class SearchThenFailAgent(Agent):
    """Searches once, then its backend fails: every episode is an infrastructure error."""

    agent_id = "search-then-fail"

    def __init__(self, env: object) -> None:
        pass

    def start(self, seed: int) -> EpisodePolicy:
        return _SearchThenFail()


def test_eval_records_the_actions_an_infrastructure_error_cut_short(tmp_path: Path) -> None:
    records = evaluate(
        ENV, SearchThenFailAgent, n=1, budgets=(2,), tasks=2, progress=False, retries=0, record_actions=True
    )
    assert [r.termination for r in records] == ["infra_error", "infra_error"]
    replayer = Replayer()
    for record in records:
        assert record.actions == ("search[Ada Lovelace]",) and record.tool_calls == 1
        assert record.queries == ("Ada Lovelace",) and record.infra_error is not None
        replay = replayer.replay(ENV, dict(gym.spec(ENV).kwargs), record, record.actions)
        assert not replay.finished
        assert (replay.tool_calls, replay.queries, replay.retrieved_doc_ids, replay.gold_answer) == (
            record.tool_calls, record.queries, record.retrieved_doc_ids, record.gold_answer,
        )  # fmt: skip
    replayer.close()


def test_a_distractor_run_with_its_env_kwargs_relabelled_is_refused(tmp_path: Path) -> None:
    entry = copy_entry(tmp_path, "heuristic")
    path = records_file(entry)
    path.unlink()
    settings = json.loads((entry / SUBMISSION_FILE).read_text(encoding="utf-8"))["agent"]["settings"]
    evaluate(
        ENV, "heuristic", n=8, budgets=TRACKS["quick"].budgets, tasks=20, seed=0, out=path, progress=False,
        env_kwargs={"scope": "distractor", "top_k": 10}, agent_options=settings, record_actions=True,
    )  # fmt: skip
    registered = dict(gym.spec(ENV).kwargs)
    rewrite(entry, lambda rows: [{**row, "env_kwargs": registered} for row in rows])
    assert rules(entry) == {"replay-retrieved"}


def test_records_without_actions_are_refused(heuristic: Path) -> None:
    rewrite(heuristic, lambda rows: [{**row, "actions": None} for row in rows])
    problems = verify_submission(heuristic).problems
    assert [p.rule for p in problems] == ["actions"]
    assert "gather-envs eval --actions" in problems[0].message


def test_actions_after_the_episode_ended_are_refused(heuristic: Path) -> None:
    def more(rows: Rows) -> Rows:
        rows[0]["actions"].append("search[more]")
        return rows

    rewrite(heuristic, more)
    assert rules(heuristic) == {"replay-actions"}


def test_an_action_too_long_to_be_a_reply_is_refused_unplayed(heuristic: Path) -> None:
    rewrite(heuristic, edit_one(lambda r: True, actions=["{" * 1_000_000]))
    problems = verify_submission(heuristic).problems
    assert [p.rule for p in problems] == ["replay"] and "over the 65536" in problems[0].message


def test_an_unfinished_episode_that_claims_no_infrastructure_error_is_refused(heuristic: Path) -> None:
    rewrite(heuristic, edit_one(lambda r: r["tool_calls"] >= 1, actions=[]))
    assert rules(heuristic) == {"replay-unfinished"}


def test_gzip_compressed_records_are_read(heuristic: Path) -> None:
    plain = records_file(heuristic)
    packed = plain.with_name(plain.name + ".gz")
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    edit_submission(heuristic, lambda data: data["envs"][ENV].update(records=[f"records/{packed.name}"]))
    assert rules(heuristic) == set()
    assert len(read_records(packed)) == 800


@pytest.mark.parametrize(
    "name", ["../random/records/Gather-MultiHop-v0.jsonl", "ABSOLUTE", "records/link.jsonl"]
)
def test_records_paths_must_stay_inside_the_submission(heuristic: Path, name: str) -> None:
    other = copy_entry(heuristic.parent, "random")
    target = records_file(other)
    if name == "ABSOLUTE":
        name = str(target)
    elif name.endswith("link.jsonl"):
        os.symlink(target, heuristic / name)
    edit_submission(heuristic, lambda data: data["envs"][ENV].update(records=[name]))
    problems = verify_submission(heuristic).problems
    assert [p.rule for p in problems] == ["path"]
    assert "is not inside the submission directory" in problems[0].message


def test_a_name_with_a_trailing_newline_is_refused(heuristic: Path) -> None:
    edit_submission(heuristic, lambda data: data.update(name="heuristic\n"))
    assert rules(heuristic) == {"schema", "control-character"}
    assert list(validate("random\n", load_schema("submission")["properties"]["name"]))


@pytest.mark.parametrize("field", ["notes", "model", "authors"])
def test_control_characters_in_free_text_are_refused(heuristic: Path, field: str) -> None:
    value = "bold \x1b[1mclaim\x1b[0m"
    edit_submission(heuristic, lambda data: data.update({field: [value] if field == "authors" else value}))
    problems = verify_submission(heuristic).problems
    assert [p.rule for p in problems] == ["control-character"]
    assert "U+001B" in problems[0].message


def test_deep_json_in_a_records_line_is_one_problem(heuristic: Path) -> None:
    path = records_file(heuristic)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[5] = "[" * 200_000 + "]" * 200_000 + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    problems = verify_submission(heuristic).problems
    assert [p.rule for p in problems] == ["records"]
    assert ":6: corrupt line" in problems[0].message and "nested deeper than" in problems[0].message


def test_deep_json_in_submission_json_is_one_problem(heuristic: Path) -> None:
    (heuristic / SUBMISSION_FILE).write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    problems = verify_submission(heuristic).problems
    assert [p.rule for p in problems] == ["json"] and "nested deeper than" in problems[0].message
