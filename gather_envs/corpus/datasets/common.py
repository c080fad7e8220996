"""Shared machinery of the dataset loaders: item validation, streaming reads and the on-disk cache.

Reading. A data file is either one JSON array of items (HotpotQA, 2WikiMultiHopQA) or JSON lines,
one item per line (MuSiQue, MATH-500); the first non-blank byte tells which, whatever the format.
JSON arrays are streamed item by item with ``ijson`` when it is installed (the ``data`` extra), so
a 0.5 GB file never sits in memory as one parsed tree. Without ``ijson`` the fallback is
``json.loads`` of the whole file, which holds the file's bytes and its full parsed tree at once:
about 4 to 6 times the file size at peak (2-3 GB for HotpotQA's training file).

Validation. Every format turns a raw item into a :class:`ParsedItem` or raises :class:`FieldError`
naming the field. A bad item becomes a :class:`Problem`; with ``strict=True`` (the default) the
first one is raised as a :class:`DataItemError` naming the file, the item (index in the array, or
line number) and its id, and the field. With ``strict=False`` bad items are skipped and counted in
one :class:`DataFileWarning`. JSON that cannot be parsed at all inside an array cannot be skipped
(the parser cannot find the next item) and is always an error.

Cache. Converting a large file takes a while, so the result is written once to a compact JSON-lines
cache: ``<file>.gather-cache.jsonl`` next to the file, or under ``$GATHER_ENVS_CACHE_DIR`` (or the
``cache_dir`` given) when set, or under ``~/.cache/gather-envs/datasets`` when the file's folder is
read-only. It holds each distinct paragraph once, every task, and every problem. It is keyed by the
data file's size and modification time (nanoseconds) and records the file's sha256, which becomes
the corpus's content hash; any change to the file rebuilds it. The cache is only ever parsed as
JSON: nothing from a data file or a cache is executed or unpickled.

One job, one module (over 500 lines): the streaming reader, item validation and the cache are
the three steps every loader runs in order, and share the problem reporting.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from gather_envs.errors import DataFileError
from gather_envs.files import atomic_file
from gather_envs.json_files import NotJson, loads_bounded
from gather_envs.optional import optional
from gather_envs.records.documents import Document
from gather_envs.records.tasks import GoldStep, Task
from gather_envs.scoring import blank_gold_field

LOADER_VERSION = 1
"""Bump when the conversion of items into documents and tasks changes: every cache is rebuilt."""
CACHE_SCHEMA_VERSION = 1
CACHE_SUFFIX = ".gather-cache.jsonl"
CACHE_DIR_ENV = "GATHER_ENVS_CACHE_DIR"
USER_CACHE_DIR = Path("~/.cache/gather-envs/datasets")
READ_CHUNK = 1 << 20
SNIFF_BYTES = 4096
TAIL_BYTES = 1 << 16
CACHE_BATCH_ROWS = 4096
"""Cache rows decoded by one ``json.loads`` call (per-call overhead dominates one-line calls)."""
UTF8_BOM = b"\xef\xbb\xbf"
MAX_MESSAGE_VALUE = 60
"""Characters of a bad value quoted in an error message."""

CONTAINER_ARRAY = "array"
CONTAINER_LINES = "lines"

ROW_DOCUMENT = "d"
ROW_TASK = "t"
ROW_PROBLEM = "p"


# --------------------------------------------------------------------------------------------
# Errors


class DataItemError(DataFileError):
    """One item of a data file is malformed; ``path``, ``where``, ``item_id`` and ``field`` say which."""

    def __init__(self, path: str, where: str, item_id: str | None, field: str, problem: str) -> None:
        self.path = path
        self.where = where
        self.item_id = item_id
        self.field = field
        self.problem = problem
        ident = f" (id {item_id!r})" if item_id is not None else ""
        super().__init__(f"{path}: {where}{ident}: field {field!r}: {problem}")


class DataFileWarning(UserWarning):
    """Bad items of a data file were skipped (``strict=False``)."""


class FieldError(Exception):
    """Raised by a format's item parser: ``field`` of the item is wrong (the caller adds where)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Problem:
    """A skipped item: where it is, its id if known, the bad field and what is wrong with it."""

    where: str
    item_id: str | None
    field: str
    problem: str

    def error(self, path: str) -> DataItemError:
        return DataItemError(path, self.where, self.item_id, self.field, self.problem)


