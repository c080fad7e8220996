"""Chat conventions the adapters share with the LLM agents: system prompts and observation turns.

A trainer's policy should see what an evaluated agent sees, so the adapters reuse the agent styles
of :mod:`gather_envs.agents.llm`: ``react`` (``search[...]``), ``search-r1`` (``<search>...``),
``tools`` (JSON tool calls) and ``direct`` (closed book). A style fixes the env's ``dialect``, the
system prompt (with the dialect's own syntax filled in) and how later observations are wrapped
(``Observation: ...``, ``<information>...</information>``). The first observation is the env's own
task prompt, unchanged.
"""

from __future__ import annotations

import json
from string import Template
from typing import Any

from gather_envs.errors import ConfigError

DEFAULT_STYLE = "react"
CALL_SLOT = "{call}"  # where a tool call's JSON goes in a chat template's tool-call format
_PROBE_TEXT = "gather-envs-probe"
SYSTEM = "system"
USER = "user"
ASSISTANT = "assistant"

Message = dict[str, Any]


def _styles() -> dict[str, Any]:
    from gather_envs.agents.llm import STYLES

    return STYLES


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


def prompt_messages(
    name: str, first_observation: str, env_dialect: str = "react", examples: str | None = None
) -> list[Message]:
    """The conversation a policy starts from: the style's system prompt, its worked example turns
    (the ``act`` style has some; ``examples`` names other ones, as the agents' option does), then
    the env's task prompt."""
    from gather_envs.agents.llm import load_examples

    return [
        {"role": SYSTEM, "content": system_prompt(name, env_dialect)},
        *load_examples(examples or _style(name).examples),
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


def tool_call_format(tokenizer: Any) -> str:
    """How the model's own chat template writes one tool call, with ``{call}`` where the JSON goes.

    Rendered, not assumed: one assistant turn with a tool call and one with plain text are put
    through ``tokenizer.apply_chat_template`` and compared, e.g. ``<tool_call>\n{call}\n</tool_call>``
    for Qwen2.5's template. The ``tools`` style then shows calls in exactly that form, which is
    the form the trainer's tool-call parser (TRL's, from the same template) accepts.
    """
    from gather_envs.envs.actions import SEARCH

    call = {"type": "function", "function": {"name": SEARCH, "arguments": {"query": _PROBE_TEXT}}}
    user = {"role": USER, "content": "x"}
    with_call = tokenizer.apply_chat_template(
        [user, {"role": ASSISTANT, "content": "", "tool_calls": [call]}], tokenize=False
    )
    plain = tokenizer.apply_chat_template([user, {"role": ASSISTANT, "content": _PROBE_TEXT}], tokenize=False)
    head, _, tail = plain.partition(_PROBE_TEXT)
    if not (with_call.startswith(head) and with_call.endswith(tail)):
        raise ConfigError(
            "the chat template renders tool calls outside the assistant turn; cannot find its format"
        )
    body = with_call[len(head) : len(with_call) - len(tail)]
    for start, end, value in _json_objects(body):
        if value.get("name") == SEARCH and _PROBE_TEXT in json.dumps(value):
            return (body[:start] + CALL_SLOT + body[end:]).strip()
    raise ConfigError(
        "the chat template does not write tool calls as JSON objects with a 'name'; use a model whose "
        "template supports tools, or a text style (react, search-r1)"
    )


def show_tool_calls(text: str, call_format: str | None) -> str:
    """``text`` with each JSON tool call in it written in ``call_format`` (unchanged if None)."""
    if not call_format:
        return text
    pieces, position = [], 0
    for start, end, _ in _json_objects(text):
        pieces += [text[position:start], call_format.replace(CALL_SLOT, text[start:end])]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _json_objects(text: str) -> list[tuple[int, int, dict[str, Any]]]:
    """(start, end, object) of each top-level JSON object with a ``name`` key in ``text``."""
    decoder = json.JSONDecoder()
    found = []
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict) and "name" in value:
            found.append((start, end, value))
            start = text.find("{", end)
        else:
            start = text.find("{", start + 1)
    return found
