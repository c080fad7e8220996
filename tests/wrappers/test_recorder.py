"""RecordPassAtKT: one complete, correct record per finished episode, in memory and on disk."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import SMALL_WORLD
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode

from gather_envs.records import (
    AGENT_SETTINGS_KEY,
    EPISODE_INDEX_UNKNOWN,
    RECORD_SCHEMA_VERSION,
    EpisodeRecord,
)
from gather_envs.runs import read_records
from gather_envs.wrappers import RecordPassAtKT

ENV_ID = "Gather-MultiHop-v0"
NUM_ENVS = 3
VECTOR_STEPS = 40
RESET_SEED = 100
FIRST_INDEX = 10


def recorded_env(**wrapper_kwargs: Any) -> RecordPassAtKT:
    return RecordPassAtKT(gym.make(ENV_ID, world=SMALL_WORLD), **wrapper_kwargs)


def inner(env: gym.Env) -> Any:
    """The GatherEnv under the wrappers (typed loosely: its attributes are env-specific)."""
    return env.unwrapped


def gold_action(env: Any, info: dict[str, Any], answer_right: bool = True) -> str:
    """Walk the task's gold path while calls last, then answer (rightly or not)."""
    task = env.corpus.task(info["task_id"])
    used = info["tool_calls_used"]
    if used < len(task.gold_path) and info["tool_calls_left"] > 0:
        return f"search[{task.gold_path[used].query}]"
    return f"answer[{task.answer if answer_right else 'no idea'}]"


def play(
    env: RecordPassAtKT, seed: int | None = None, answer_right: bool = True, **options: Any
) -> list[str]:
    """One episode along the gold path; returns the actions taken."""
    _, info = env.reset(seed=seed, options=options or None)
    actions = []
    while True:
        actions.append(gold_action(inner(env), info, answer_right))
        _, _, terminated, truncated, info = env.step(actions[-1])
        if terminated or truncated:
            return actions


def test_records_a_solved_episode_completely() -> None:
    env = recorded_env(agent_id="oracle", agent_settings={"temperature": 0.0})
    task = inner(env).tasks[2]
    actions = play(env, seed=5, task_id=task.task_id, max_tool_calls=4)
    [record] = env.records
    assert record.schema_version == RECORD_SCHEMA_VERSION
    assert record.env_id == ENV_ID
    assert record.env_kwargs == {"pinned_family": "bridge", "world": SMALL_WORLD}
    assert record.corpus_hash == inner(env).corpus.content_hash
    assert (record.task_id, record.family, record.hops) == (task.task_id, task.family, task.hops)
    assert record.seed == 5 and record.budget == 4
    assert record.episode_index == EPISODE_INDEX_UNKNOWN
    assert record.tool_calls == len(task.gold_path) == len(actions) - 1
    assert record.invalid_actions == 0
    assert record.success and record.reward == 1.0
    assert record.answer == task.answer == record.gold_answer
    assert record.termination == "answered"
    assert record.wall_time > 0
    assert record.agent_id == "oracle"
    assert record.queries == tuple(step.query for step in task.gold_path)
    assert record.trajectory is None
    assert record.extra == {AGENT_SETTINGS_KEY: {"temperature": 0.0}}
    assert not record.is_infra_error


def test_a_wrong_answer_and_a_short_budget_are_recorded_as_failures() -> None:
    env = recorded_env()
    task = inner(env).tasks[0]
    play(env, seed=1, answer_right=False, task_id=task.task_id, max_tool_calls=1)
    [record] = env.records
    assert not record.success and record.reward == 0.0
    assert record.answer == "no idea" and record.gold_answer == task.answer
    assert record.tool_calls == 1 and record.budget == 1
    assert record.queries == (task.gold_path[0].query,)


def test_too_many_invalid_actions_are_recorded_as_a_terminated_failure() -> None:
    env = recorded_env()
    env.reset(seed=2, options={"max_tool_calls": 0})
    terminated = truncated = False
    while not terminated:
        _, _, terminated, truncated, _ = env.step("search[anything]")
    assert not truncated
    [record] = env.records
    assert record.termination == "invalid_actions" and record.reward == 0.0
    assert record.invalid_actions == inner(env).max_invalid_actions + 1
    assert record.answer is None and not record.success and record.tool_calls == 0


def test_an_outer_time_limit_truncation_is_recorded_with_the_gold_answer() -> None:
    env = RecordPassAtKT(gym.wrappers.TimeLimit(gym.make(ENV_ID, world=SMALL_WORLD), max_episode_steps=1))
    _, info = env.reset(seed=0)
    env.step(gold_action(inner(env), info))
    [record] = env.records
    assert record.termination == "truncated" and not record.success
    assert record.gold_answer == inner(env).corpus.task(info["task_id"]).answer
    task = inner(env).corpus.task(info["task_id"])
    assert record.tool_calls == 1 and record.queries == (task.gold_path[0].query,)


def test_trajectory_holds_every_action_and_observation_when_asked() -> None:
    env = recorded_env(record_trajectory=True)
    observation, info = env.reset(seed=3)
    steps = [{"action": None, "observation": observation, "reward": 0.0}]
    done = False
    while not done:
        action = gold_action(inner(env), info)
        observation, reward, terminated, truncated, info = env.step(action)
        steps.append({"action": action, "observation": observation, "reward": reward})
        done = terminated or truncated
    assert env.records[0].trajectory == tuple(steps)


def test_an_unfinished_episode_is_not_recorded() -> None:
    env = recorded_env()
    env.reset(seed=0)
    env.step("search[something]")
    env.reset(seed=1)
    assert env.records == []
    play(env, seed=2)
    assert [r.seed for r in env.records] == [2]
    assert env.episode_count == 3


