"""Agents: the protocol, scripted baselines, LLM agents and their backends."""

from gather_envs.agents.base import Agent, EpisodePolicy, agent_names, make_agent, register_agent

__all__ = ["Agent", "EpisodePolicy", "agent_names", "make_agent", "register_agent"]
