"""JSON and JSON lines read with limits: one reader for every file a user or a run hands us.

Every refusal is a one-line reason (:class:`NotJson`) that the file readers prefix with
``file:line``, never a traceback: a document deeper than :data:`MAX_JSON_DEPTH` is refused before
the parser recurses into it, one larger than its byte limit before it is read, bytes that are not
UTF-8 and strings that UTF-8 cannot store (an escaped lone surrogate such as ``"\\ud800"``) are
refused by name. JSON lines are split on ``\\n`` only (a trailing ``\\r`` is dropped), never on the
other Unicode line breaks (U+2028, U+2029, U+0085 and friends may sit raw inside a JSON string).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_JSON_DEPTH = 256
"""Deepest nesting of arrays and objects accepted (our deepest file, a manifest, nests 6 levels)."""
MAX_JSON_BYTES = 1 << 30
"""Largest whole-file JSON document read at once (HotpotQA's training file is 0.54 GB)."""
MAX_JSON_LINE_BYTES = 1 << 28
"""Largest single line of a JSON-lines file."""
UTF8_BOM = b"\xef\xbb\xbf"

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_QUOTE, _OPEN_ARRAY, _CLOSE_ARRAY, _OPEN_OBJECT, _CLOSE_OBJECT = b'"[]{}'
_SCAN_CHUNK = 1 << 22
"""Bytes measured per numpy pass (bounds the scan's memory to a few times this)."""


class NotJson(ValueError):
    """A document is not JSON we accept; the message is a one-line reason (the caller adds where)."""


@dataclass(frozen=True)
class JsonLimits:
    """How deep and how large one JSON document (or one JSON line) may be."""

    max_depth: int = MAX_JSON_DEPTH
    max_bytes: int = MAX_JSON_BYTES
    max_line_bytes: int = MAX_JSON_LINE_BYTES


DEFAULT_LIMITS = JsonLimits()


def loads_bounded(
    data: bytes | str,
    limits: JsonLimits = DEFAULT_LIMITS,
    *,
    unique_keys: bool = False,
    constants: bool = True,
    max_bytes: int | None = None,
) -> Any:
    """``data`` (UTF-8 bytes or text) parsed as JSON within ``limits``; NotJson with a one-line reason.

    ``unique_keys`` refuses an object that repeats a key; ``constants=False`` refuses ``NaN`` and
    ``Infinity`` (not JSON, though Python writes them).

    >>> loads_bounded(b'{"a": ["\\xe2\\x80\\xa8"]}')
    {'a': ['\\u2028']}
    >>> loads_bounded("[" * 300 + "]" * 300)
    Traceback (most recent call last):
    ...
    gather_envs.json_files.NotJson: nested deeper than 256 arrays/objects
    """
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    limit = limits.max_bytes if max_bytes is None else max_bytes
    if len(raw) > limit:
        raise NotJson(f"{len(raw)} bytes, over the limit of {limit} bytes for one JSON document")
    if _too_deep(raw, limits.max_depth):
        raise NotJson(f"nested deeper than {limits.max_depth} arrays/objects")
    try:
        text = raw.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise NotJson(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}") from None
    decoder = _DECODERS[unique_keys, constants]
    try:
        value = decoder.decode(text)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise NotJson("nested too deeply to parse") from None
    except ValueError as exc:
        raise NotJson(f"not valid JSON ({_first_line(exc)})") from None
    if b"\\u" in raw and _SURROGATE_ESCAPE.search(raw):
        _check_storable(value)
    return value


def read_json(
    path: Path,
    error: Callable[[str], Exception],
    limits: JsonLimits = DEFAULT_LIMITS,
    *,
    unique_keys: bool = False,
    constants: bool = True,
) -> Any:
    """The one JSON document in the file ``path``; ``error("<path>: <reason>")`` is raised on any problem."""
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise error(f"{path}: {size} bytes, over the limit of {limits.max_bytes} bytes for one JSON file")
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return loads_bounded(
            data.removeprefix(UTF8_BOM), limits, unique_keys=unique_keys, constants=constants
        )
    except NotJson as exc:
        raise error(f"{path}: {exc}") from None


def iter_json_lines(
    path: Path,
    error: Callable[[str], Exception],
    limits: JsonLimits = DEFAULT_LIMITS,
    *,
    unique_keys: bool = False,
    constants: bool = True,
) -> Iterator[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a JSON-lines file, split on ``\\n`` only.

    A ``\\r`` before the ``\\n`` and a UTF-8 byte-order mark on the first line are accepted; any
    problem is ``error("<path>:<line>: <reason>")``.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        number = 0
        while True:
            number += 1
            try:
                raw = handle.readline(limits.max_line_bytes + 2)
            except OSError as exc:
                raise error(f"{path}:{number}: cannot read ({exc.strerror or exc})") from None
            if not raw:
                return
            line = raw.removesuffix(b"\n").removesuffix(b"\r")
            if len(line) > limits.max_line_bytes:
                raise error(f"{path}:{number}: line longer than the limit of {limits.max_line_bytes} bytes")
            if number == 1:
                line = line.removeprefix(UTF8_BOM)
            if not line.strip():
                continue
            try:
                value = loads_bounded(line, limits, unique_keys=unique_keys, constants=constants)
            except NotJson as exc:
                raise error(f"{path}:{number}: {exc}") from None
            yield number, value


def _too_deep(raw: bytes, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit`` (brackets inside strings do not count).

    A document with at most ``limit`` opening brackets cannot be too deep (the usual case, one
    check). Otherwise escapes are dropped (``\\\\`` pairs, then ``\\"``, left to right as JSON
    reads them), every byte but quotes and brackets is dropped, and numpy measures the nesting of
    what is left outside the strings, a chunk at a time (a regex over every string took 1.5 s on
    a 24 MB file).
    """
    if len(raw) <= limit or raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    skeleton = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    depth, quotes = 0, 0  # carried from chunk to chunk
    for start in range(0, len(skeleton), _SCAN_CHUNK):
        chunk = np.frombuffer(
            skeleton, dtype=np.uint8, count=min(_SCAN_CHUNK, len(skeleton) - start), offset=start
        )
        is_quote = chunk == _QUOTE
        outside = (np.cumsum(is_quote, dtype=np.int64) + quotes) % 2 == 0
        steps = (
            (chunk == _OPEN_ARRAY).astype(np.int8)
            + (chunk == _OPEN_OBJECT)
            - (chunk == _CLOSE_ARRAY)
            - (chunk == _CLOSE_OBJECT)
        )
        levels = np.cumsum(np.where(outside, steps, 0), dtype=np.int64) + depth
        if int(levels.max()) > limit:
            return True
        depth, quotes = int(levels[-1]), quotes + int(is_quote.sum())
    return False


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in pairs:
        if key in row:
            raise ValueError(f"key {key!r:.60} appears twice in one object")
        row[key] = value
    return row


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_storable(value: Any) -> None:
    """NotJson if a string (or key) holds a lone surrogate, which no UTF-8 file can store."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                code = ord(item[exc.start])
                raise NotJson(
                    f"a string holds the lone surrogate \\u{code:04x}, which UTF-8 cannot store"
                ) from None
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()  # an exception's message, not data: any line break ends it
    return lines[0] if lines else type(exc).__name__


_DECODERS = {
    (unique, constants): json.JSONDecoder(
        object_pairs_hook=_unique if unique else None, parse_constant=None if constants else _no_constant
    )
    for unique in (False, True)
    for constants in (False, True)
}
"""One decoder per option pair (``json.loads`` with options builds a new one per call)."""
