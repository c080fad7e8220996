"""The leaderboard's JSON Schemas, a small validator for the subset they use, and a bounded JSON reader.

Why not ``jsonschema``: the schemas use a dozen keywords (type, enum, required, properties,
additionalProperties, items, minItems, minProperties, minLength, pattern, minimum, maximum), and
``verify`` must also say on which line of the file a violation sits; a 60-line validator plus a
position-keeping scan does both without a new dependency for a core subcommand. A schema using any
other keyword is refused (:data:`SUPPORTED_KEYWORDS`), so the validator never silently ignores one.
(``jsonschema`` would not spare the next point either: its ``pattern`` is Python's ``re.search``.)
A ``pattern`` is matched as JSON Schema (ECMA-262) means it: a final ``$`` matches only at the end
of the text, where Python's ``$`` also admits a trailing newline (``"random\n"``).

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

SCHEMA_FILES = {"submission": "submission.schema.json", "results": "results.schema.json"}
SUPPORTED_KEYWORDS = frozenset(
    {
        "$schema", "$id", "title", "description", "type", "enum", "required", "properties",
        "additionalProperties", "items", "minItems", "minProperties", "minLength", "pattern",
        "minimum", "maximum",
    }
)  # fmt: skip
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}

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
    """The packaged schema ``name`` (``submission`` or ``results``), checked to use known keywords."""
    if name not in SCHEMA_FILES:
        raise ConfigError(f"no leaderboard schema {name!r}; known: {', '.join(sorted(SCHEMA_FILES))}")
    text = (
        resources.files("gather_envs.leaderboard").joinpath("schemas", SCHEMA_FILES[name]).read_text("utf-8")
    )
    schema = json.loads(text)
    _check_keywords(schema, name)
    return schema


def _check_keywords(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        return
    unknown = sorted(set(schema) - SUPPORTED_KEYWORDS)
    if unknown:
        raise ConfigError(f"schema {where} uses unsupported keywords {unknown}")
    for key, sub in schema.get("properties", {}).items():
        _check_keywords(sub, f"{where}.{key}")
    for key in ("items", "additionalProperties"):
        _check_keywords(schema.get(key), f"{where}.{key}")


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind not in ("boolean",):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[kind])


def validate(value: Any, schema: dict[str, Any], path: Path_ = ()) -> Iterator[tuple[Path_, str]]:
    """Each violation of ``schema`` by ``value`` as (path, message), in document order."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, kind) for kind in kinds):
            yield path, f"must be {' or '.join(kinds)}, got {_kind(value)} {json.dumps(value)[:40]}"
            return
    if "enum" in schema and value not in schema["enum"]:
        yield path, f"must be one of {json.dumps(schema['enum'])}, got {json.dumps(value)[:40]}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            yield path, f"must have at least {schema['minLength']} characters"
        if "pattern" in schema and not re.search(_ecma(schema["pattern"]), value):
            yield path, f"must match {schema['pattern']}, got {value[:40]!r}"
    if _is(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            yield path, f"must be >= {schema['minimum']}, got {value}"
        if "maximum" in schema and value > schema["maximum"]:
            yield path, f"must be <= {schema['maximum']}, got {value}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            yield path, f"must have at least {schema['minItems']} items"
        if "items" in schema:
            for i, item in enumerate(value):
                yield from validate(item, schema["items"], (*path, i))
    if isinstance(value, dict):
        yield from _validate_object(value, schema, path)


def _validate_object(
    value: dict[str, Any], schema: dict[str, Any], path: Path_
) -> Iterator[tuple[Path_, str]]:
    for key in schema.get("required", ()):
        if key not in value:
            yield path, f"is missing required field {key!r}"
    if len(value) < schema.get("minProperties", 0):
        yield path, f"must have at least {schema['minProperties']} entries"
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            yield from validate(item, properties[key], (*path, key))
        elif extra is False:
            yield (*path, key), f"is not a field of this schema (known: {', '.join(sorted(properties))})"
        elif isinstance(extra, dict):
            yield from validate(item, extra, (*path, key))


def _ecma(pattern: str) -> str:
    """``pattern`` for ``re.search`` with ECMA-262's final ``$`` (the very end, no trailing newline)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\Z"
    return pattern


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


def _kind(value: Any) -> str:
    for name in _TYPES:
        if _is(value, name):
            return name
    return type(value).__name__


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
