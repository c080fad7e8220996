"""The agent protocol: the runner starts one policy per episode and asks it for actions.

Agents see only observations and ``info`` (never the gold answer or the env's internals); the
oracle is the one documented exception and reads the task's gold path from the corpus.
Concurrency comes from the runner (one thread per in-flight episode), so ``act`` may block on
an LLM server; agents must therefore keep per-episode state in the policy, not on themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym

from gather_envs.errors import ConfigError
from gather_envs.parameters import Parameter


class EpisodePolicy(ABC):
    """One episode's decision maker: text action for each observation."""

    @abstractmethod
    def act(self, observation: str, info: dict[str, Any]) -> str:
        """The next action text; raise BackendError for infrastructure failures."""

    def usage(self) -> dict[str, Any]:
        """Resource use to record with the episode (tokens, requests); empty by default."""
        return {}

    def record_extra(self) -> dict[str, Any]:
        """More JSON data for the record's ``extra`` (the LLM agents' logprobs); empty by default."""
        return {}


class Agent(ABC):
    """A named agent with fixed settings; ``start`` makes an independent policy per episode."""

    agent_id: str = "agent"
    options: ClassVar[tuple[Parameter, ...] | None] = None
    """The options its factory accepts (None: undeclared, so the CLI cannot check them early)."""

    def settings(self) -> dict[str, Any]:
        """Everything needed to rerun this agent (recorded with every result)."""
        return {}

    @abstractmethod
    def start(self, seed: int) -> EpisodePolicy:
        """A fresh policy for one episode; ``seed`` drives all of its randomness."""


AgentFactory = Callable[..., Agent]
_REGISTRY: dict[str, AgentFactory] = {}
_OPTIONS: dict[str, tuple[Parameter, ...] | None] = {}


def register_agent(name: str, factory: AgentFactory, options: tuple[Parameter, ...] | None = None) -> None:
    """Make ``factory(env, **options)`` available as ``--agent name``.

    ``options`` declares what the factory accepts (default: the factory's own ``options``
    attribute, as an Agent subclass has), so ``gather-envs eval`` can check them before it runs.
    """
    _REGISTRY[name] = factory
    _OPTIONS[name] = options if options is not None else getattr(factory, "options", None)


def agent_names() -> list[str]:
    return sorted(_REGISTRY)


def agent_options(name: str) -> tuple[Parameter, ...] | None:
    """The declared options of a registered agent (None when its factory declares none)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown agent {name!r}; available: {', '.join(agent_names())}")
    return _OPTIONS[name]


def make_agent(name: str, env: gym.Env, **options: Any) -> Agent:
    """Build a registered agent for ``env`` (the unwrapped env is passed to the factory)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown agent {name!r}; available: {', '.join(agent_names())}")
    return _REGISTRY[name](env.unwrapped, **options)
