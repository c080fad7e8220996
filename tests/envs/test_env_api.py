"""The Gymnasium contract, parametrized over every registered id."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import pytest
from conftest import ALL_IDS, SYNTHETIC_IDS
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env

from gather_envs.errors import ConfigError

ACTIONS = ["search[capital city]", "bogus", "search[founder]", "answer[no]"]


def rollout(env: gym.Env, seed: int, actions=ACTIONS) -> list:
    trace = [env.reset(seed=seed)]
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        trace.append((observation, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return trace


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
def test_check_env_passes(env_id: str) -> None:
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


def test_make_by_module_prefix_works_from_any_directory(tmp_path) -> None:
    """A fresh interpreter outside the source tree, without importing gather_envs first."""
    code = (
        "import gymnasium as gym\n"
        f"for env_id in {list(ALL_IDS)!r}:\n"
        "    env = gym.make('gather_envs:' + env_id)\n"
        "    obs, info = env.reset(seed=0)\n"
        "    assert 'Question:' in obs, obs\n"
        "print('ok', len(gym.registry))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
def test_same_seed_same_trajectory(env_id: str) -> None:
    assert rollout(gym.make(env_id), 3) == rollout(gym.make(env_id), 3)


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
def test_different_seeds_draw_different_tasks(env_id: str) -> None:
    env = gym.make(env_id)
    drawn = {env.reset(seed=seed)[1]["task_id"] for seed in range(8)}
    assert len(drawn) > 1


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
def test_pickled_env_continues_identically(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=5)
    env.step("search[Institute]")
    clone = pickle.loads(pickle.dumps(env))
    for action in ("search[born]", "answer[yes]"):
        assert clone.step(action) == env.step(action)


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
def test_spec_round_trips_through_json(env_id: str) -> None:
    env = gym.make(env_id, max_tool_calls=0 if "Static" in env_id else 2, top_k=4, dialect="tags")
    spec = EnvSpec.from_json(env.spec.to_json())
    assert spec == env.spec
    rebuilt = gym.make(spec)
    assert rollout(rebuilt, 11) == rollout(env, 11)
    assert rebuilt.unwrapped.top_k == 4 and rebuilt.unwrapped.dialect == "tags"


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs_match_single_env(env_id: str, mode: str) -> None:
    vector_kwargs = {"shared_memory": False} if mode == "async" else {}
    vec = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode, vector_kwargs=vector_kwargs)
    try:
        observations, infos = vec.reset(seed=[4, 9])
        singles = [gym.make(env_id).reset(seed=seed)[0] for seed in (4, 9)]
        assert list(observations) == singles
        stepped = vec.step(["search[capital]", "answer[no]"])[0]
        expected = []
        for seed, action in ((4, "search[capital]"), (9, "answer[no]")):
            env = gym.make(env_id)
            env.reset(seed=seed)
            expected.append(env.step(action)[0])
        assert list(stepped) == expected
    finally:
        vec.close()


def test_async_vector_env_with_shared_memory_fails_clearly() -> None:
    with pytest.raises(Exception, match="shared_memory=False"):
        vec = gym.make_vec("Gather-MultiHop-v0", num_envs=2, vectorization_mode="async")
        vec.close()


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
def test_spaces_contain_everything_emitted(env_id: str) -> None:
    env = gym.make(env_id)
    observation, _ = env.reset(seed=0)
    assert env.observation_space.contains(observation)
    for _ in range(5):
        action = env.action_space.sample()
        assert env.action_space.contains(action)
        observation, *_rest, terminated, truncated, _info = env.step(action)
        assert env.observation_space.contains(observation)
        if terminated or truncated:
            break


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
def test_info_never_reveals_the_answer_before_the_end(env_id: str) -> None:
    env = gym.make(env_id)
    _, info = env.reset(seed=1)
    task = env.unwrapped.task
    assert "gold_answer" not in info and "answer" not in info
    assert {"task_id", "family", "hops", "max_tool_calls"} <= set(info)
    assert info["task_id"] == task.task_id


def test_procedural_world_kwargs_survive_spec_json_and_pickling() -> None:
    from conftest import SMALL_WORLD

    env = gym.make("Gather-MultiHop-v0", world=SMALL_WORLD, split="train", scope="distractor")
    rebuilt = gym.make(EnvSpec.from_json(env.spec.to_json()))
    assert rollout(rebuilt, 2) == rollout(env, 2)
    clone = pickle.loads(pickle.dumps(env))
    assert rollout(clone, 6) == rollout(env, 6)
    assert clone.unwrapped.corpus.content_hash == env.unwrapped.corpus.content_hash


def test_env_copies_share_one_corpus_and_one_index() -> None:
    first, second = gym.make("Gather-MultiHop-v0").unwrapped, gym.make("Gather-Compare-v0").unwrapped
    assert first.corpus is second.corpus
    assert first.corpus.index("test") is second.corpus.index("test")
    assert first.corpus.index("test") is not first.corpus.index("train")  # each split its own world
    clone = pickle.loads(pickle.dumps(first))
    assert clone.corpus is first.corpus


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
def test_a_family_id_pins_its_family_and_names_the_right_id(env_id: str) -> None:
    from gather_envs.envs.registration import ID_FOR_FAMILY, SYNTHETIC_ENVS

    pinned = SYNTHETIC_ENVS[env_id]["family"]
    assert gym.make(env_id, family=pinned).unwrapped.family == pinned
    for family, right in ID_FOR_FAMILY.items():
        if family != pinned:
            with pytest.raises(
                ConfigError, match=rf"{env_id} is the '{pinned}' family; for '{family}' use .*{right}"
            ):
                gym.make(env_id, family=family)


def test_the_generic_id_takes_any_family() -> None:
    from gather_envs.envs.registration import GENERIC_ENV_ID, ID_FOR_FAMILY

    for family, env_id in ID_FOR_FAMILY.items():
        generic = gym.make(GENERIC_ENV_ID, family=family).unwrapped
        assert generic.family == family
        assert [t.task_id for t in generic.tasks] == [t.task_id for t in gym.make(env_id).unwrapped.tasks]


@pytest.mark.parametrize(
    "env_id", ["Gather-Static-v0", "Gather-SingleHop-v0", "Gather-Compare-v0", "Gather-MultiHop-v0", "Gather-v0"]
)
def test_v0_ids_make_without_a_warning(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id)
    env.reset(seed=0)
    env.close()


@pytest.mark.parametrize("env_id", ["Gather-MultiHop-v1", "Gather-v1", "Gather-Static-v1"])
def test_no_v1_id_is_registered(env_id: str) -> None:
    assert env_id not in gym.registry
    with pytest.raises(gym.error.Error):
        gym.make(env_id)


def test_dataset_ids_use_the_same_scope_words() -> None:
    for old, new in (("question", "distractor"), ("full", "world")):
        with pytest.raises(ConfigError, match=rf"scope='{old}' was renamed: use scope='{new}'"):
            gym.make("Gather-HotpotQA-v0", path="/no/such/file.json", scope=old)


def test_a_task_of_another_split_is_refused_by_id() -> None:
    """A train task cannot be played in a test env: the test env searches only the test world."""
    train_task = gym.make("Gather-MultiHop-v0", split="train").unwrapped.tasks[0]
    with pytest.raises(ConfigError, match=rf"{train_task.task_id}' is not in split 'test'"):
        gym.make("Gather-MultiHop-v0").reset(options={"task_id": train_task.task_id})
