"""SkyRL adapter: a ``skyrl_gym`` ``BaseTextEnv`` that plays one Gather episode per dataset row.

Checked against skyrl-gym 0.4's ``BaseTextEnv`` and registry. SkyRL builds the env as
``skyrl_gym.make("gather", env_config=..., extras=row)``, where ``row`` holds the dataset columns
other than ``prompt`` and ``env_class`` (export them with
``gather_envs.integrations.dataset.build_dataset(layout="skyrl")``), calls :meth:`init` with the
prompt, then :meth:`step` with each raw model reply. The env parses the reply itself, in any of
the three dialects, so no tool parser is needed. ``step`` returns skyrl's
``BaseTextEnvStepOutput``: the next observation as a user message (wrapped as the row's agent
style shows it, e.g. ``Observation: ...``), the env's reward for that step, ``done``, and the env's
``info`` as metadata. A finished episode returns no observation, as skyrl's own envs do.

``env_config`` keys (all optional): ``env_id`` and ``env_kwargs`` (defaults for rows that do not
name their env), ``records_path`` (append an EpisodeRecord per finished episode), ``agent_id``,
``style``, ``max_turns``. A row's ``extras["max_turns"]`` (as skyrl-gym's own envs read it)
lowers the limit for that row. The env ends an episode after ``max_turns`` replies (the smallest of
the config's, the row's, the env's own ``max_turns`` kwarg and T + the invalid-action limit + 1,
the most an episode can take), returning ``done`` with the episode recorded as ``truncated``. A
reply may hold several tool calls (in any dialect, or a JSON list): the env takes them all, in
order, as one turn, exactly as on the text path; set the generator's own ``max_turns`` to at least that. :meth:`close` cuts off an episode the generator stopped early (context limit), so it is
recorded as ``truncated``.

Register once with :func:`register` (safe to call again: skyrl's own ``register`` raises on a
duplicate id); importing this module does not require skyrl-gym.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from gather_envs.errors import ConfigError
from gather_envs.integrations import chat
from gather_envs.integrations.episodes import DEFAULT_ENV_ID, EpisodeDriver, row_value
from gather_envs.optional import require

EXTRA = "skyrl"
ENV_CLASS = "gather"
ENTRY_POINT = "gather_envs.integrations.skyrl:GatherSkyRLEnv"
DEFAULT_AGENT_ID = "skyrl"
CLASS_NAME = "GatherSkyRLEnv"


def _config(env_config: Any) -> dict[str, Any]:
    """A plain dict from skyrl's env_config (a dict, an OmegaConf DictConfig or None)."""
    if env_config is None:
        return {}
    if isinstance(env_config, Mapping):
        return {str(k): v for k, v in env_config.items()}
    try:  # OmegaConf DictConfig without importing omegaconf here
        return {str(k): env_config[k] for k in env_config}
    except TypeError:
        raise ConfigError(f"env_config must be a mapping, got {type(env_config).__name__}") from None