# --------------------------------------------------------------------------------------------
# Field validation helpers for the format parsers


def quote(value: Any) -> str:
    """A short repr of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= MAX_MESSAGE_VALUE else text[: MAX_MESSAGE_VALUE - 1] + "…"


def type_name(value: Any) -> str:
    """The JSON name of a decoded value's type."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    if isinstance(value, bool | dict | list | str) or value is None:
        return names[type(value)]
    return "number" if isinstance(value, int | float) else type(value).__name__


def as_object(value: Any, name: str = "(item)") -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else a FieldError."""
    if not isinstance(value, dict):
        raise FieldError(name, f"expected a JSON object, got {type_name(value)}")
    return value


def require(item: Mapping[str, Any], name: str) -> Any:
    """The value of a required field."""
    if name not in item:
        raise FieldError(name, "missing")
    return item[name]


def require_str(item: Mapping[str, Any], name: str, *, allow_empty: bool = False) -> str:
    """A required string field (non-blank unless ``allow_empty``)."""
    return check_str(require(item, name), name, allow_empty=allow_empty)


def check_str(value: Any, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise FieldError(name, f"expected a string, got {type_name(value)} {quote(value)}")
    if not allow_empty and not value.strip():
        raise FieldError(name, "is empty")
    return value


def optional_str(item: Mapping[str, Any], name: str) -> str | None:
    """An optional string field; None when absent or null."""
    value = item.get(name)
    return None if value is None else check_str(value, name, allow_empty=True)


def require_list(item: Mapping[str, Any], name: str, *, non_empty: bool = True) -> list[Any]:
    """A required array field (non-empty unless told otherwise)."""
    return check_list(require(item, name), name, non_empty=non_empty)


def check_list(value: Any, name: str, *, non_empty: bool = True) -> list[Any]:
    if not isinstance(value, list):
        raise FieldError(name, f"expected an array, got {type_name(value)} {quote(value)}")
    if non_empty and not value:
        raise FieldError(name, "is empty")
    return value


def check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(name, f"expected an integer, got {type_name(value)} {quote(value)}")
    return value


def item_id_of(value: Any, id_field: str) -> str | None:
    """The item's id for messages (before validation), or None when it has none usable."""
    if isinstance(value, dict):
        raw = value.get(id_field)
        if isinstance(raw, str | int) and not isinstance(raw, bool):
            return str(raw)
    return None


# --------------------------------------------------------------------------------------------
# Formats and parsed items


@dataclass(frozen=True)
class ParsedItem:
    """One valid item, format-neutral: paragraphs plus which of them the answer needs, in order.

    ``gold`` lists paragraph positions in gold-path order (each searched by its title);
    ``supporting`` lists every supporting paragraph (``gold`` first). ``source_type`` is the
    dataset's own question type (what ``type=`` filters and ``per_type=`` samples by).
    """

    item_id: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    family: str
    source_type: str
    level: str | None
    paragraphs: tuple[tuple[str, str], ...]
    gold: tuple[int, ...]
    supporting: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)


ItemParser = Callable[[Any, int], "ParsedItem | None"]
"""``parse(raw item, position)``: a ParsedItem, None to leave the item out, or FieldError."""


@dataclass(frozen=True)
class DatasetFormat:
    """How one published layout is read, and what to tell a user who lacks the file."""

    name: str
    env_id: str
    id_field: str
    parse: ItemParser
    type_families: Mapping[str, str] | None
    """Source type -> family; None when the types are open-ended (MuSiQue's hop patterns)."""
    default_family: str
    container: str
    file_hint: str
    example_file: str


