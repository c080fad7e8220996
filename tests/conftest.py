"""Shared fixtures: tiny real worlds that build in well under a second; the test tree's layout.

The tests mirror the package (``tests/envs/``, ``tests/runs/``, ``tests/evaluation/``, ...), with
shared helpers in ``tests/_support/``. Tests name each other's agents as ``module:attr``
(``test_runner:CoinAgent``), in this process and in the subprocesses they start, so every test
folder is on ``sys.path``. A test that starts another process (a subprocess, a server) is marked
``subprocess``: ``pytest -m "not subprocess"`` is the fast subset.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import gather_envs  # noqa: F401  (registers the ids)
from gather_envs.corpus.datasets.common import CACHE_DIR_ENV
from gather_envs.envs.registration import GENERIC_ENV_ID

TESTS = Path(__file__).resolve().parent
for _folder in sorted(TESTS.iterdir()):
    if _folder.is_dir() and not _folder.name.startswith((".", "_")) and str(_folder) not in sys.path:
        sys.path.append(str(_folder))

SUBPROCESS_SIGNS = ("subprocess.", "Popen", "serve_smollm2", "ServerProcess", "serve_in_thread", "os.fork")
"""What in a test (or the fixtures it uses) starts another process or a server."""


@functools.cache
def _source(function: object) -> str:
    try:
        return inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def _starts_a_process(item: pytest.Item) -> bool:
    """Whether the test, a fixture it uses or a module-level helper either calls starts a process."""
    function = getattr(item, "function", None)
    if function is None:
        return False
    functions = [function]
    fixtures = getattr(item, "_fixtureinfo", None)
    for name in getattr(fixtures, "names_closure", ()):
        functions.extend(definition.func for definition in getattr(fixtures, "name2fixturedefs", {}).get(name, ()))
    module = vars(inspect.getmodule(function) or sys)
    for candidate in list(functions):  # one level of module-level helpers they call
        for name in re.findall(r"\b([A-Za-z_]\w*)\(", _source(candidate)):
            helper = module.get(name)
            if inspect.isfunction(helper) and helper not in functions:
                functions.append(helper)
    return any(sign in _source(candidate) for candidate in functions for sign in SUBPROCESS_SIGNS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts another process ``subprocess`` (see the module docstring)."""
    for item in items:
        if _starts_a_process(item):
            item.add_marker(pytest.mark.subprocess)


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
