"""Parse one action out of free text, in any of the three dialects agents speak.

Dialects (all accepted by every env; the prompt shows the one chosen with ``dialect=``):

- ``react``: ``search[query]`` and ``answer[text]`` (``finish[text]`` is ReAct's spelling of answer);
  the argument ends at the first ``]``.
- ``tags`` (Search-R1): ``<search>query</search>`` and ``<answer>text</answer>``.
- ``json`` (OpenAI-style tool call): ``{"name": "search", "arguments": {"query": "..."}}`` or
  ``{"name": "answer", "arguments": {"answer": "..."}}``; ``arguments`` may also be a JSON string.
  The tool name and the argument must be JSON strings (``{"answer": null}`` is invalid), except
  that the answer may be a JSON list of strings, for a set-valued answer
  (``{"answer": ["Ann", "Bo"]}``): the action's ``items``, recorded as the list's JSON text.

In the other dialects a set answer is one string whose items :func:`gather_envs.scoring.sets.answer_items`
splits: on ``;`` when there is one (``answer[Smith, John; Doe, Jane]``), else on ``,``.

Reasoning text around the actions is allowed. :func:`parse_calls` reads every call of a reply, in
the order they start (a call that starts inside an earlier one is part of it, not a call): several
``search[...]``, several ``<search>`` tags, several JSON calls or a JSON list of calls, dialects
mixed. One guard keeps what small models do from counting: they tend to keep writing after the
call they meant, a made-up observation and then more calls. So a call that starts after an
*observation marker* (:data:`OBSERVATION_MARKER`: a line that starts with ``Observation``,
``Results`` or ``Searches left``, or an ``<information>`` or ``<tool_response>`` tag) that follows
the first call, in the text between calls (a call's own argument may quote a marker), is not a
call: it is dropped and reported in :attr:`Turn.ignored`. The first call is always taken,
wherever it is. :func:`parse_action` is the first call alone.

Parsing takes time linear in the text and never raises, on any string: each dialect is found by
forward scans, and JSON is read by a small iterative scanner (no recursion, so any nesting depth
is fine) that remembers the outcome of every object it has read, so no ``{`` is read twice.

One job, one module (over 500 lines): the grammar of every dialect and the rules for several
calls in one reply are read together, since a call of one dialect may sit inside another's.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

SEARCH = "search"
ANSWER = "answer"
INVALID = "invalid"
DIALECTS = ("react", "tags", "json")

_BRACKET_OPEN = re.compile(r"[sSaAfF](?<!\w[sSaAfF])(?i:(?<=s)earch|(?<=a)nswer|(?<=f)inish)\s*\[")
r"""``\b(search|answer|finish)\s*\[`` without case: spelled to start with a character class, which
the regex engine scans for quickly (6 times faster on a megabyte of text that holds no action)."""
_BRACKET_KINDS = {"s": SEARCH, "a": ANSWER, "f": ANSWER}
_TAG_OPEN = {kind: re.compile(rf"<{kind}>", re.IGNORECASE) for kind in (SEARCH, ANSWER)}
_TAG_CLOSE = {kind: re.compile(rf"</{kind}\s*>", re.IGNORECASE) for kind in (SEARCH, ANSWER)}
_ARGUMENT_KEYS = {SEARCH: ("query", "q", "text"), ANSWER: ("answer", "text", "final_answer")}

# JSON exactly as Python's json module reads it (NaN and Infinity included), one token a match.
# Possessive quantifiers keep every match linear, even when it fails.
_WS = r"[ \t\n\r]*+"
_STRING = r'"[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+"'
_JSON_WS = re.compile(_WS)
_JSON_KEY = re.compile(rf"{_WS}({_STRING}){_WS}:{_WS}")
_JSON_OBJECT_HEAD = re.compile(rf"\{{{_WS}(?:\}}|({_STRING}){_WS}:{_WS})")
_WS_CHARS = " \t\n\r"
_JSON_STRING = re.compile(_STRING)
_JSON_SCALAR = re.compile(
    r"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][-+]?[0-9]++)?|true|false|null|NaN|-?Infinity"
)
_JSON_CANDIDATE = re.compile(rf"\{{(?={_WS}{_STRING}{_WS}:)")  # an object with at least one key
_HEAD_RUN = re.compile(rf"(?:\{{{_WS}{_STRING}{_WS}:{_WS}|\[{_WS}(?=\{{))*+")
"""More levels that open straight after an object's head: heads, and single ``[`` before a ``{``
(a run of ``[[[`` keeps its own one-frame reading)."""
_HIDDEN_CANDIDATE = re.compile(r'\{[ \t\n\r]*"[ \t\n\r]*:')
"""In a run of heads, a key that ends with ``{`` (the only place a candidate can hide there)."""
_PENDING = object()
"""The ``fields`` slot of a pending run's frame ``[start, _PENDING, end, 0]``."""
_NO_END = 1 << 62
_RUN_OPEN = re.compile(r"\[+")
_RUN_CLOSE = re.compile(r"\]+")
_TOOL_NAME_KEY = "name"
_FAILED = -1

_OBJECT, _ARRAY, _STRING_VALUE, _SCALAR = "object", "array", "string", "scalar"
_Value = tuple[str, int, int]
"""A JSON value in the text: its kind and its span ``[start, end)``."""


@dataclass(frozen=True)
class Action:
    """A parsed action: ``kind`` is search, answer or invalid; ``error`` says why when invalid.

    ``items`` holds the strings of a JSON-list answer (empty otherwise; ``argument`` is then the
    list's JSON text).
    """

    kind: str
    argument: str = ""
    error: str = ""
    items: tuple[str, ...] = field(default=(), repr=False)


# -- JSON ------------------------------------------------------------------------------------------


class _JSONScanner:
    """Reads JSON objects and arrays at offsets of one text, remembering every one it has read.

    ``ends[start]`` is the end offset of the container at ``start``, or ``_FAILED``; ``fields[start]``
    maps an object's keys to their values (the last duplicate wins, as in ``json.loads``). JSON is
    context-free, so a container's outcome does not depend on where the read began: one read settles
    every container it opens, and no container is read twice.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.ends: dict[int, int] = {}
        self.fields: dict[int, dict[str, _Value]] = {}
        self.skipped: list[tuple[int, int]] = []  # failed runs of heads, sorted

    def container(self, start: int) -> int:
        """End offset of the object or array that starts at ``start``, or ``_FAILED``."""
        known = self.ends.get(start)
        if known is not None:
            return known
        text, size, ends = self.text, len(self.text), self.ends
        stack: list[list[Any]] = []  # open containers: [start, fields (None for an array), key]
        position = start
        while True:
            # ``position`` is at a "{" or "[" that opens a container not read before.
            value: _Value | None = None
            if text[position] == "{":
                frame: list[Any] = [position, {}, None, 1]
                stack.append(frame)
                head = _JSON_OBJECT_HEAD.match(text, position)  # "{}" or "{" and its first key
                if head is None:
                    return self._fail(stack)
                literal = head.group(1)
                if literal is None:
                    value = self._close(stack, head.end())
                else:
                    frame[2] = literal[1:-1] if "\\" not in literal else json.loads(literal)
                    position = head.end()
                    run_end = _HEAD_RUN.match(text, position).end()  # type: ignore[union-attr]
                    if run_end > position:
                        # Nested heads ``{"a": {"b": [{...``: one regex match, not one step a level.
                        # The levels but the last wait as one pending frame; each is rebuilt
                        # (from the right) only when the level inside it closes.
                        stack[-1] = [frame[0], _PENDING, run_end, 0]
                        self._materialize(stack)
                        position = run_end
            else:
                # A run of "[" is one frame with a depth: deep arrays cost one step, not one a level.
                depth = _run_length(_RUN_OPEN, text, position)
                frame = [position, None, None, depth]
                stack.append(frame)
                position = _skip_ws(text, position + depth)
                if position < size and text[position] == "]":
                    if depth > 1:  # "[[[]": the innermost level is empty, the outer ones stay open
                        frame[3] = depth - 1
                        value = (_ARRAY, position, position + 1)
                    else:
                        value = self._close(stack, position + 1)
            while True:
                if value is None:  # read the next value of the innermost container
                    if position < size and text[position] in _WS_CHARS:
                        position = _skip_ws(text, position)
                    if position >= size:
                        return self._fail(stack)
                    char = text[position]
                    if char == "{" or char == "[":
                        end = ends.get(position)
                        if end is None:
                            break  # open it (outer loop)
                        if end == _FAILED:
                            return self._fail(stack)
                        value = (_OBJECT if char == "{" else _ARRAY, position, end)
                    else:
                        value = _scalar(text, position)
                        if value is None:
                            return self._fail(stack)
                # ``value`` is complete: hand it to the innermost open container, or finish.
                position = value[2]
                if not stack:
                    return position
                frame = stack[-1]
                if frame[1] is not None:
                    frame[1][frame[2]] = value
                if position < size and text[position] in _WS_CHARS:
                    position = _skip_ws(text, position)
                if position >= size:
                    return self._fail(stack)
                char = text[position]
                if char == ",":
                    value = None
                    position = position + 1
                    if frame[1] is not None:
                        position = self._key(frame, position)
                        if position == _FAILED:
                            return self._fail(stack)
                elif char == "]" and frame[1] is None and frame[3] > 1:
                    closers = _run_length(_RUN_CLOSE, text, position)
                    if closers < frame[3]:  # inner levels of the run end; the frame stays open
                        frame[3] -= closers
                        value = (_ARRAY, position, position + closers)
                    else:
                        value = self._close(stack, position + frame[3])
                elif char == ("}" if frame[1] is not None else "]"):
                    value = self._close(stack, position + 1)
                else:
                    return self._fail(stack)

    def _key(self, frame: list[Any], position: int) -> int:
        """Read ``"key" :`` (whitespace around it) at ``position`` into ``frame``; the offset after it."""
        match = _JSON_KEY.match(self.text, position)
        if match is None:
            return _FAILED
        literal = match.group(1)
        frame[2] = literal[1:-1] if "\\" not in literal else json.loads(literal)
        return match.end()

    def _close(self, stack: list[list[Any]], end: int) -> _Value:
        """Pop the innermost container, which ends at ``end``, and remember it."""
        start, fields, _, _ = stack.pop()
        self.ends[start] = end
        if stack and stack[-1][1] is _PENDING:
            self._materialize(stack)
        if fields is not None:
            self.fields[start] = fields
            return (_OBJECT, start, end)
        return (_ARRAY, start, end)

    def _materialize(self, stack: list[list[Any]]) -> None:
        """Turn the last level of the pending run on top of ``stack`` into a frame of its own.

        The level's start is the last ``{`` or ``[`` before the run's end whose text up to there is
        a whole head (``{"key":``) or ``[``: a key's own ``{`` or ``[`` can never read as one.
        """
        pending = stack[-1]
        text, low, high = self.text, pending[0], pending[2]
        end = high
        while True:
            start = max(text.rfind("{", low, end), text.rfind("[", low, end))
            if text[start] == "[":
                if _skip_ws(text, start + 1) == high:
                    frame: list[Any] = [start, None, None, 1]
                    break
            else:
                head = _JSON_OBJECT_HEAD.match(text, start)
                if head is not None and head.end() == high and head.group(1) is not None:
                    literal = head.group(1)
                    frame = [start, {}, literal[1:-1] if "\\" not in literal else json.loads(literal), 1]
                    break
            end = start
        if start == low:
            stack[-1] = frame
        else:
            pending[2] = start
            stack.append(frame)

    def _fail(self, stack: list[list[Any]]) -> int:
        """Every open container fails with the innermost one (each would be read the same way).

        A pending run's levels fail all at once: the run is remembered as a range to skip, unless a
        key in it ends with ``{`` (that ``{`` may start an object of its own).
        """
        self.ends.update((frame[0], _FAILED) for frame in stack if frame[1] is not _PENDING)
        for frame in stack:
            if frame[1] is _PENDING and _HIDDEN_CANDIDATE.search(self.text, frame[0], frame[2]) is None:
                bisect.insort(self.skipped, (frame[0], frame[2]))
        return _FAILED

    def skip_end(self, position: int) -> int | None:
        """The end of a failed run of heads that holds ``position`` (no candidate there), or None."""
        index = bisect.bisect_right(self.skipped, (position, _NO_END)) - 1
        if index >= 0 and position < self.skipped[index][1]:
            return self.skipped[index][1]
        return None


def _run_length(run: re.Pattern[str], text: str, position: int) -> int:
    """How many times the character at ``position`` repeats from there (``run`` matches it)."""
    match = run.match(text, position)
    return 0 if match is None else match.end() - position


def _skip_ws(text: str, position: int) -> int:
    """The first offset at or after ``position`` that is not JSON whitespace."""
    match = _JSON_WS.match(text, position)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _scalar(text: str, position: int) -> _Value | None:
    """The string, number or literal at ``position``, or None."""
    if text[position] == '"':
        match = _JSON_STRING.match(text, position)
        return None if match is None else (_STRING_VALUE, position, match.end())
    match = _JSON_SCALAR.match(text, position)
    return None if match is None else (_SCALAR, position, match.end())


def _string(text: str, value: _Value) -> str | None:
    """The decoded text of a JSON string value, or None for any other kind."""
    if value[0] != _STRING_VALUE:
        return None
    literal = text[value[1] : value[2]]
    return literal[1:-1] if "\\" not in literal else json.loads(literal)


def _json_action(text: str, call: dict[str, _Value], objects: dict[int, dict[str, _Value]]) -> Action:
    name = _string(text, call[_TOOL_NAME_KEY])
    if name is None:
        return Action(INVALID, error="the tool call's 'name' must be a JSON string")
    name = name.strip().lower()
    if name == "finish":
        name = ANSWER
    if name not in _ARGUMENT_KEYS:
        return Action(INVALID, error=f"unknown tool {name!r}; the tools are 'search' and 'answer'")
    raw = call.get("arguments", call.get("parameters"))
    arguments: dict[str, Any]
    if raw is None:
        arguments = {}
    elif raw[0] == _OBJECT:
        arguments = {
            key: _string(text, value) if value[0] != _ARRAY or name != ANSWER else _string_list(text, value)
            for key, value in objects[raw[1]].items()
        }
    elif raw[0] == _STRING_VALUE:
        decoded = _decode_arguments(_string(text, raw) or "")
        if decoded is None:
            return Action(INVALID, error="the tool call's 'arguments' string is not valid JSON")
        if not isinstance(decoded, dict):
            return Action(INVALID, error="the tool call's 'arguments' must be a JSON object")
        arguments = {
            key: value if isinstance(value, str) else _strings_only(value) if name == ANSWER else None
            for key, value in decoded.items()
        }
    else:
        return Action(INVALID, error="the tool call's 'arguments' must be a JSON object")
    for key in _ARGUMENT_KEYS[name]:
        if key in arguments:
            argument = arguments[key]
            if argument is None:
                allowed = "a JSON string" + (" or a list of strings" if name == ANSWER else "")
                return Action(INVALID, error=f"the {name} call's {key!r} must be {allowed}")
            if isinstance(argument, list):
                return _checked_items(argument)
            return _checked(name, argument)
    expected = _ARGUMENT_KEYS[name][0]
    return Action(INVALID, error=f"the {name} call needs an argument {expected!r}")


def _string_list(text: str, value: _Value) -> list[str] | None:
    """The strings of a JSON array value (read once, in linear time), or None unless all are strings."""
    return _strings_only(_decode_arguments(text[value[1] : value[2]]))


def _strings_only(value: Any) -> list[str] | None:
    """``value`` when it is a list of strings, else None."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _checked_items(items: list[str]) -> Action:
    """An answer of a JSON list: its stripped non-empty items, and their JSON text as the argument."""
    kept = tuple(item.strip() for item in items if item.strip())
    if not kept:
        return Action(INVALID, error="empty answer: put the answer's items in the list")
    return Action(ANSWER, json.dumps(list(kept), ensure_ascii=False), items=kept)


def _decode_arguments(text: str) -> Any:
    """``json.loads(text)``, or None when it is not JSON (too deep to decode counts as not JSON)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


# -- the calls of a reply --------------------------------------------------------------------------

_Call = tuple[int, int, Action]
"""A call in the text: its span ``[start, end)`` and the action it reads as."""


class _CallScanner:
    """Finds the next call at or after an offset, in any dialect, in time linear in the whole text.

    Offsets only grow, so each dialect keeps its next opener (and, for the closers, the first
    closer after it): a later question reuses them while they lie ahead, and no stretch of the text
    is scanned twice by one pattern.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._bracket: _Call | None = None
        self._brackets_done = False
        self._bracket_close = -1
        self._tags: dict[str, _Call | None] = {SEARCH: None, ANSWER: None}
        self._tags_done = {SEARCH: False, ANSWER: False}
        self._tag_close: dict[str, tuple[int, int]] = {SEARCH: (-1, -1), ANSWER: (-1, -1)}
        # No object can have a "name" key (it may be spelled with \u escapes): skip the JSON scan.
        self._json_done = f'"{_TOOL_NAME_KEY}"' not in text and "\\u" not in text
        self._json: _Call | None = None
        self._scanner = _JSONScanner(text)
        self._candidates = _JSON_CANDIDATE.finditer(text)

    def next_call(self, position: int) -> _Call | None:
        """The call that starts first at or after ``position``, or None."""
        found = [
            call
            for call in (self._next_bracket(position), *self._next_tags(position), self.next_json(position))
            if call is not None
        ]
        return min(found, key=itemgetter(0)) if found else None

    def _next_bracket(self, position: int) -> _Call | None:
        """The next ``search[...]``/``answer[...]``/``finish[...]``; the argument ends at the first ``]``."""
        if self._brackets_done or (self._bracket is not None and self._bracket[0] >= position):
            return self._bracket
        text = self.text
        match = _BRACKET_OPEN.search(text, position)
        if match is None:
            self._brackets_done, self._bracket = True, None
            return None
        if self._bracket_close < match.end():  # else the first "]" after it is the one already found
            self._bracket_close = text.find("]", match.end())
        if self._bracket_close == -1:  # no later opener has a "]" after it either
            self._brackets_done, self._bracket = True, None
            return None
        kind = _BRACKET_KINDS[text[match.start()].lower()]
        action = _checked(kind, text[match.end() : self._bracket_close])
        self._bracket = (match.start(), self._bracket_close + 1, action)
        return self._bracket

    def _next_tags(self, position: int) -> list[_Call | None]:
        """The next ``<search>...</search>`` and ``<answer>...</answer>`` (closed later in the text)."""
        return [self._next_tag(kind, position) for kind in (SEARCH, ANSWER)]

    def _next_tag(self, kind: str, position: int) -> _Call | None:
        known = self._tags[kind]
        if self._tags_done[kind] or (known is not None and known[0] >= position):
            return known
        match = _TAG_OPEN[kind].search(self.text, position)
        if match is None:
            self._tags_done[kind], self._tags[kind] = True, None
            return None
        close_start, close_end = self._tag_close[kind]
        if close_start < match.end():  # else the first closer after it is the one already found
            close = _TAG_CLOSE[kind].search(self.text, match.end())
            close_start, close_end = (-1, -1) if close is None else close.span()
            self._tag_close[kind] = (close_start, close_end)
        if close_start == -1:  # no later opener is closed either
            self._tags_done[kind], self._tags[kind] = True, None
            return None
        action = _checked(kind, self.text[match.end() : close_start])
        self._tags[kind] = (match.start(), close_end, action)
        return self._tags[kind]

    def next_json(self, position: int) -> _Call | None:
        """The next JSON object that names a tool (objects inside an earlier call are skipped)."""
        if self._json_done or (self._json is not None and self._json[0] >= position):
            return self._json
        scanner, ends = self._scanner, self._scanner.ends
        restart = True
        while restart:
            restart = False
            for match in self._candidates:
                start = match.start()
                if start < position:
                    continue
                skip = scanner.skip_end(start) if scanner.skipped else None
                if skip is not None:  # a failed run of heads: no candidate in it can succeed
                    self._candidates = _JSON_CANDIDATE.finditer(self.text, skip)
                    restart = True
                    break
                end = ends.get(start)  # most candidates were settled by an earlier read
                if end == _FAILED or (end is None and scanner.container(start) == _FAILED):
                    continue
                fields = scanner.fields[start]
                if _TOOL_NAME_KEY in fields:
                    self._json = (start, ends[start], _json_action(self.text, fields, scanner.fields))
                    return self._json
        self._json_done, self._json = True, None
        return None


def _from_json(text: str) -> tuple[int, Action] | None:
    """The first JSON object in ``text`` that names a tool, with its start offset."""
    call = _CallScanner(text).next_json(0)
    return None if call is None else (call[0], call[2])


OBSERVATION_MARKER = re.compile(
    r"^[ \t]*+(?i:observation|results|searches left)|<(?i:information|tool_response)>", re.MULTILINE
)
"""Where a made-up observation starts: the env's own heads (``Results for search[...]``,
``Searches left``) and the agent styles' wrappers (``Observation:``, ``<information>``,
``Results:``), plus a chat template's ``<tool_response>``. Calls after it are not calls."""


@dataclass(frozen=True)
class Turn:
    """The calls of one reply in order, each call's text as written (``""`` for a reply with no
    call), and the texts of the calls dropped after a made-up observation."""

    calls: tuple[Action, ...]
    texts: tuple[str, ...]
    ignored: tuple[str, ...] = ()


def parse_calls(text: str) -> Turn:
    """Every call of a reply, in order (see the module docstring for the made-up observation guard).

    A reply with no call is one invalid call whose ``error`` explains the problem.

    >>> [a.argument for a in parse_calls("search[Ann] then search[Bo]").calls]
    ['Ann', 'Bo']
    >>> turn = parse_calls("<search>Ann</search>\\n<information>made up</information>\\n<search>Bo</search>")
    >>> [a.argument for a in turn.calls], turn.ignored
    (['Ann'], ('<search>Bo</search>',))
    """
    if not isinstance(text, str):
        return Turn((Action(INVALID, error=f"an action must be a string, got {type(text).__name__}"),), ("",))
    scanner = _CallScanner(text)
    first = scanner.next_call(0)
    if first is None:
        return Turn((Action(INVALID, error="empty action" if not text.strip() else "no action found"),), ("",))
    calls, texts, ignored = [first[2]], [text[first[0] : first[1]]], []
    made_up = False  # only the text between calls is searched for a marker: a call may quote one
    call, gap = scanner.next_call(first[1]), first[1]
    while call is not None:
        made_up = made_up or OBSERVATION_MARKER.search(text, gap, call[0]) is not None
        (ignored if made_up else texts).append(text[call[0] : call[1]])
        if not made_up:
            calls.append(call[2])
        call, gap = scanner.next_call(call[1]), call[1]
    return Turn(tuple(calls), tuple(texts), tuple(ignored))


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
    >>> parse_action('{"name": "answer", "arguments": {"answer": null}}').kind
    'invalid'
    """
    if not isinstance(text, str):
        return Action(INVALID, error=f"an action must be a string, got {type(text).__name__}")
    first = _CallScanner(text).next_call(0)
    if first is None:
        return Action(INVALID, error="empty action" if not text.strip() else "no action found")
    return first[2]
