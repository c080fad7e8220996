"""Which agent plays: an Agent from an instance, a factory, a registered name or a ``module:attr`` path."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym

from gather_envs.agents.base import Agent, make_agent
from gather_envs.errors import ConfigError

AgentSpec = str | Agent | Callable[..., Agent]
"""What ``evaluate`` and ``gather-envs eval --agent`` accept as an agent."""


def resolve_agent(agent: AgentSpec, env: gym.Env, options: Mapping[str, Any] | None = None) -> Agent:
    """An Agent from an instance, a factory, a registered name, or a ``module:attr`` path.

    A factory (an Agent subclass is one) is called as ``factory(env.unwrapped, **options)``;
    ``attr`` may name an Agent instance or a factory.
    """
    options = dict(options or {})
    if isinstance(agent, Agent):
        _no_options(options, repr(agent))
        return agent
    if callable(agent) and not isinstance(agent, str):
        return _build(agent, getattr(agent, "__qualname__", repr(agent)), env, options)
    if not isinstance(agent, str) or not agent:
        raise ConfigError(f"agent must be a name, a module:attr path, an Agent or a factory, got {agent!r}")
    if ":" not in agent:
        try:
            return make_agent(agent, env, **options)
        except TypeError as exc:
            raise ConfigError(f"agent {agent!r} rejected its options {sorted(options)}: {exc}") from exc
    module_name, _, attr = agent.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} for agent {agent!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r} (agent {agent!r})")
        target = getattr(target, part)
    if isinstance(target, Agent):
        _no_options(options, agent)
        return target
    if not callable(target):
        raise ConfigError(f"{agent!r} is neither an Agent nor a factory of one")
    return _build(target, agent, env, options)


def _build(factory: Callable[..., Any], name: str, env: gym.Env, options: dict[str, Any]) -> Agent:
    """``factory(env.unwrapped, **options)``, checked to be an Agent."""
    try:
        built = factory(env.unwrapped, **options)
    except TypeError as exc:
        raise ConfigError(f"agent factory {name!r} rejected its options {sorted(options)}: {exc}") from exc
    if not isinstance(built, Agent):
        raise ConfigError(f"agent factory {name!r} returned {type(built).__name__}, not an Agent")
    return built


def _no_options(options: Mapping[str, Any], what: str) -> None:
    if options:
        raise ConfigError(
            f"agent options {sorted(options)} need an agent given by name or factory, not {what}"
        )


