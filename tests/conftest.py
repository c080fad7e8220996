"""Shared fixtures: tiny real worlds that build in well under a second."""

from __future__ import annotations

import gymnasium as gym
import pytest

import gather_envs  # noqa: F401  (registers the ids)
from gather_envs.corpus.datasets.common import CACHE_DIR_ENV
from gather_envs.envs.registration import GENERIC_ENV_ID

SMALL_WORLD = {
    "seed": 7,
    "num_entities": 400,
    "tasks_per_family": 12,
    "train_tasks_per_family": 6,
}
SYNTHETIC_IDS = tuple(gather_envs.ENV_IDS)
ALL_IDS = tuple(
    sorted(
        e
        for e in gym.registry
        if e.startswith("Gather-")
        and e not in gather_envs.DATASET_IDS
        and e not in gather_envs.CUSTOM_IDS
    )
)


@pytest.fixture(autouse=True)
def _caches_stay_in_the_test_tree(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches a test writes (chance floors of procedural worlds, dataset caches) never reach ~/.cache."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.getbasetemp() / "gather-envs-cache"))


@pytest.fixture(params=SYNTHETIC_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    return request.param


def small_env(family: str = "bridge", **kwargs) -> gym.Env:
    """A GatherEnv on a 400-entity procedural world."""
    return gym.make(GENERIC_ENV_ID, family=family, world=SMALL_WORLD, **kwargs)
