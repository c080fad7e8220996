"""Parse one action out of free text, in any of the three dialects agents speak.

Dialects (all accepted by every env; the prompt shows the one chosen with ``dialect=``):

- ``react``: ``search[query]`` and ``answer[text]`` (``finish[text]`` is ReAct's spelling of answer);
  the argument ends at the first ``]``.
- ``tags`` (Search-R1): ``<search>query</search>`` and ``<answer>text</answer>``.
- ``json`` (OpenAI-style tool call): ``{"name": "search", "arguments": {"query": "..."}}`` or
  ``{"name": "answer", "arguments": {"answer": "..."}}``; ``arguments`` may also be a JSON string.

Reasoning text around the action is allowed. When the text holds several actions, the one that
*starts first* is taken: models tend to keep writing (a made-up observation, a second action)
after the action they meant, so later ones are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

SEARCH = "search"
ANSWER = "answer"
INVALID = "invalid"
DIALECTS = ("react", "tags", "json")

_BRACKET = re.compile(r"\b(search|answer|finish)\s*\[(.*?)\]", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<(search|answer)>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)
_ARGUMENT_KEYS = {SEARCH: ("query", "q", "text"), ANSWER: ("answer", "text", "final_answer")}
_JSON_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Action:
    """A parsed action: ``kind`` is search, answer or invalid; ``error`` says why when invalid."""

    kind: str
    argument: str = ""
    error: str = ""


def _from_json(text: str) -> tuple[int, Action] | None:
    """The first JSON object in ``text`` that names a tool, with its start offset."""
    start = text.find("{")
    while start != -1:
        try:
            value, _ = _JSON_DECODER.raw_decode(text, start)
        except ValueError:
            value = None
        if isinstance(value, dict) and "name" in value:
            return start, _json_action(value)
        start = text.find("{", start + 1)
    return None


def _json_action(call: dict) -> Action:
    name = str(call.get("name", "")).strip().lower()
    if name == "finish":
        name = ANSWER
    if name not in _ARGUMENT_KEYS:
        return Action(INVALID, error=f"unknown tool {name!r}; the tools are 'search' and 'answer'")
    arguments = call.get("arguments", call.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return Action(INVALID, error="the tool call's 'arguments' string is not valid JSON")
    if not isinstance(arguments, dict):
        return Action(INVALID, error="the tool call's 'arguments' must be a JSON object")
    for key in _ARGUMENT_KEYS[name]:
        if key in arguments:
            return _checked(name, str(arguments[key]))
    expected = _ARGUMENT_KEYS[name][0]
    return Action(INVALID, error=f"the {name} call needs an argument {expected!r}")


def _checked(kind: str, argument: str) -> Action:
    argument = argument.strip()
    if not argument:
        return Action(
            INVALID, error=f"empty {kind}: put the {'query' if kind == SEARCH else 'answer'} inside"
        )
    return Action(kind, argument)


def parse_action(text: str) -> Action:
    """The first action in ``text``, or an invalid action whose ``error`` explains the problem.

    >>> parse_action("Thought: look it up. Action: search[Brathis Institute]")
    Action(kind='search', argument='Brathis Institute', error='')
    >>> parse_action("<answer> yes </answer>").argument
    'yes'
    """
    if not isinstance(text, str):
        return Action(INVALID, error=f"an action must be a string, got {type(text).__name__}")
    found: list[tuple[int, Action]] = []
    for pattern in (_BRACKET, _TAG):
        match = pattern.search(text)
        if match:
            kind = match.group(1).lower()
            found.append((match.start(), _checked(ANSWER if kind == "finish" else kind, match.group(2))))
    json_call = _from_json(text)
    if json_call:
        found.append(json_call)
    if not found:
        if not text.strip():
            return Action(INVALID, error="empty action")
        return Action(INVALID, error="no action found")
    return min(found, key=lambda item: item[0])[1]
