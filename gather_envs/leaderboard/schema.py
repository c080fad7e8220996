"""The leaderboard's JSON Schemas, validated with ``jsonschema``, and a bounded JSON reader.

Violations come back as (path, message) pairs in our own words, so ``verify`` can say on which line
of the file each sits (:func:`json_lines`). One keyword is read as JSON Schema (ECMA-262) means
it rather than as Python's ``re`` would: a ``pattern``'s final ``$`` matches only at the very end
of the text, where ``re.search`` (which ``jsonschema`` uses) also admits a trailing newline
(``"random\n"``).

Submitted documents are untrusted: :func:`load_document` refuses JSON deeper than
:data:`MAX_JSON_DEPTH` or larger than :data:`MAX_DOCUMENT_BYTES` with one ``ValueError`` (never a
``RecursionError``), and :func:`control_characters` finds the free text that could forge a line of
output or hide text on the site.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

from gather_envs.errors import ConfigError
from gather_envs.optional import require

SCHEMA_FILES = {"submission": "submission.schema.json", "results": "results.schema.json"}
EXTRA = "leaderboard"

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a submitted document may have (ours need 5)."""
MAX_DOCUMENT_BYTES = 1 << 20
"""Largest submission.json or claimed results file (ours are under 20 kB)."""
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
"""C0 and C1 controls (newline and tab included), line and paragraph separators, zero-width and
bidirectional formatting characters: none belongs in a name, an author or a note."""

Path_ = tuple[str | int, ...]
"""Where a value sits in a JSON document: keys and list indices from the root."""


def load_schema(name: str) -> dict[str, Any]:
    """The packaged schema ``name`` (``submission`` or ``results``), checked to be a valid schema."""
    if name not in SCHEMA_FILES:
        raise ConfigError(f"no leaderboard schema {name!r}; known: {', '.join(sorted(SCHEMA_FILES))}")
    text = (
        resources.files("gather_envs.leaderboard").joinpath("schemas", SCHEMA_FILES[name]).read_text("utf-8")
    )
    schema = json.loads(text)
    _validator_class().check_schema(schema)
    return schema


def _ecma(pattern: str) -> str:
    """``pattern`` for ``re.search`` with ECMA-262's final ``$`` (the very end, no trailing newline)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\Z"
    return pattern


def _validator_class() -> Any:
    """Draft 2020-12 with ``pattern`` matched as ECMA-262 does (see the module docstring)."""
    jsonschema = require("jsonschema", EXTRA, what="leaderboard verify")

    def ecma_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not re.search(_ecma(pattern), instance):
            yield jsonschema.ValidationError(f"does not match {pattern}")

    return jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": ecma_pattern})


def validate(value: Any, schema: dict[str, Any], path: Path_ = ()) -> Iterator[tuple[Path_, str]]:
    """Each violation of ``schema`` by ``value`` as (path, message), in document order."""
    errors = sorted(_validator_class()(schema).iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    seen: set[tuple[Path_, str]] = set()
    for error in errors:
        for where, message in _described(error, (*path, *error.absolute_path)):
            if (where, message) not in seen:
                seen.add((where, message))
                yield where, message


def _described(error: Any, where: Path_) -> Iterator[tuple[Path_, str]]:
    """One ``jsonschema`` error in the words ``verify`` prints (one pair per missing or extra key)."""
    kind, expected, value = error.validator, error.validator_value, error.instance
    shown = json.dumps(value)[:40]
    if kind == "required":
        for key in expected:
            if key not in value:
                yield where, f"is missing required field {key!r}"
    elif kind == "additionalProperties":
        properties = error.schema.get("properties", {})
        for key in value:
            if key not in properties:
                yield (*where, key), f"is not a field of this schema (known: {', '.join(sorted(properties))})"
    elif kind == "type":
        kinds = [expected] if isinstance(expected, str) else expected
        yield where, f"must be {' or '.join(kinds)}, got {_kind(value)} {shown}"
    elif kind == "enum":
        yield where, f"must be one of {json.dumps(expected)}, got {shown}"
    elif kind == "pattern":
        yield where, f"must match {expected}, got {value[:40]!r}"
    elif kind == "minimum":
        yield where, f"must be >= {expected}, got {value}"
    elif kind == "maximum":
        yield where, f"must be <= {expected}, got {value}"
    elif kind == "minItems":
        yield where, f"must have at least {expected} items"
    elif kind == "minLength":
        yield where, f"must have at least {expected} characters"
    elif kind == "minProperties":
        yield where, f"must have at least {expected} entries"
    else:
        yield where, error.message


def load_document(text: str) -> Any:
    """``text`` parsed as JSON; ValueError, saying why, when it is not JSON, too deep or too large."""
    size = len(text.encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def control_characters(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, str]]:
    """Each string (key or value) of ``value`` holding a :data:`CONTROL_CHARACTERS` character."""
    if isinstance(value, str):
        found = CONTROL_CHARACTERS.search(value)
        if found:
            yield path, f"holds the control character U+{ord(found.group()):04X} at position {found.start()}"
    elif isinstance(value, dict):
        for key, item in value.items():
            if CONTROL_CHARACTERS.search(key):
                yield (*path, key), "is a key holding a control character"
            yield from control_characters(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from control_characters(item, (*path, i))


_KINDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("boolean", bool), ("object", dict), ("array", list), ("string", str), ("integer", int),
    ("number", float), ("null", type(None)),
)  # fmt: skip


def _kind(value: Any) -> str:
    """The JSON Schema type name of a parsed JSON value (``boolean`` before ``integer``)."""
    return next((name for name, kind in _KINDS if isinstance(value, kind)), type(value).__name__)


def format_path(path: Path_) -> str:
    """``envs["Gather-MultiHop-v0"].records[0]``-style text for a path ("(top level)" for the root)."""
    text = ""
    for part in path:
        text += (
            f"[{part}]"
            if isinstance(part, int)
            else (f".{part}" if re.fullmatch(r"\w+", part) else f"[{part!r}]")
        )
    return text.lstrip(".") or "(top level)"


def json_lines(text: str) -> dict[Path_, int]:
    """The 1-based line where each value of a JSON document starts, by path (so errors can name it)."""
    decoder = json.JSONDecoder()
    lines: dict[Path_, int] = {}

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def value(i: int, path: Path_) -> int:
        i = skip(i)
        lines[path] = text.count("\n", 0, i) + 1
        if text.startswith("{", i):
            i = skip(i + 1)
            while not text.startswith("}", i):
                key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
                i = value(skip(i) + 1, (*path, key))
                i = skip(i)
                i = skip(i + 1) if text.startswith(",", i) else i
            return i + 1
        if text.startswith("[", i):
            i, index = skip(i + 1), 0
            while not text.startswith("]", i):
                i = skip(value(i, (*path, index)))
                i = skip(i + 1) if text.startswith(",", i) else i
                index += 1
            return i + 1
        _, end = decoder.raw_decode(text, i)
        return end

    value(0, ())
    return lines


def line_of(lines: dict[Path_, int], path: Path_) -> int:
    """The line of ``path``, or of its nearest enclosing value that has one."""
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)