# --------------------------------------------------------------------------------------------
# Reading raw items


@dataclass(frozen=True)
class RawItem:
    """One decoded item (or a line that is not JSON) and where it sits in the file."""

    position: int
    where: str
    value: Any = None
    line: bytes | None = None
    error: str | None = None


class _HashingReader:
    """A binary reader that feeds every byte it returns into a digest."""

    def __init__(self, raw: IO[bytes], digest: Any) -> None:
        self._raw = raw
        self._digest = digest

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._digest.update(data)
        return data


def ijson_module() -> Any:
    """The ``ijson`` module, or None when it is not installed (the fallback loads the whole file)."""
    return optional("ijson")


def detect_container(path: Path) -> str:
    """``CONTAINER_ARRAY`` when the first non-blank byte is ``[``, else ``CONTAINER_LINES``."""
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(SNIFF_BYTES)
            if not chunk:
                raise DataFileError(f"{path}: the file is empty; expected a JSON array or JSON lines")
            stripped = chunk.removeprefix(UTF8_BOM).lstrip()
            if stripped:
                return CONTAINER_ARRAY if stripped[:1] == b"[" else CONTAINER_LINES


def iter_raw(path: Path, digest: Any | None = None) -> Iterator[RawItem]:
    """Every item of the file in order; ``digest`` (a hashlib object) sees every byte of it."""
    container = detect_container(path)
    digest = digest if digest is not None else _NullDigest()
    if container == CONTAINER_LINES:
        yield from _iter_lines(path, digest)
    elif ijson_module() is not None:
        yield from _iter_array_streaming(path, digest)
    else:
        yield from _iter_array_loaded(path, digest)


class _NullDigest:
    def update(self, data: bytes) -> None:
        pass


def _iter_lines(path: Path, digest: Any) -> Iterator[RawItem]:
    position = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            digest.update(line)
            text = line.removeprefix(UTF8_BOM) if number == 1 else line
            if not text.strip():
                continue
            where = f"line {number}"
            try:
                value = loads_bounded(text.removesuffix(b"\n").removesuffix(b"\r"))
            except NotJson as exc:
                error = f"{exc}; expected one JSON object per line or one JSON array"
                yield RawItem(position, where, line=line, error=error)
            else:
                yield RawItem(position, where, value=value, line=line)
            position += 1


def _iter_array_streaming(path: Path, digest: Any) -> Iterator[RawItem]:
    ijson = ijson_module()
    position = 0
    with open(path, "rb") as handle:
        if handle.read(len(UTF8_BOM)) == UTF8_BOM:
            digest.update(UTF8_BOM)
        else:
            handle.seek(0)
        reader = _HashingReader(handle, digest)
        try:
            for value in ijson.items(reader, "item", use_float=True):
                yield RawItem(position, f"item {position}", value=value)
                position += 1
        except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
            raise DataFileError(
                f"{path}: not valid JSON after item {position - 1} ({_first_line(exc)}); the file is "
                "truncated or corrupted: download it again"
            ) from exc
        while reader.read(READ_CHUNK):  # hash whatever trails the array
            pass


