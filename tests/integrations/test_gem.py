"""GEM adapter: ``gem.make`` / ``gem.make_vec`` episodes equal to the same episodes through Gymnasium."""

from __future__ import annotations

import gymnasium as gym
import pytest

gem = pytest.importorskip("gem", reason="the GEM adapter needs the [gem] extra")

from conftest import SMALL_WORLD  # noqa: E402
from gem.core import Env as GemEnv  # noqa: E402
from gem.wrappers.observation_wrapper import ObservationWrapper  # noqa: E402

from gather_envs.envs.gather_env import DEFAULT_MAX_INVALID_ACTIONS  # noqa: E402
from gather_envs.errors import ConfigError  # noqa: E402
from gather_envs.integrations import gem as gem_adapter  # noqa: E402
from gather_envs.records import TERMINATION_TRUNCATED  # noqa: E402
from gather_envs.runs import read_records  # noqa: E402

from .conftest import ENV_ID, Oracle  # noqa: E402

ENV_KWARGS = {"world": SMALL_WORLD}
DIALECTS = ("react", "tags", "json")
VARIANTS = ("gold", "wrong", "junk")
SEEDS = (0, 1, 2)
BUDGETS = (1, 5)


@pytest.fixture(scope="module")
def small_oracle() -> Oracle:
    return Oracle(ENV_ID, **ENV_KWARGS)


def make(**kwargs):
    gem_adapter.register()
    return gem.make(gem_adapter.ENV_NAME, **{"gather_id": ENV_ID, "env_kwargs": ENV_KWARGS, **kwargs})


def actions_for(oracle: Oracle, observation: str, dialect: str, variant: str) -> list[str]:
    """The gold path then the answer, a wrong final answer, or junk until the invalid limit ends it."""
    if variant == "junk":
        return ["I am not sure.", "{not json", "search[]", "answer[x]"]
    task = oracle.task_in(observation)
    steps = [oracle.text_action(dialect, task, step) for step in range(len(task.gold_path) + 1)]
    if variant == "wrong":
        steps[-1] = oracle.text_action(dialect, task, len(task.gold_path), correct=False)
    return steps


def play(env, actions: list[str]) -> list[tuple]:
    """Step until the episode ends; every step's 5-tuple."""
    steps = []
    for action in actions:
        steps.append(tuple(env.step(action)))
        if steps[-1][2] or steps[-1][3]:
            break
    return steps


def test_register_is_idempotent_and_make_builds_a_gem_env():
    gem_adapter.register()
    gem_adapter.register()
    env = make()
    assert isinstance(env, GemEnv) and isinstance(env, gem_adapter.GatherGEMEnv)
    assert env.env_id == gem_adapter.ENV_NAME


def test_registering_over_a_foreign_env_is_refused():
    if "gather-taken" not in gem.envs.registration.ENV_REGISTRY:
        gem.register("gather-taken", "gem.envs.qa_env:QaEnv")
    with pytest.raises(ConfigError, match="another name"):
        gem_adapter.register("gather-taken")


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_episodes_equal_the_same_episodes_through_gymnasium(small_oracle, dialect, variant):
    env = make(env_kwargs={**ENV_KWARGS, "dialect": dialect})
    reference = gym.make(ENV_ID, **ENV_KWARGS, dialect=dialect)
    for seed in SEEDS:
        for budget in BUDGETS:
            options = {"max_tool_calls": budget}
            observation, info = env.reset(seed=seed, options=options)
            assert (observation, info) == reference.reset(seed=seed, options=options)
            actions = actions_for(small_oracle, observation, dialect, variant)
            steps = play(env, actions)
            assert steps == play(reference, actions)
            assert steps[-1][2] and not steps[-1][3]  # the env itself ended it
            # Gold searches past the budget are invalid actions; past the limit they end the episode.
            over = len(small_oracle.task_in(observation).gold_path) - budget
            enough = over <= DEFAULT_MAX_INVALID_ACTIONS
            assert steps[-1][1] == (1.0 if variant == "gold" and enough else 0.0)
    env.close()


def test_reset_options_pick_the_task_and_budget(small_oracle):
    env = make()
    env.reset(seed=0)
    task = env.unwrapped.driver.env.unwrapped.tasks[3]
    observation, info = env.reset(seed=5, options={"task_id": task.task_id, "max_tool_calls": 2})
    assert info["task_id"] == task.task_id and info["max_tool_calls"] == 2
    assert task.question in observation
    with pytest.raises(ConfigError, match="unknown reset option"):
        env.reset(options={"task": task.task_id})


def test_make_vec_seeds_each_env_and_autoresets_like_gymnasium(small_oracle):
    gem_adapter.register()
    vec = gem.make_vec(
        [gem_adapter.ENV_NAME] * 2, seed=10, gather_id=ENV_ID, env_kwargs={**ENV_KWARGS, "max_tool_calls": 1}
    )
    references = [gym.make(ENV_ID, **ENV_KWARGS, max_tool_calls=1) for _ in range(2)]
    observations, _ = vec.reset()
    assert observations == [ref.reset(seed=10 + i)[0] for i, ref in enumerate(references)]
    # Junk ends each episode after the invalid-action limit; the next step autoresets without a
    # seed, which continues each env's own generator exactly as a seedless Gymnasium reset does.
    for _ in range(2):
        observations, rewards, terminations, truncations, _ = vec.step(["I am not sure."] * 2)
        expected = [ref.step("I am not sure.") for ref in references]
        assert observations == [e[0] for e in expected] and list(rewards) == [e[1] for e in expected]
        assert not terminations.any() and not truncations.any()
    # The third invalid action ends both episodes; GEM's default same-step autoreset returns the
    # next episode's first observation with the last step's reward and termination.
    observations, rewards, terminations, truncations, _ = vec.step(["I am not sure."] * 2)
    expected = [ref.step("I am not sure.") for ref in references]
    assert list(rewards) == [e[1] for e in expected] and list(terminations) == [e[2] for e in expected]
    assert terminations.all() and not truncations.any()
    assert observations == [ref.reset()[0] for ref in references]


def test_gems_observation_wrapper_concatenates_the_envs_turns(small_oracle):
    env = ObservationWrapper(make(), include_action=True, include_chat_template=False)
    first, _ = env.reset(seed=3)
    task = small_oracle.task_in(first)
    action = small_oracle.text_action("react", task, 0)
    text, *_ = env.step(action)
    assert text.startswith(first) and action in text
    assert text.rstrip().endswith(env.unwrapped.driver.observation.rstrip())


def test_records_of_a_finished_and_a_cut_off_episode(small_oracle, tmp_path):
    path = tmp_path / "gem.jsonl"
    env = make(records_path=str(path), agent_id="gem-test")
    observation, _ = env.reset(seed=0, options={"max_tool_calls": 3})
    play(env, actions_for(small_oracle, observation, "react", "gold"))
    env.reset(seed=1, options={"max_tool_calls": 3})
    env.step("search[something]")
    env.close()  # stopped early: recorded as truncated
    done, truncated = read_records(path)
    assert done.success and done.agent_id == "gem-test" and done.reward == 1.0
    assert truncated.termination == TERMINATION_TRUNCATED and truncated.tool_calls == 1
    assert truncated.reward == 0.0


def test_a_bad_seed_is_a_config_error():
    with pytest.raises(ConfigError, match="seed"):
        make(seed=-1)
