"""The episode driver every adapter shares: rows map onto reset, the env's rules stay the env's."""

from __future__ import annotations

import json
import sys

import pytest

from gather_envs.errors import ConfigError, RetrieverError
from gather_envs.integrations import MissingExtraError
from gather_envs.integrations.episodes import (
    CUTOFF_ACTION,
    TERMINATION_VOID,
    EpisodeDriver,
    parse_env_kwargs,
    reset_arguments,
)
from gather_envs.optional import require
from gather_envs.records import TERMINATION_TRUNCATED
from gather_envs.runs import read_records

from .conftest import ENV_ID, replay

ROW = {"env_id": ENV_ID, "env_kwargs": json.dumps({"split": "train"}), "seed": 3, "max_tool_calls": 1}


def _row(oracle, index: int = 0, **extra):
    task = [t for t in oracle.splits["train"] if t.family == "bridge" and t.hops == 2][index]
    return {**ROW, "task_id": task.task_id, **extra}, task


def test_reset_arguments_read_top_level_and_extra_info():
    assert reset_arguments({"task_id": "b-1", "seed": 4, "max_tool_calls": 2}) == (
        4,
        {"task_id": "b-1", "max_tool_calls": 2},
    )
    nested = {"extra_info": {"task_index": 7, "max_tool_calls": 0}}
    assert reset_arguments(nested) == (None, {"task_index": 7, "max_tool_calls": 0})


def test_env_kwargs_accept_dicts_and_json_strings_and_reject_garbage():
    assert parse_env_kwargs('{"top_k": 1}') == {"top_k": 1}
    assert parse_env_kwargs({"top_k": 2}) == {"top_k": 2}
    assert parse_env_kwargs(None) == {}
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_env_kwargs("{top_k")


def test_driver_episode_equals_the_gymnasium_episode(oracle, records_path):
    row, task = _row(oracle)
    actions = [oracle.text_action("react", task, step) for step in range(task.hops + 1)]
    driver = EpisodeDriver(records_path=records_path)
    observation, info = driver.reset(row)
    assert info["task_id"] == task.task_id and info["max_tool_calls"] == 1
    results = [driver.step(action) for action in actions]
    expected = replay(ENV_ID, {"split": "train"}, row, actions)
    assert [(r.observation, r.reward, r.terminated, r.truncated) for r in results] == [
        (o, r, te, tr) for o, r, te, tr, _ in expected
    ]
    # T = 1 on a 2-hop task: the second search is rejected by the env, not by the driver.
    assert results[1].info["action_type"] == "invalid"
    (record,) = read_records(records_path)
    assert record.tool_calls == 1 and record.invalid_actions == 1 and record.seed == row["seed"]
    assert record.reward == driver.total_reward == expected[-1][1]


def test_actions_after_the_end_change_nothing_and_say_so(oracle):
    row, task = _row(oracle)
    driver = EpisodeDriver()
    driver.reset(row)
    driver.step(f"answer[{task.answer}]")
    after = driver.step("search[anything]")
    assert "episode is over" in after.observation and after.reward == 0.0
    assert driver.total_reward == 1.0 and len(driver.records) == 1


def test_cut_records_an_unfinished_episode_as_truncated(oracle, records_path):
    row, task = _row(oracle)
    driver = EpisodeDriver(records_path=records_path, record_trajectory=True)
    driver.reset(row)
    driver.step(f"search[{task.gold_path[0].query}]")
    driver.cut()
    driver.cut()  # idempotent
    (record,) = read_records(records_path)
    assert record.termination == TERMINATION_TRUNCATED and not record.success and record.reward == 0.0
    assert record.tool_calls == 1 and record.queries == (task.gold_path[0].query,)
    assert record.trajectory is not None and record.trajectory[-1]["action"] == CUTOFF_ACTION


def test_the_cutoff_action_is_an_ordinary_invalid_action_for_the_model(oracle):
    row, _ = _row(oracle)
    driver = EpisodeDriver()
    driver.reset(row)
    result = driver.step(CUTOFF_ACTION)
    assert not result.done and result.info["action_type"] == "invalid"


def test_reset_cuts_off_the_previous_unfinished_episode(oracle):
    row, _ = _row(oracle)
    other, _ = _row(oracle, 1)
    driver = EpisodeDriver()
    driver.reset(row)
    driver.reset(other)
    assert [r.termination for r in driver.records] == [TERMINATION_TRUNCATED]


def test_missing_library_names_the_extra():
    with pytest.raises(MissingExtraError, match=r'pip install "gather-envs\[trl\]"'):
        require("gather_envs_no_such_module", "trl")


@pytest.mark.parametrize("call", ["register", "GatherGEMEnv"])
def test_the_gem_adapter_imports_without_gem_and_names_its_extra(monkeypatch, call):
    from gather_envs.integrations import gem as gather_gem

    for module in ("gem", "gem.core", "gem.envs", "gem.envs.registration"):
        monkeypatch.setitem(sys.modules, module, None)  # as if gem-llm were not installed
    gather_gem.CLASSES.clear()
    try:
        with pytest.raises(MissingExtraError, match=r'pip install "gather-envs\[gem\]"'):
            gather_gem.register() if call == "register" else gather_gem.GatherGEMEnv  # noqa: B018
    finally:
        gather_gem.CLASSES.clear()



def test_a_failing_retriever_voids_the_episode_unrecorded_and_the_driver_plays_on(tmp_path, flaky_retriever):
    url, handler = flaky_retriever
    records = tmp_path / "train.jsonl"
    driver = EpisodeDriver(env_kwargs={"retriever": url, "scope": "open"}, records_path=records)
    row = {"env_id": ENV_ID, "seed": 1, "max_tool_calls": 2}
    try:
        driver.reset(row)
        with pytest.raises(RetrieverError, match="HTTP 503: index is reloading, try later$"):
            driver.step("search[far isle]")
        assert driver.done and driver.termination == TERMINATION_VOID
        assert driver.total_reward == 0.0 and driver.last_record is None
        driver.cut()  # nothing to cut: a cut would record the void episode as a truncated failure
        assert "is over (retriever_error)" in driver.step("answer[x]").observation
        handler.mode = "anonymous"  # the retriever is back: the same driver and env play the next episode
        driver.reset(row)
        observation = driver.step("search[far isle]").observation
        assert "It is far away." in observation
        driver.step("answer[Far Isle]")
        assert driver.done and driver.last_record is not None
    finally:
        driver.close()
    (record,) = read_records(records)  # the voided episode left no record, not even a failed one
    assert record.tool_calls == 1 and record.queries == ("far isle",) and record.answer == "Far Isle"
