"""The kwargs each registered id accepts, with types from the entry point's signature and ranges.

Names, types and defaults come from :class:`GatherEnv`'s ``__init__`` (and, for the real-data ids,
:func:`make_dataset_env`'s), so a new kwarg is declared the moment it exists; the ranges and
choices below add what a signature cannot say. ``gather-envs`` checks ``--kwarg`` against these
before it builds anything.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from gather_envs.envs import custom_registration, dataset_registration, registration
from gather_envs.envs.actions import DIALECTS
from gather_envs.envs.gather_env import SCOPES, GatherEnv
from gather_envs.parameters import Parameter, parameters_from_signature
from gather_envs.records.tasks import FAMILIES

MAX_TOOL_CALLS = 100
"""The largest budget T the CLI accepts: the study's grid stops at 5, so more is almost surely a typo."""

_GATHER_RANGES: dict[str, dict[str, Any]] = {
    "family": {"choices": FAMILIES},
    "max_tool_calls": {"minimum": 0, "maximum": MAX_TOOL_CALLS},
    "top_k": {"minimum": 1},
    "scope": {"choices": SCOPES},
    "dialect": {"choices": DIALECTS},
    "max_invalid_actions": {"minimum": 0},
    "render_mode": {"choices": tuple(GatherEnv.metadata["render_modes"])},
}
_DATASET_RANGES: dict[str, dict[str, Any]] = {
    "format": {"choices": tuple(dataset_registration.DATASET_ENVS.values())},
    "sample": {"minimum": 1},
    "per_type": {"minimum": 1},
    "seed": {"minimum": 0},
    "scope": {"choices": tuple(dataset_registration.DATASET_SCOPES)},
    "family": {"choices": FAMILIES},
}
_DATASET_OWN = ("dataset", "corpus", "world")  # GatherEnv kwargs a dataset id sets from path=


def env_parameters(env_id: str) -> tuple[Parameter, ...] | None:
    """The declared kwargs of a registered id (None for an id whose entry point is not ours)."""
    entry_point = gym.spec(env_id).entry_point
    if entry_point in (registration.PINNED_ENTRY_POINT, registration.GENERIC_ENTRY_POINT):
        return parameters_from_signature(GatherEnv.__init__, _GATHER_RANGES)
    if entry_point == dataset_registration.ENTRY_POINT:
        own = parameters_from_signature(dataset_registration.make_dataset_env, _DATASET_RANGES)
        names = {p.name for p in own}
        forwarded = parameters_from_signature(GatherEnv.__init__, _GATHER_RANGES)
        return own + tuple(p for p in forwarded if p.name not in names and p.name not in _DATASET_OWN)
    own_entry = {
        custom_registration.CUSTOM_ENTRY_POINT: custom_registration.make_custom_env,
        custom_registration.PHANTOMWIKI_ENTRY_POINT: custom_registration.make_phantomwiki_env,
    }.get(str(entry_point))
    if own_entry is not None:
        own = parameters_from_signature(own_entry, _GATHER_RANGES)
        names = {p.name for p in own}
        forwarded = parameters_from_signature(GatherEnv.__init__, _GATHER_RANGES)
        return own + tuple(p for p in forwarded if p.name not in names and p.name not in _DATASET_OWN)
    return None