def _plain(value: Any) -> Any:
    """OmegaConf containers (and nested ones) as plain dicts and lists."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or hasattr(value, "__iter__"):
        return [_plain(v) for v in value]
    return value


def _build_class() -> type:
    """Define the BaseTextEnv subclass (skyrl-gym is imported only now)."""
    base_module = require("skyrl_gym.envs.base_text_env", EXTRA)
    base = base_module.BaseTextEnv

    class GatherSkyRLEnv(base):  # type: ignore[valid-type, misc]
        """One Gather episode as a skyrl-gym text env (see the module docstring)."""

        def __init__(self, env_config: Any = None, extras: Mapping[str, Any] | None = None) -> None:
            super().__init__()
            config = {k: _plain(v) for k, v in _config(env_config).items()}
            self.extras = dict(_plain(dict(extras or {})))
            self.style = str(row_value(self.extras, "style") or config.get("style") or chat.DEFAULT_STYLE)
            self.turn_limit = None if config.get("max_turns") is None else int(config["max_turns"])
            self.driver = EpisodeDriver(
                str(config.get("env_id") or DEFAULT_ENV_ID),
                config.get("env_kwargs") or {},
                records_path=config.get("records_path"),
                agent_id=str(config.get("agent_id") or DEFAULT_AGENT_ID),
                agent_settings=config.get("agent_settings"),
                record_trajectory=bool(config.get("record_trajectory", False)),
            )

        def init(self, prompt: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            """Reset the row's episode; the prompt (the env's observation added if missing) and info."""
            observation, info = self.driver.reset(self.extras)
            env = self.driver.env.unwrapped
            self.turns = 0
            most = int(getattr(env, "budget", 0)) + int(getattr(env, "max_invalid_actions", 0)) + 1
            limits = (self.turn_limit, row_value(self.extras, "max_turns"), getattr(env, "max_turns", None))
            self.max_turns = min([most, *(int(limit) for limit in limits if limit is not None)])
            prompt = list(prompt or [])
            last = prompt[-1].get("content") if prompt else None
            if not last:
                return [*prompt[:-1], {"role": chat.USER, "content": observation}], dict(info)
            if str(last).strip() != observation.strip():
                raise ConfigError(
                    "the prompt does not end with the env's first observation for the row's task and "
                    f"budget (task {row_value(self.extras, 'task_id')!r}); export the dataset with "
                    "gather_envs.integrations.dataset (layout='skyrl') or leave the last message empty"
                )
            return prompt, dict(info)

        def step(self, action: str) -> dict[str, Any]:
            """Apply the model's reply; the next observation, the step's reward, done and info."""
            self.turns += 1
            result = self.driver.step(action)
            info = dict(result.info)
            if not self.driver.done and self.turns >= self.max_turns:
                self.driver.cut()  # the turn limit ends the episode: recorded as truncated
                info = dict(self.driver.info)
            done = result.done or self.driver.done
            observations = [] if done else [chat.observation_message(self.style, result.observation)]
            return {
                "observations": observations,
                "reward": result.reward,
                "done": done,
                "metadata": info,
                "postprocessed_action": None,
            }

        def get_metrics(self) -> dict[str, Any]:
            """Per-episode numbers SkyRL averages: success, turns, searches used, invalid actions."""
            info = self.driver.info
            return {
                "success": float(bool(info.get("success", False))),
                "turns": float(info.get("turns", 0)),
                "tool_calls": float(info.get("tool_calls_used", 0)),
                "invalid_actions": float(info.get("invalid_actions", 0)),
            }

        def close(self) -> None:
            """Cut off an unfinished episode (recorded as truncated) and close the env."""
            self.driver.cut()
            self.driver.close()

    GatherSkyRLEnv.__module__ = __name__
    GatherSkyRLEnv.__qualname__ = CLASS_NAME
    return GatherSkyRLEnv


@functools.cache
def env_class() -> type:
    """The ``BaseTextEnv`` subclass, built on first use."""
    return _build_class()


def __getattr__(name: str) -> Any:
    """``GatherSkyRLEnv`` is built lazily so that importing this module never needs skyrl-gym."""
    if name == CLASS_NAME:
        return env_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(env_class_name: str = ENV_CLASS, **kwargs: Any) -> None:
    """Register the env with skyrl-gym under ``env_class_name`` (idempotent; kwargs go to make)."""
    skyrl_gym = require("skyrl_gym", EXTRA)
    env_class()  # fail here, not at make time, if the base class is missing
    registry = skyrl_gym.registry
    if env_class_name in registry:
        spec = registry[env_class_name]
        if spec.entry_point != ENTRY_POINT:
            raise ConfigError(
                f"skyrl-gym already has an env {env_class_name!r} with entry point "
                f"{spec.entry_point!r}; register the Gather env under another name"
            )
        return
    skyrl_gym.register(id=env_class_name, entry_point=ENTRY_POINT, kwargs=dict(kwargs))
