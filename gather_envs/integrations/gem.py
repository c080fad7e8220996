"""GEM adapter: a ``gem.Env`` that plays Gather episodes, made with ``gem.make("gather", ...)``.

Checked against gem-llm 0.1.0 (``gem.core.Env``, ``gem.envs.registration``, ``gem.vector``).
GEM's envs are text in, text out, with Gymnasium's 5-tuple, so :meth:`step` passes the env's own
observation, reward, ``terminated``, ``truncated`` and info through unchanged (through
:class:`~gather_envs.integrations.episodes.EpisodeDriver`): reward, budget T, the invalid-action
limit and termination are the env's. The model's raw reply is the action, in any of the env's
dialects (``search[...]``, ``<search>...</search>``, a JSON tool call), so GEM's tool wrappers are
not needed; do not wrap this env in GEM's ``search_tool`` wrappers, whose searches would bypass
the budget. GEM's observation wrappers (``concat``, ``concat_chat``) work as with any GEM env.

Constructor kwargs: ``gather_id`` and ``env_kwargs`` (the Gymnasium id and its kwargs; not
``env_id``, which is ``gem.make``'s own first argument and an attribute GEM sets on every env),
``seed`` (``gem.make_vec`` passes ``seed + index``; it seeds the first reset), ``records_path``
(append an EpisodeRecord per finished episode), ``agent_id``, ``agent_settings``,
``record_trajectory``. :meth:`reset` takes GEM's ``seed`` and, optionally, Gymnasium's
``options`` (``task_id``, ``task_index``, ``max_tool_calls``); a reset without a seed draws the
next task from the env's own generator, as Gymnasium's does. GEM's base ``reset`` is not called:
it seeds Python's and numpy's global generators, which the env never uses. :meth:`close` cuts off
an unfinished episode, recorded as ``truncated``.

Register once with :func:`register` (safe to call again: GEM's own ``register`` raises on a
duplicate id); importing this module does not require gem-llm.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from gather_envs.errors import ConfigError
from gather_envs.integrations.episodes import DEFAULT_ENV_ID, EpisodeDriver
from gather_envs.optional import require
from gather_envs.records import EpisodeRecord

EXTRA = "gem"
ENV_NAME = "gather"
ENTRY_POINT = "gather_envs.integrations.gem:GatherGEMEnv"
DEFAULT_AGENT_ID = "gem"
CLASS_NAME = "GatherGEMEnv"
OPTION_KEYS = ("task_id", "task_index", "max_tool_calls")
"""The Gymnasium reset options :meth:`reset` passes on (the env's own)."""


def _row(seed: int | None, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The driver's row for one reset: the seed and the env's reset options."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ConfigError(f"unknown reset option(s) {unknown}; the env takes {list(OPTION_KEYS)}")
    row = {key: options[key] for key in OPTION_KEYS if key in options}
    if seed is not None:
        row["seed"] = seed
    return row


def _build_class() -> type:
    """Define the ``gem.Env`` subclass (gem-llm is imported only now)."""
    base = require("gem.core", EXTRA).Env

    class GatherGEMEnv(base):  # type: ignore[valid-type, misc]
        """Gather episodes as a GEM env (see the module docstring)."""

        def __init__(
            self,
            gather_id: str = DEFAULT_ENV_ID,
            env_kwargs: Mapping[str, Any] | None = None,
            seed: int | None = None,
            records_path: str | None = None,
            agent_id: str = DEFAULT_AGENT_ID,
            agent_settings: Mapping[str, Any] | None = None,
            record_trajectory: bool = False,
        ) -> None:
            super().__init__()
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
                raise ConfigError(f"seed must be a non-negative int or None, got {seed!r}")
            self.first_seed = seed
            self.driver = EpisodeDriver(
                gather_id,
                dict(env_kwargs or {}),
                records_path=records_path,
                agent_id=agent_id,
                agent_settings=agent_settings,
                record_trajectory=record_trajectory,
            )

        def reset(
            self, seed: int | None = None, options: Mapping[str, Any] | None = None
        ) -> tuple[str, dict[str, Any]]:
            """Start an episode: the env's first observation and info (an unfinished one is cut)."""
            if seed is None and not self.driver.started:
                seed = self.first_seed
            observation, info = self.driver.reset(_row(seed, options))
            return observation, dict(info)

        def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
            """Apply the model's reply: the env's observation, reward, terminated, truncated, info."""
            result = self.driver.step(action)
            return result.observation, result.reward, result.terminated, result.truncated, dict(result.info)

        @property
        def records(self) -> list[EpisodeRecord]:
            """The EpisodeRecords of the episodes this env finished, oldest first."""
            return self.driver.records

        def close(self) -> None:
            """Cut off an unfinished episode (recorded as truncated) and close the env."""
            self.driver.cut()
            self.driver.close()

    GatherGEMEnv.__module__ = __name__
    GatherGEMEnv.__qualname__ = CLASS_NAME
    return GatherGEMEnv


@functools.cache
def env_class() -> type:
    """The ``gem.Env`` subclass, built on first use."""
    return _build_class()


def __getattr__(name: str) -> Any:
    """``GatherGEMEnv`` is built lazily so that importing this module never needs gem-llm."""
    if name == CLASS_NAME:
        return env_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(env_name: str = ENV_NAME, **kwargs: Any) -> None:
    """Register the env with GEM under ``env_name`` (idempotent; kwargs become make's defaults)."""
    registration = require("gem.envs.registration", EXTRA)
    env_class()  # fail here, not at make time, if the base class is missing
    registry = registration.ENV_REGISTRY
    if env_name in registry:
        entry_point = registry[env_name].entry_point
        if entry_point != ENTRY_POINT:
            raise ConfigError(
                f"GEM already has an env {env_name!r} with entry point {entry_point!r}; "
                "register the Gather env under another name"
            )
        return
    registration.register(env_name, ENTRY_POINT, **kwargs)
