"""Registered ids for real QA datasets: ``gym.make("Gather-HotpotQA-v0", path=...)`` and friends.

The package ships no dataset file and never downloads one: each id needs ``path=`` to a file the
user has. Its entry point, :func:`make_dataset_env`, turns the flat kwargs into GatherEnv's
``dataset={...}`` and ``scope=``, so every kwarg is plain JSON and survives ``EnvSpec`` JSON round
trips and pickling (the env re-reads its corpus, from the per-process or on-disk cache).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

from gather_envs.envs.registration import ORDER_ENFORCE
from gather_envs.errors import ConfigError, DataFileError

if TYPE_CHECKING:
    from gather_envs.envs.gather_env import GatherEnv

ENTRY_POINT = "gather_envs.envs.dataset_registration:make_dataset_env"

DATASET_ENVS = {
    "Gather-HotpotQA-v0": "hotpotqa",
    "Gather-2Wiki-v0": "2wiki",
    "Gather-MuSiQue-v0": "musique",
    "Gather-Math-v0": "math500",
}
DATASET_IDS = tuple(DATASET_ENVS)

SCOPE_DISTRACTOR = "distractor"
SCOPE_WORLD = "world"
SCOPE_OPEN = "open"
DATASET_SCOPES = (SCOPE_DISTRACTOR, SCOPE_WORLD, SCOPE_OPEN)
"""The env's own scope words: each question's own paragraphs, every paragraph of the file, or a
shared wiki-scale index behind ``retriever=`` (the open-domain, "fullwiki" setting)."""
RENAMED_SCOPES = {"question": SCOPE_DISTRACTOR, "full": SCOPE_WORLD}
DEFAULT_SCOPE = SCOPE_DISTRACTOR
DEFAULT_SAMPLE_SEED = 0


def make_dataset_env(
    format: str,
    path: str | os.PathLike[str] | None = None,
    *,
    type: str | list[str] | None = None,
    level: str | int | list[str | int] | None = None,
    sample: int | None = None,
    per_type: int | None = None,
    seed: int = DEFAULT_SAMPLE_SEED,
    strict: bool = True,
    cache: bool = True,
    cache_dir: str | None = None,
    scope: str = DEFAULT_SCOPE,
    family: str | None = None,
    **env_kwargs: Any,
) -> GatherEnv:
    """A GatherEnv on a dataset file; without ``path`` one DataFileError says what to get.

    ``family`` defaults to the one the ``type`` filter leaves, else the format's default
    (``bridge``; ``static`` for MATH). ``scope="distractor"`` searches each question's own paragraphs
    (HotpotQA's distractor setting), ``"world"`` every paragraph of the (filtered) file: the same
    words as the synthetic envs. ``"open"`` with ``retriever=URL`` searches the index that server
    holds, e.g. wiki-18 (HotpotQA's fullwiki setting): the same loader and questions, and hits
    with the ids of the file's paragraphs are its documents (so evidence recall still counts).
    """
    # Imported here so that registering the ids (at package import) stays cheap.
    from gather_envs.corpus.datasets import FORMATS
    from gather_envs.envs.gather_env import GatherEnv

    fmt = FORMATS.get(format)
    if fmt is None:
        raise ConfigError(f"unknown dataset format {format!r}; choose one of {sorted(FORMATS)}")
    if path is None:
        raise DataFileError(
            f"{fmt.env_id} needs path=: {fmt.file_hint} and pass "
            f"gym.make({fmt.env_id!r}, path='…/{fmt.example_file}')"
        )
    if "dataset" in env_kwargs or "corpus" in env_kwargs or "world" in env_kwargs:
        raise ConfigError(f"{fmt.env_id} reads its corpus from path=; drop dataset=, corpus= and world=")
    if scope in RENAMED_SCOPES:
        raise ConfigError(
            f"scope={scope!r} was renamed: use scope={RENAMED_SCOPES[scope]!r} (the synthetic envs' word)"
        )
    if scope not in DATASET_SCOPES:
        raise ConfigError(f"scope must be one of {list(DATASET_SCOPES)} for {fmt.env_id}, got {scope!r}")
    dataset: dict[str, Any] = {
        "format": format,
        "path": os.fspath(os.path.abspath(os.path.expanduser(os.fspath(path)))),
        "seed": seed,
        "strict": strict,
        "cache": cache,
    }
    optional = {"type": type, "level": level, "sample": sample, "per_type": per_type, "cache_dir": cache_dir}
    dataset.update({key: value for key, value in optional.items() if value is not None})
    if family is None:
        family = _family_for(type, fmt.type_families) or fmt.default_family
    return GatherEnv(family=family, scope=scope, dataset=dataset, **env_kwargs)


def _family_for(types: Any, type_families: Any) -> str | None:
    """The one family a type filter leaves, when the format maps types to families."""
    if types is None or type_families is None:
        return None
    names = [types] if isinstance(types, str) else list(types) if isinstance(types, list | tuple) else []
    families = {type_families.get(str(name)) for name in names}
    return families.pop() if len(families) == 1 else None


def register_dataset_envs() -> None:
    """Register every dataset id once; safe to call again."""
    for env_id, fmt in DATASET_ENVS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=ENTRY_POINT, order_enforce=ORDER_ENFORCE, kwargs={"format": fmt})
