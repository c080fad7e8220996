"""Agents: the protocol, scripted baselines, LLM agents and their backends.

Importing this package registers every built-in agent (``oracle``, ``random``, ``heuristic``,
``react``, ``search-r1``, ``direct``, ``tools``, ``swap``); LLM libraries are imported only when used.
"""

from gather_envs.agents import heuristic, llm, scripted, swap
from gather_envs.agents.base import (
    Agent,
    EpisodePolicy,
    agent_names,
    agent_options,
    make_agent,
    register_agent,
)

__all__ = [
    "Agent",
    "EpisodePolicy",
    "agent_names",
    "agent_options",
    "heuristic",
    "llm",
    "make_agent",
    "register_agent",
    "scripted",
    "swap",
]