def _iter_array_loaded(path: Path, digest: Any) -> Iterator[RawItem]:
    data = path.read_bytes()
    digest.update(data)
    try:
        items = loads_bounded(data.removeprefix(UTF8_BOM))
    except NotJson as exc:
        raise DataFileError(f"{path}: {exc}; the file is truncated or corrupted: download it again") from None
    del data
    if not isinstance(items, list):
        raise DataFileError(f"{path}: expected a JSON array of items, got a JSON {type_name(items)}")
    for position, value in enumerate(items):
        yield RawItem(position, f"item {position}", value=value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Parsing a whole file


@dataclass(frozen=True)
class ParsedRecord:
    """One item after validation: exactly one of ``parsed``, ``problem`` is set, or neither (left out)."""

    raw: RawItem
    parsed: ParsedItem | None
    problem: Problem | None


def iter_parsed(fmt: DatasetFormat, path: Path, digest: Any | None = None) -> Iterator[ParsedRecord]:
    """Validate every item in order; duplicate ids are problems too (the first one is kept)."""
    seen: dict[str, str] = {}
    for raw in iter_raw(path, digest):
        item_id = item_id_of(raw.value, fmt.id_field)
        if raw.error is not None:
            yield ParsedRecord(raw, None, Problem(raw.where, None, "(json)", raw.error))
            continue
        try:
            parsed = fmt.parse(raw.value, raw.position)
        except FieldError as exc:
            yield ParsedRecord(raw, None, Problem(raw.where, item_id, exc.field, exc.problem))
            continue
        if parsed is not None and (blank := _blank_gold(parsed)) is not None:
            problem = "normalizes to nothing: any answer that does (answer[the]) would score 1.0"
            yield ParsedRecord(raw, None, Problem(raw.where, parsed.item_id, blank, problem))
            continue
        if parsed is not None:
            first = seen.setdefault(parsed.item_id, raw.where)
            if first != raw.where:
                problem = f"duplicate id {parsed.item_id!r} (first at {first})"
                yield ParsedRecord(raw, None, Problem(raw.where, parsed.item_id, fmt.id_field, problem))
                continue
        yield ParsedRecord(raw, parsed, None)


def _blank_gold(parsed: ParsedItem) -> str | None:
    """The item's gold field that normalizes to nothing (see :func:`blank_gold_field`), or None."""
    task = Task(parsed.item_id, parsed.question, parsed.answer, parsed.aliases, parsed.family, 0, (), ())
    return blank_gold_field(replace(task, meta=dict(parsed.meta)))


class DocumentPool:
    """Distinct paragraphs: an identical (title, text) pair anywhere in the file is one document."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}

    def intern(self, doc_id: str, title: str, text: str) -> tuple[str, Document | None]:
        """The id of this paragraph's document, and the new Document when it was not seen before."""
        key = (title, text)
        known = self._ids.get(key)
        if known is not None:
            return known, None
        self._ids[key] = doc_id
        return doc_id, Document(doc_id=doc_id, title=title, text=text)


def build_task(fmt: DatasetFormat, parsed: ParsedItem, pool: DocumentPool) -> tuple[Task, list[Document]]:
    """The Task of a parsed item and the documents it adds to the pool (ids ``<item id>:<i>``)."""
    ids: list[str] = []
    new: list[Document] = []
    for i, (title, text) in enumerate(parsed.paragraphs):
        doc_id, document = pool.intern(f"{parsed.item_id}:{i}", title, text)
        ids.append(doc_id)
        if document is not None:
            new.append(document)
    context = tuple(dict.fromkeys(ids))  # a paragraph repeated inside one question appears once
    task = Task(
        task_id=parsed.item_id,
        question=parsed.question,
        answer=parsed.answer,
        aliases=parsed.aliases,
        family=parsed.family,
        hops=len(parsed.gold),
        gold_path=tuple(GoldStep(parsed.paragraphs[i][0], ids[i]) for i in parsed.gold),
        supporting_doc_ids=tuple(dict.fromkeys(ids[i] for i in parsed.supporting)),
        context_doc_ids=context,
        kind=f"{fmt.name}:{parsed.source_type}",
        meta={
            "source": fmt.name,
            "type": parsed.source_type,
            **({"level": parsed.level} if parsed.level is not None else {}),
            **parsed.meta,
        },
    )
    return task, new


@dataclass
class LoadedFile:
    """Everything one data file holds, in file order: distinct documents, tasks and problems."""

    documents: list[Document]
    tasks: list[Task]
    problems: list[Problem]
    sha256: str
    items: int
    excluded: int
    from_cache: bool = False


def check_problems(loaded: LoadedFile, path: Path, strict: bool, stacklevel: int = 2) -> None:
    """Raise the first problem (strict) or warn once with their count (not strict)."""
    if not loaded.problems:
        return
    first = loaded.problems[0].error(str(path))
    more = len(loaded.problems) - 1
    if strict:
        if more:
            first.args = (f"{first.args[0]} (and {more} more bad item(s); strict=False skips them)",)
        raise first
    warnings.warn(
        f"{path}: skipped {len(loaded.problems)} malformed item(s) of {loaded.items} "
        f"(strict=False); the first: {first}",
        DataFileWarning,
        stacklevel=stacklevel,
    )


# --------------------------------------------------------------------------------------------
# The cache


def cache_path_for(path: Path, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the cache of ``path`` lives: ``cache_dir``, else $GATHER_ENVS_CACHE_DIR, else beside it."""
    directory = cache_dir if cache_dir is not None else os.environ.get(CACHE_DIR_ENV)
    if directory:
        return Path(directory).expanduser() / _flat_cache_name(path)
    return path.with_name(path.name + CACHE_SUFFIX)


def _flat_cache_name(path: Path) -> str:
    """A cache file name unique to the data file's absolute path."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return f"{path.name}.{digest}{CACHE_SUFFIX}"


def _stamp(path: Path) -> dict[str, int]:
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}


def _header(fmt: DatasetFormat, stamp: Mapping[str, int]) -> dict[str, Any]:
    return {
        "gather_envs_cache": CACHE_SCHEMA_VERSION,
        "loader_version": LOADER_VERSION,
        "format": fmt.name,
        **stamp,
    }


def load_file(
    fmt: DatasetFormat,
    path: Path,
    *,
    use_cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LoadedFile:
    """Every document, task and problem of ``path``: from a valid cache, else parsed (and cached)."""
    stamp = _stamp(path)
    if not use_cache:
        return _parse_file(fmt, path, None)
    candidates = [cache_path_for(path, cache_dir)]
    if cache_dir is None and not os.environ.get(CACHE_DIR_ENV):
        candidates.append(USER_CACHE_DIR.expanduser() / _flat_cache_name(path))
    for candidate in candidates:
        loaded = _read_cache(candidate, _header(fmt, stamp))
        if loaded is not None:
            return loaded
    for candidate in candidates:
        try:
            with atomic_file(candidate) as sink:
                loaded = _parse_file(fmt, path, sink, _header(fmt, stamp))
        except OSError:
            continue  # read-only folder: try the next place
        if _stamp(path) != stamp:  # the file changed while it was read: do not trust the cache
            candidate.unlink(missing_ok=True)
        return loaded
    warnings.warn(f"{path}: no writable place for its cache; every load parses the file", stacklevel=2)
    return _parse_file(fmt, path, None)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""One encoder for every cache row (``json.dumps`` with options builds a new one per call)."""


def _row(value: Any) -> bytes:
    return _ENCODER.encode(value).encode() + b"\n"


def _parse_file(
    fmt: DatasetFormat, path: Path, sink: IO[bytes] | None, header: dict[str, Any] | None = None
) -> LoadedFile:
    """Parse every item of ``path``; with a ``sink``, write the cache rows there as it goes."""
    digest = hashlib.sha256()
    pool = DocumentPool()
    documents: list[Document] = []
    tasks: list[Task] = []
    problems: list[Problem] = []
    items = excluded = 0
    if sink is not None:
        sink.write(_row(header))
    with _gc_paused():
        for record in iter_parsed(fmt, path, digest):
            items += 1
            if record.problem is not None:
                problems.append(record.problem)
                if sink is not None:
                    p = record.problem
                    sink.write(_row([ROW_PROBLEM, p.where, p.item_id, p.field, p.problem]))
            elif record.parsed is None:
                excluded += 1
            else:
                task, new = build_task(fmt, record.parsed, pool)
                documents.extend(new)
                tasks.append(task)
                if sink is not None:
                    for doc in new:
                        sink.write(_row([ROW_DOCUMENT, doc.doc_id, doc.title, doc.text]))
                    sink.write(_row(_task_row(task)))
    sha = digest.hexdigest()
    if sink is not None:
        sink.write(_row({"end": True, "sha256": sha, "items": items, "excluded": excluded}))
    return LoadedFile(documents, tasks, problems, sha, items, excluded)


def _read_trailer(path: Path) -> dict[str, Any] | None:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - TAIL_BYTES))
        lines = handle.read().rstrip(b"\n").rsplit(b"\n", 1)
    try:
        trailer = json.loads(lines[-1])
    except (ValueError, RecursionError):  # our own file, damaged or tampered with: rebuild it
        return None
    return trailer if isinstance(trailer, dict) and trailer.get("end") is True else None


def _read_cache(path: Path, header: dict[str, Any]) -> LoadedFile | None:
    """The cache's contents when it exists, is complete and matches ``header``; else None."""
    try:
        with open(path, encoding="utf-8") as handle:
            if json.loads(handle.readline() or "null") != header:
                return None
        trailer = _read_trailer(path)
        if trailer is None:
            return None
        documents: list[Document] = []
        tasks: list[Task] = []
        problems: list[Problem] = []
        with _gc_paused(), open(path, encoding="utf-8") as handle:
            handle.readline()
            for rows in _row_batches(handle):
                for row in rows:
                    if not isinstance(row, list):
                        continue  # the trailer
                    tag = row[0]
                    if tag == ROW_DOCUMENT:
                        documents.append(Document(row[1], row[2], row[3]))
                    elif tag == ROW_TASK:
                        tasks.append(_task_from_row(row))
                    elif tag == ROW_PROBLEM:
                        problems.append(Problem(row[1], row[2], row[3], row[4]))
        return LoadedFile(
            documents,
            tasks,
            problems,
            str(trailer["sha256"]),
            int(trailer["items"]),
            int(trailer["excluded"]),
            from_cache=True,
        )
    except (OSError, ValueError, KeyError, IndexError, TypeError, RecursionError):
        return None  # missing, unreadable or corrupted: rebuild it


def _row_batches(handle: IO[str]) -> Iterator[list[Any]]:
    """The rows of a JSON-lines file, decoded ``CACHE_BATCH_ROWS`` at a time by one ``json.loads``."""
    while True:
        lines = [line for line in itertools.islice(handle, CACHE_BATCH_ROWS) if line.strip()]
        if not lines:
            return
        yield json.loads("[" + ",".join(lines) + "]")


def _task_row(task: Task) -> list[Any]:
    """A task as one compact cache row (positional; the cache schema version covers the order)."""
    return [
        ROW_TASK,
        task.task_id,
        task.question,
        task.answer,
        list(task.aliases),
        task.family,
        task.hops,
        [[step.query, step.doc_id] for step in task.gold_path],
        list(task.supporting_doc_ids),
        list(task.context_doc_ids),
        task.kind,
        task.meta,
    ]


def _task_from_row(row: list[Any]) -> Task:
    _, task_id, question, answer, aliases, family, hops, gold, supporting, context, kind, meta = row
    return Task(
        task_id=task_id,
        question=question,
        answer=answer,
        aliases=tuple(aliases),
        family=family,
        hops=hops,
        gold_path=tuple(GoldStep(query, doc_id) for query, doc_id in gold),
        supporting_doc_ids=tuple(supporting),
        context_doc_ids=tuple(context),
        kind=kind,
        meta=meta,
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a bulk load (its repeated full scans of the
    growing heap cost more than the load itself; the loaded records hold no cycles)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------------------------
# Small shared pieces


def join_sentences(sentences: Sequence[str]) -> str:
    """Sentences as one text: HotpotQA's carry their own leading spaces, others get one added."""
    parts: list[str] = []
    for sentence in sentences:
        if parts and sentence and not sentence[0].isspace() and not parts[-1][-1:].isspace():
            parts.append(" ")
        parts.append(sentence)
    return "".join(parts).strip()