def test_episode_index_attribute_applies_to_the_next_episode_only() -> None:
    env = recorded_env()
    env.next_episode_index = 7
    play(env, seed=0)
    play(env, seed=1)
    assert [r.episode_index for r in env.records] == [7, EPISODE_INDEX_UNKNOWN]


def test_each_record_is_on_disk_before_the_next_episode_starts(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    env = recorded_env(path=path, agent_id="a")
    for episode in range(4):
        play(env, seed=episode)
        assert len(read_records(path)) == episode + 1
    assert read_records(path) == env.records
    env.close()


def test_spec_round_trip_and_pickle_keep_the_wrapper(tmp_path: Path) -> None:
    env = recorded_env(agent_id="a", path=tmp_path / "r.jsonl", record_trajectory=True)
    spec = env.spec
    assert spec is not None
    wrapper_spec = spec.additional_wrappers[-1]
    assert wrapper_spec.kwargs is not None and wrapper_spec.kwargs["agent_id"] == "a"
    rebuilt = gym.make(EnvSpec.from_json(spec.to_json()))
    assert isinstance(rebuilt, RecordPassAtKT)
    assert rebuilt.agent_id == "a" and rebuilt.record_trajectory and rebuilt.path == tmp_path / "r.jsonl"
    play(env, seed=0)
    clone = pickle.loads(pickle.dumps(env))
    play(clone, seed=1)
    assert [r.seed for r in clone.records] == [0, 1]
    assert [r.seed for r in read_records(tmp_path / "r.jsonl")] == [0, 1]


# --------------------------------------------------------------------------------------------
# Vector envs


def vector_rollout(envs: Any, mode: AutoresetMode) -> list[list[str]]:
    """Gold-path actions for every sub-env; returns each sub-env's ended task ids, in order."""
    corpus_env = gym.make(ENV_ID, world=SMALL_WORLD).unwrapped
    envs.set_attr("next_episode_index", [FIRST_INDEX + i for i in range(envs.num_envs)])
    _, infos = envs.reset(seed=RESET_SEED)
    ended: list[list[str]] = [[] for _ in range(envs.num_envs)]
    resetting = np.zeros(envs.num_envs, dtype=bool)
    for step in range(VECTOR_STEPS):
        tasks = list(infos["task_id"])
        actions = []
        for i in range(envs.num_envs):
            info = {key: infos[key][i] for key in ("task_id", "tool_calls_used", "tool_calls_left")}
            actions.append(gold_action(corpus_env, info, answer_right=(step + i) % 3 > 0))
        _, _, terminated, truncated, infos = envs.step(tuple(actions))
        for i in np.flatnonzero((terminated | truncated) & ~resetting):
            ended[i].append(tasks[i])
        if mode == AutoresetMode.NEXT_STEP:
            resetting = terminated | truncated
    return ended


def check_vector_records(per_env: list[list[EpisodeRecord]], ended: list[list[str]]) -> None:
    for i, (records, tasks) in enumerate(zip(per_env, ended, strict=True)):
        assert len(tasks) >= 3, "the rollout should finish several episodes per sub-env"
        assert [r.task_id for r in records] == tasks
        assert (records[0].seed, records[0].episode_index) == (RESET_SEED + i, FIRST_INDEX + i)
        assert all(r.seed is None and r.episode_index == EPISODE_INDEX_UNKNOWN for r in records[1:])
        for record in records:
            assert record.termination == "answered" and record.env_id == ENV_ID
            assert record.tool_calls == len(record.queries) == min(record.hops, record.budget)
            assert record.success == (record.answer == record.gold_answer)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_sync_vector_env_records_every_episode_across_autoresets(mode: AutoresetMode) -> None:
    envs: Any = gym.make_vec(
        ENV_ID,
        num_envs=NUM_ENVS,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": mode},
        wrappers=[functools.partial(RecordPassAtKT, agent_id="vec")],
        world=SMALL_WORLD,
    )
    ended = vector_rollout(envs, mode)
    per_env = list(envs.get_attr("records"))
    check_vector_records(per_env, ended)
    assert any(r.success for records in per_env for r in records)
    assert any(not r.success for records in per_env for r in records)
    envs.close()


def test_async_vector_env_workers_share_one_records_file(tmp_path: Path) -> None:
    path = tmp_path / "async.jsonl"
    envs: Any = gym.make_vec(
        ENV_ID,
        num_envs=NUM_ENVS,
        vectorization_mode="async",
        vector_kwargs={"shared_memory": False},
        wrappers=[functools.partial(RecordPassAtKT, agent_id="vec", path=str(path))],
        world=SMALL_WORLD,
    )
    try:
        ended = vector_rollout(envs, AutoresetMode.NEXT_STEP)
        per_env = [list(records) for records in envs.get_attr("records")]
    finally:
        envs.close()
    check_vector_records(per_env, ended)
    in_memory = sorted(r.to_line() for records in per_env for r in records)
    assert sorted(r.to_line() for r in read_records(path)) == in_memory


def test_record_actions_keeps_the_raw_actions_without_observations() -> None:
    import gymnasium as gym

    from gather_envs.wrappers import RecordPassAtKT

    env = RecordPassAtKT(gym.make("Gather-SingleHop-v0"), record_actions=True)
    env.reset(seed=0)
    env.step("Thought: look. search[anything at all]")
    env.step("answer[no idea]")
    record = env.records[-1]
    assert record.actions == ("Thought: look. search[anything at all]", "answer[no idea]")
    assert record.trajectory is None
    assert gym.make(env.spec).record_actions is True  # survives the spec round trip
