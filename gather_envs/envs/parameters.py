"""The kwargs each registered id accepts, with types from the entry point's signature and ranges.

Names, types and defaults come from :class:`GatherEnv`'s ``__init__`` (and, for the real-data ids,
:func:`make_dataset_env`'s), so a new kwarg is declared the moment it exists; the ranges and
choices below add what a signature cannot say, and each kwarg's help is its line in the
``Arguments`` section of :class:`GatherEnv`'s docstring (tests/envs/test_env_contract.py checks that the
section lists exactly the signature's kwargs and defaults). ``gather-envs`` checks ``--kwarg`` against these
before it builds anything.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import replace
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from gather_envs.envs import custom_registration, dataset_registration, registration
from gather_envs.envs.actions import DIALECTS
from gather_envs.envs.gather_env import MAX_TOOL_CALLS, REWARD_KINDS, SCOPES, GatherEnv
from gather_envs.parameters import Parameter, parameters_from_signature
from gather_envs.records.tasks import FAMILIES

_GATHER_RANGES: dict[str, dict[str, Any]] = {
    "family": {"choices": FAMILIES},
    "max_tool_calls": {"minimum": 0, "maximum": MAX_TOOL_CALLS},
    "top_k": {"minimum": 1},
    "scope": {"choices": SCOPES},
    "dialect": {"choices": DIALECTS},
    "max_invalid_actions": {"minimum": 0},
    "max_turns": {"minimum": 1},
    "reward": {"choices": REWARD_KINDS},
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
_ARGUMENT = re.compile(r"^- ``(\w+)`` \(default ``([^`]*)``\): (.*?)(?=^- ``|\Z)", re.MULTILINE | re.DOTALL)
_SECTION = re.compile(r"^## (.+)$", re.MULTILINE)


def docstring_section(title: str) -> str:
    """The text of one ``## title`` section of :class:`GatherEnv`'s docstring (the env's contract)."""
    doc = inspect.cleandoc(GatherEnv.__doc__ or "")
    headings = list(_SECTION.finditer(doc))
    for index, heading in enumerate(headings):
        if heading.group(1).strip() == title:
            end = headings[index + 1].start() if index + 1 < len(headings) else len(doc)
            return doc[heading.end() : end]
    return ""


def documented_arguments() -> dict[str, tuple[str, str]]:
    """Each kwarg the contract's ``Arguments`` section lists: its default as written and its meaning."""
    return {
        match.group(1): (match.group(2), " ".join(match.group(3).split()))
        for match in _ARGUMENT.finditer(docstring_section("Arguments"))
    }


def _gather_parameters() -> tuple[Parameter, ...]:
    """GatherEnv's kwargs: the signature's names and defaults, the ranges above, the contract's help."""
    documented = documented_arguments()
    return tuple(
        replace(p, help=documented[p.name][1]) if p.name in documented else p
        for p in parameters_from_signature(GatherEnv.__init__, _GATHER_RANGES)
    )


_DATASET_OWN = ("dataset", "corpus", "world")  # GatherEnv kwargs a dataset id sets from path=


def _entry_callable(env_id: str) -> Any:
    """What the id's spec builds envs with: its class or factory (strings resolved as gymnasium does)."""
    entry_point = gym.spec(env_id).entry_point
    return load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point


def env_parameters(env_id: str) -> tuple[Parameter, ...] | None:
    """The declared kwargs of a registered id (None for an id whose entry point is not ours).

    The schema is chosen by the callable the id builds with (the env class or its factory).
    """
    creator = _entry_callable(env_id)
    if creator in (GatherEnv, registration.make_family_env):
        return _gather_parameters()
    own_ranges = {
        dataset_registration.make_dataset_env: _DATASET_RANGES,
        custom_registration.make_custom_env: _GATHER_RANGES,
        custom_registration.make_phantomwiki_env: _GATHER_RANGES,
    }.get(creator)
    if own_ranges is None:
        return None
    own = parameters_from_signature(creator, own_ranges)
    names = {p.name for p in own}
    forwarded = _gather_parameters()
    return own + tuple(p for p in forwarded if p.name not in names and p.name not in _DATASET_OWN)
