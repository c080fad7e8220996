"""Chat conventions the adapters share with the LLM agents: system prompts and observation turns.

A trainer's policy should see what an evaluated agent sees, so the adapters reuse the agent styles
of :mod:`gather_envs.agents.llm`: ``react`` (``search[...]``), ``search-r1`` (``<search>...``),
``tools`` (JSON tool calls) and ``direct`` (closed book). A style fixes the env's ``dialect``, the
system prompt (with the dialect's own syntax filled in) and how later observations are wrapped
(``Observation: ...``, ``<information>...</information>``). The first observation is the env's own
task prompt, unchanged.
"""

from __future__ import annotations

from string import Template
from typing import Any

from gather_envs.errors import ConfigError

DEFAULT_STYLE = "react"
SYSTEM = "system"
USER = "user"
ASSISTANT = "assistant"

Message = dict[str, Any]


def _styles() -> dict[str, Any]:
    from gather_envs.agents.llm import STYLES

    return STYLES


def style_names() -> tuple[str, ...]:
    """The agent styles a dataset or adapter can use."""
    return tuple(_styles())


def _style(name: str) -> Any:
    styles = _styles()
    if name not in styles:
        raise ConfigError(f"unknown agent style {name!r}; choose one of {tuple(styles)}")
    return styles[name]


def style_dialect(name: str, env_dialect: str = "react") -> str:
    """The action dialect a style speaks (``direct`` speaks the env's)."""
    return _style(name).dialect or env_dialect


def system_prompt(name: str, env_dialect: str = "react") -> str:
    """The style's system prompt with the dialect's action syntax filled in."""
    from gather_envs.agents.llm import load_prompt, render_prompt

    style = _style(name)
    return render_prompt(load_prompt(style.prompt), style.dialect or env_dialect)


def prompt_messages(name: str, first_observation: str, env_dialect: str = "react") -> list[Message]:
    """The conversation a policy starts from: the style's system prompt, then the env's task prompt."""
    return [
        {"role": SYSTEM, "content": system_prompt(name, env_dialect)},
        {"role": USER, "content": first_observation},
    ]


def observation_text(name: str, observation: str) -> str:
    """A later observation wrapped the way the style shows it (``Observation: ...`` for react)."""
    return Template(_style(name).observation).safe_substitute(observation=observation)


def observation_message(name: str, observation: str) -> Message:
    """A later observation as the user turn that follows the policy's action."""
    return {"role": USER, "content": observation_text(name, observation)}


def tool_schemas() -> list[dict[str, Any]]:
    """The ``search`` and ``answer`` tool schemas the ``tools`` style shows (with argument descriptions)."""
    import copy

    from gather_envs.agents.llm import TOOL_SCHEMAS

    return [copy.deepcopy(schema) for schema in TOOL_SCHEMAS.values()]
