"""skyrl-gym adapter: ``skyrl_gym.make`` round trips and episodes equal to Gymnasium's."""

from __future__ import annotations

import json

import pytest

skyrl_gym = pytest.importorskip("skyrl_gym", reason="the SkyRL adapter needs the [skyrl] extra")

from conftest import SMALL_WORLD  # noqa: E402

from gather_envs.errors import ConfigError  # noqa: E402
from gather_envs.integrations import chat, skyrl  # noqa: E402
from gather_envs.integrations.dataset import task_rows, to_layout  # noqa: E402
from gather_envs.records import TERMINATION_TRUNCATED  # noqa: E402
from gather_envs.runs import read_records  # noqa: E402

from .conftest import ENV_ID, Oracle, replay  # noqa: E402

ENV_KWARGS = {"world": SMALL_WORLD}
STYLES = ("react", "search-r1", "tools")


@pytest.fixture(scope="module")
def small_oracle() -> Oracle:
    return Oracle(ENV_ID, **ENV_KWARGS)


def _rows(style: str, budgets=(1, 3)):
    return to_layout(
        task_rows(ENV_ID, "test", style=style, budgets=list(budgets), env_kwargs=ENV_KWARGS, limit=4), "skyrl"
    )


def _make(row, **config):
    skyrl.register()
    extras = {k: v for k, v in row.items() if k not in ("prompt", "env_class")}
    return skyrl_gym.make(skyrl.ENV_CLASS, env_config=config, extras=extras)


def test_register_is_idempotent_and_make_builds_a_base_text_env():
    skyrl.register()
    skyrl.register()
    from skyrl_gym.envs.base_text_env import BaseTextEnv

    env = _make(_rows("react")[0])
    assert isinstance(env, BaseTextEnv) and isinstance(env, skyrl.GatherSkyRLEnv)
    assert env.spec.id == skyrl.ENV_CLASS


def test_registering_over_a_foreign_env_is_refused():
    if "gather-taken" not in skyrl_gym.registry:
        skyrl_gym.register(id="gather-taken", entry_point="skyrl_gym.envs.gsm8k.env:GSM8kEnv")
    with pytest.raises(ConfigError, match="another name"):
        skyrl.register("gather-taken")


def _episode(oracle, task, dialect: str, variant: str) -> list[str]:
    """Action texts: the gold path then the answer, a wrong answer, or junk until truncation."""
    if variant == "junk":
        return ["I am not sure.", "{not json", "search[]", "answer[x]"]
    steps = [oracle.text_action(dialect, task, step) for step in range(len(task.gold_path) + 1)]
    if variant == "wrong":
        steps[-1] = oracle.text_action(dialect, task, len(task.gold_path), correct=False)
    return steps


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("variant", ["gold", "wrong", "junk"])
def test_episodes_equal_the_same_episodes_through_gymnasium(small_oracle, style, variant):
    dialect = chat.style_dialect(style)
    for row in _rows(style):
        task = small_oracle.by_id[row["extra_info"]["task_id"]]
        actions = _episode(small_oracle, task, dialect, variant)
        env = _make(row)
        prompt, info = env.init(row["prompt"])
        assert prompt == row["prompt"] and info["task_id"] == task.task_id
        expected = replay(ENV_ID, json.loads(row["extra_info"]["env_kwargs"]), row["extra_info"], actions)
        for action, (observation, reward, terminated, truncated, step_info) in zip(actions, expected):
            out = env.step(action)
            assert out["reward"] == reward and out["done"] == (terminated or truncated)
            assert out["metadata"] == step_info
            if out["done"]:
                assert out["observations"] == []
            else:
                assert out["observations"] == [
                    {"role": "user", "content": chat.observation_text(style, observation)}
                ]
        assert out["done"]
        env.close()


def test_init_fills_an_empty_prompt_and_refuses_a_mismatched_one():
    row = _rows("react")[0]
    env = _make(row)
    prompt, _ = env.init([{"role": "user", "content": ""}])
    assert prompt == [{"role": "user", "content": row["prompt"][-1]["content"]}]
    with pytest.raises(ConfigError, match="first observation"):
        env.init([{"role": "user", "content": "another question"}])


def test_records_and_metrics_of_a_finished_and_a_cut_off_episode(small_oracle, tmp_path):
    path = tmp_path / "skyrl.jsonl"
    first, second = _rows("react", budgets=(3,))[:2]
    env = _make(first, records_path=str(path), agent_id="skyrl-test")
    env.init(first["prompt"])
    task = small_oracle.by_id[first["extra_info"]["task_id"]]
    for action in _episode(small_oracle, task, "react", "gold"):
        out = env.step(action)
    assert out["done"] and env.get_metrics()["success"] == 1.0
    env.close()
    cut = _make(second, records_path=str(path))
    cut.init(second["prompt"])
    cut.step("search[something]")
    cut.close()  # the generator stopped early: recorded as truncated
    done, truncated = read_records(path)
    assert done.success and done.agent_id == "skyrl-test" and done.task_id == task.task_id
    assert truncated.termination == TERMINATION_TRUNCATED and truncated.tool_calls == 1


def test_max_turns_ends_the_episode_as_truncated(tmp_path):
    path = tmp_path / "skyrl.jsonl"
    row = _rows("react", budgets=(3,))[0]
    env = _make(row, records_path=str(path), max_turns=2)
    env.init(row["prompt"])
    first = env.step("search[something]")
    second = env.step("search[something else]")
    assert not first["done"] and second["done"] and second["observations"] == []
    assert second["metadata"]["termination"] == TERMINATION_TRUNCATED
    env.close()
    (record,) = read_records(path)
    assert record.termination == TERMINATION_TRUNCATED and record.tool_calls == 2 and record.reward == 0.0


def test_the_default_turn_limit_is_the_longest_possible_episode():
    row = _rows("react", budgets=(1,))[0]
    env = _make(row)
    env.init(row["prompt"])
    assert env.max_turns == 1 + 2 + 1  # T, the invalid-action limit, the answer
    outs = [env.step("I am not sure.") for _ in range(env.max_turns)]
    assert outs[-1]["done"]
