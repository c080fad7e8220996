"""Budget, answers, invalid actions and termination: the rules of an episode."""

from __future__ import annotations

import gymnasium as gym
import pytest
from conftest import SMALL_WORLD, small_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gather_envs.errors import ConfigError, EnvStateError


def start(family: str = "bridge", **kwargs):
    env = small_env(family, **kwargs)
    observation, info = env.reset(seed=0, options={"task_index": 0})
    return env, observation, info


def test_first_observation_states_question_syntax_and_budget() -> None:
    env, observation, info = start(max_tool_calls=3)
    task = env.unwrapped.task
    assert task.question in observation
    assert "search[<query>]" in observation and "answer[<answer>]" in observation
    assert "Searches left: 3." in observation
    assert info["max_tool_calls"] == 3 and info["tool_calls_left"] == 3


@pytest.mark.parametrize("dialect", ["tags", "json"])
def test_prompt_uses_the_chosen_dialect(dialect: str) -> None:
    _, observation, _ = start(dialect=dialect)
    assert ("<search><query></search>" if dialect == "tags" else '"name": "search"') in observation


def test_budget_can_be_hidden() -> None:
    _, observation, _ = start(show_budget=False)
    assert "Searches left" not in observation


def test_search_uses_one_call_and_returns_top_k_documents() -> None:
    env, _, _ = start(top_k=2)
    task = env.unwrapped.task
    observation, reward, terminated, truncated, info = env.step(f"search[{task.gold_path[0].query}]")
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["tool_calls_used"] == 1 and info["query"] == task.gold_path[0].query
    assert observation.count("\n1. [") == 1 and "\n2. [" in observation and "\n3. [" not in observation
    assert f"[{env.unwrapped.corpus.doc(task.gold_path[0].doc_id).title}]" in observation


def test_correct_answer_ends_with_reward_one_and_metrics() -> None:
    env, _, _ = start()
    task = env.unwrapped.task
    _, reward, terminated, truncated, info = env.step(f"answer[  THE {task.answer.upper()}! ]")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["success"] and info["em"] == 1.0 and info["f1"] == 1.0
    assert info["gold_answer"] == task.answer and info["termination"] == "answered"


def test_wrong_answer_is_final() -> None:
    env, _, _ = start()
    _, reward, terminated, truncated, info = env.step("answer[certainly not this]")
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert not info["success"] and info["answer"] == "certainly not this"
    with pytest.raises(EnvStateError, match="ended"):
        env.step("answer[again]")


def test_step_before_reset_raises() -> None:
    env = small_env()
    with pytest.raises(EnvStateError, match="before reset"):
        env.unwrapped.step("search[x]")


def test_step_before_reset_through_gym_make_raises_env_state_error() -> None:
    """gym.make's wrappers must not replace the documented error by gymnasium's ResetNeeded."""
    env = gym.make("Gather-MultiHop-v0", world=SMALL_WORLD)
    with pytest.raises(EnvStateError, match="before reset"):
        env.step("search[x]")


def test_search_with_no_budget_left_is_invalid_and_free() -> None:
    env, _, _ = start(max_tool_calls=1)
    env.step("search[capital]")
    observation, _, terminated, truncated, info = env.step("search[again]")
    assert "no searches left" in observation and "answer[<answer>]" in observation
    assert info["tool_calls_used"] == 1 and info["invalid_actions"] == 1
    assert not terminated and not truncated


def test_zero_budget_is_closed_book() -> None:
    env, observation, _ = start(max_tool_calls=0)
    assert "search[<query>]" not in observation
    observation, *_ = env.step("search[anything]")
    assert "not available" in observation


def test_invalid_actions_past_the_allowance_terminate_with_reward_0() -> None:
    env, _, _ = start(max_invalid_actions=2)
    for expected_left in (1, 0):
        observation, _, terminated, truncated, _ = env.step("hello?")
        assert f"before the episode ends: {expected_left}" in observation
        assert not (terminated or truncated)
    _, reward, terminated, truncated, info = env.step("hello?")
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert info["termination"] == "invalid_actions" and info["answer"] is None
    assert info["success"] is False and info["invalid_actions"] == 3


def test_reset_options_pick_task_and_override_budget() -> None:
    env = small_env()
    task = env.unwrapped.tasks[3]
    _, info = env.reset(options={"task_id": task.task_id, "max_tool_calls": 1})
    assert info["task_id"] == task.task_id and info["max_tool_calls"] == 1
    _, info = env.reset(options={"task_index": 3})
    assert info["task_id"] == task.task_id and info["max_tool_calls"] == 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task_index": 10_000}, "task_index"),
        ({"task_id": "nope"}, "no task"),
        ({"max_tool_calls": -1}, ">= 0"),
        ({"colour": 1}, "unknown reset option"),
    ],
)
def test_bad_reset_options_raise_clear_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        small_env().reset(options=options)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"family": "poetry"}, "unknown family"),
        ({"scope": "galaxy"}, "unknown scope"),
        ({"dialect": "xml"}, "unknown dialect"),
        ({"top_k": 0}, "top_k"),
        ({"family": "static", "max_tool_calls": 2}, "closed-book"),
    ],
)
def test_bad_kwargs_raise_clear_errors(kwargs: dict, message: str) -> None:
    family = kwargs.pop("family", "bridge")
    with pytest.raises(ConfigError, match=message):
        small_env(family, **kwargs)


def test_distractor_scope_searches_only_the_task_context() -> None:
    env, _, _ = start(scope="distractor", top_k=20)
    task = env.unwrapped.task
    observation, *_ = env.step(f"search[{task.question}]")
    corpus = env.unwrapped.corpus
    titles = [line.split("] ")[0].split("[", 1)[1] for line in observation.splitlines() if ". [" in line]
    assert titles and set(titles) <= {corpus.doc(d).title for d in task.context_doc_ids}


def test_static_prompt_holds_every_supporting_document() -> None:
    env, observation, info = start("static")
    task = env.unwrapped.task
    assert info["max_tool_calls"] == 0 and task.family == "static"
    for doc_id in task.supporting_doc_ids:
        assert env.unwrapped.corpus.doc(doc_id).text in observation


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=200), min_size=1, max_size=8))
def test_step_never_raises_and_never_both_done_flags(actions: list[str]) -> None:
    env = small_env()
    env.reset(seed=0)
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(action)
        assert env.observation_space.contains(observation)
        assert reward in (0.0, 1.0)
        assert not (terminated and truncated)
        if terminated or truncated:
            break


def test_the_budget_cap_is_the_same_for_the_env_the_runner_and_the_cli() -> None:
    from gather_envs.envs.gather_env import MAX_TOOL_CALLS
    from gather_envs.envs.parameters import env_parameters
    from gather_envs.evaluation import plan_run

    declared = {p.name: p for p in env_parameters("Gather-MultiHop-v0") or ()}
    assert declared["max_tool_calls"].maximum == MAX_TOOL_CALLS
    env = small_env()
    with pytest.raises(ConfigError, match=f"at most {MAX_TOOL_CALLS}"):
        env.reset(seed=0, options={"max_tool_calls": MAX_TOOL_CALLS + 1})
    with pytest.raises(ConfigError, match=rf"\[0, {MAX_TOOL_CALLS}\]"):
        plan_run(env, n=1, budgets=[MAX_TOOL_CALLS + 1])
    env.reset(seed=0, options={"max_tool_calls": MAX_TOOL_CALLS})
    assert env.unwrapped.budget == MAX_TOOL_CALLS
