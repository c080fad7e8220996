"""The records store: one JSON-lines file of episode records, appended, read and repaired.

Several processes may append to one file: each batch of lines is written under an exclusive
``flock`` with one ``os.write`` per line on an ``O_APPEND`` descriptor, then fsynced, so lines never
interleave and a crash loses at most the line being written.

Damaged tails. A *torn* last line (it starts like a record, ``{``, but lacks its final newline: a
writer stopped mid-record) is skipped by the readers with a one-line notice, and moved to the
``<file>.corrupt`` sidecar by the next append or by :func:`read_for_append`, so it never ends up
in the middle of a file and no byte is lost. Any other line that is not a record is an error
naming file and line, except that :func:`read_for_append` (the evaluation runner's read before it
resumes) also moves an unreadable last line that follows records to the sidecar. A file whose
first line is not a record is refused as "not an episode-records file". Notices go to the
``gather_envs.records`` logger (with no logging set up, Python prints them to stderr as one line).
"""

from __future__ import annotations

import gzip
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple

from gather_envs.errors import RecordsError
from gather_envs.files import PathLike, lock_fd, unlock_fd, write_atomic
from gather_envs.json_files import NotJson, loads_bounded
from gather_envs.records.episodes import EpisodeRecord

_TAIL_PROBE_BYTES = 1 << 16

CORRUPT_SUFFIX = ".corrupt"
"""Damaged tails are moved to ``<records file>.corrupt`` (appended, one line each), never dropped."""

_RECORD_START = b"{"
"""Every record line starts with this; a torn write is a prefix of a record line, so it does too."""

GZIP_SUFFIX = ".gz"
"""A records file named ``*.jsonl.gz`` is gzip-compressed: read transparently, never appended to."""

_log = logging.getLogger("gather_envs.records")


# --------------------------------------------------------------------------------------------
# Appending


class RecordWriter:
    """Appends records to a JSON-lines file, one locked, fsynced write per call.

    Safe to share a file between processes (and between writers in one process). Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, path: PathLike, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        _refuse_compressed(self.path, "appended to")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        # flock does not exclude threads sharing this descriptor; this lock does.
        self._thread_lock = threading.Lock()

    def write(self, record: EpisodeRecord) -> None:
        """Append one record; it is on disk when this returns."""
        self.write_many((record,))

    def write_many(self, records: Iterable[EpisodeRecord]) -> None:
        """Append records as consecutive lines under one lock; on disk when this returns."""
        lines = [record.to_line() for record in records]
        if not lines:
            return
        with self._thread_lock:
            fd = self._fd
            if fd is None:
                raise RecordsError(f"record writer for {self.path} is closed")
            lock_fd(fd)
            try:
                _repair_tail(fd, self.path)
                for line in lines:
                    _write_all(fd, line)
                if self.fsync:
                    os.fsync(fd)
            finally:
                unlock_fd(fd)

    def close(self) -> None:
        """Close the file; further writes raise."""
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            self.close()


def append_records(path: PathLike, records: Iterable[EpisodeRecord], *, fsync: bool = True) -> int:
    """Append records to a JSON-lines file atomically per line; returns how many were written."""
    records = list(records)
    with RecordWriter(path, fsync=fsync) as writer:
        writer.write_many(records)
    return len(records)


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` fully; a regular file takes it in one call, the loop covers short writes."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _repair_tail(fd: int, path: Path) -> None:
    """Make the file end on a line boundary before appending (the caller holds the lock).

    A writer killed mid-line leaves a torn tail: appending after it would glue the next record
    to it and bury a corrupt line mid-file. A tail that is valid JSON only lacks its newline and
    gets one; anything else is moved to the ``.corrupt`` sidecar with a notice.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = size
    tail = b""
    while start > 0:
        probe = min(_TAIL_PROBE_BYTES, start)
        start -= probe
        tail = os.pread(fd, probe, start) + tail
        cut = tail.rfind(b"\n")
        if cut >= 0:
            start += cut + 1
            tail = tail[cut + 1 :]
            break
    try:
        _loads(tail)
    except _NotJson:
        pass
    else:
        _write_all(fd, b"\n")
        return
    _move_aside(
        fd, path, start, tail, f"a torn last line ({len(tail)} bytes, from a writer that stopped mid-record)"
    )


def _move_aside(fd: int, path: Path, start: int, data: bytes, what: str, line: int | None = None) -> None:
    """Append ``data`` (the file's bytes from ``start`` on) to the sidecar, then cut the file there."""
    sidecar = corrupt_sidecar(path)
    with sidecar.open("ab") as handle:
        handle.write(data if data.endswith(b"\n") else data + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.ftruncate(fd, start)
    os.fsync(fd)
    where = str(path) if line is None else f"{path}:{line}"
    _log.warning("gather-envs: %s: moved %s to %s", where, what, sidecar)


def corrupt_sidecar(path: PathLike) -> Path:
    """Where damaged tails of the records file ``path`` are kept: ``<path>.corrupt``."""
    path = Path(path)
    return path.with_name(path.name + CORRUPT_SUFFIX)


class _NotJson(Exception):
    """A line is not JSON; the message is the short reason."""


def _loads(line: bytes) -> Any:
    """``line`` parsed as JSON within the limits; _NotJson with a short reason (binary, syntax, depth) otherwise."""
    try:
        return loads_bounded(line)
    except NotJson as exc:  # not UTF-8, not JSON, too deep or too large
        raise _NotJson(str(exc)) from None


def is_compressed(path: PathLike) -> bool:
    """Whether ``path`` names a gzip-compressed records file (``*.gz``)."""
    return os.fspath(path).endswith(GZIP_SUFFIX)


def _refuse_compressed(path: Path, what: str) -> None:
    if is_compressed(path):
        raise RecordsError(
            f"{path} is gzip-compressed: records can be read from it but not {what}; "
            f"decompress it (gunzip) first"
        )


def _is_torn(raw: bytes) -> bool:
    """Whether an unparseable last line looks like a record cut short by a killed writer."""
    return not raw.endswith(b"\n") and raw.lstrip().startswith(_RECORD_START)


def read_for_append(
    path: PathLike, check: Callable[[list[tuple[EpisodeRecord, RecordLocation]]], None] | None = None
) -> list[tuple[EpisodeRecord, RecordLocation]]:
    """Records of a file about to be appended to (a resume), its damaged last line moved aside.

    Every line is read, and ``check`` (which may raise to refuse the file) sees the records,
    before anything changes, under the file's lock. A torn last line, and a last line that is not
    JSON but follows records, are then moved to the ``.corrupt`` sidecar (nothing is lost) with a
    notice; an unterminated last record gets its newline. Anything else that is not a record is a
    RecordsError naming file and line, with the file left as it was: a damaged line in the middle,
    a last line that is JSON but not a record, or a first line that is not a record (the file is
    not a records file). A missing file has no records.
    """
    path = Path(path)
    _refuse_compressed(path, "appended to (a resume)")
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RecordsError(f"cannot open records file {path}: {exc}") from exc
    with handle:
        fd = handle.fileno()
        lock_fd(fd)
        try:
            return _read_and_repair(handle, path, check)
        finally:
            unlock_fd(fd)


def _read_and_repair(
    handle: BinaryIO, path: Path, check: Callable[[list[tuple[EpisodeRecord, RecordLocation]]], None] | None
) -> list[tuple[EpisodeRecord, RecordLocation]]:
    """:func:`read_for_append` on an open, locked file: one pass over its lines, then the repair."""
    located: list[tuple[EpisodeRecord, RecordLocation]] = []
    damaged: tuple[int, int, str] | None = None  # line number, offset and description of a damaged last line
    for lineno, offset, raw, last in _nonblank_lines(handle):
        try:
            obj = _loads(raw)
        except _NotJson as exc:
            if last and _is_torn(raw):
                damaged = (
                    lineno,
                    offset,
                    f"a torn last line ({len(raw)} bytes, from a writer that stopped mid-record)",
                )
                break
            if last and located:
                damaged = (lineno, offset, f"an unreadable last line ({len(raw)} bytes, {exc})")
                break
            raise _not_a_record(path, lineno, exc, last=last, first=not located) from None
        located.append((_to_record(path, lineno, obj), RecordLocation(path, lineno)))
    if check is not None:
        check(located)
    fd = handle.fileno()
    size = os.fstat(fd).st_size
    if damaged is not None:
        lineno, start, what = damaged
        _move_aside(fd, path, start, os.pread(fd, size - start, start), what, line=lineno)
    elif size and os.pread(fd, 1, size - 1) != b"\n":
        os.lseek(fd, 0, os.SEEK_END)
        _write_all(fd, b"\n")
        os.fsync(fd)
    return located


# --------------------------------------------------------------------------------------------
# Locations


class RecordLocation(NamedTuple):
    """Where a record was read: file and 1-based line number (printed as ``file:line``)."""

    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


# --------------------------------------------------------------------------------------------
# Reading


def iter_records(path: PathLike) -> Iterator[EpisodeRecord]:
    """Records of one JSON-lines file in order, streamed (see :func:`iter_records_with_locations`)."""
    for record, _ in iter_records_with_locations(path):
        yield record


def iter_records_with_locations(path: PathLike) -> Iterator[tuple[EpisodeRecord, RecordLocation]]:
    """Records of one JSON-lines file with their ``file:line``, streamed; a torn last line is skipped.

    Blank lines are ignored. A torn last line is skipped with a one-line notice. Any other line
    that is not a record raises RecordsError naming file and line, and saying what to do. A
    ``*.gz`` file is decompressed on the fly.
    """
    path = Path(path)
    try:
        handle: BinaryIO = gzip.open(path, "rb") if is_compressed(path) else path.open("rb")  # type: ignore[assignment]  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise RecordsError(f"cannot read records file {path}: {exc}") from exc
    try:
        with handle:
            yield from _located_records(path, handle)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise RecordsError(f"{path}: not a readable gzip file ({exc}); compress records with gzip") from exc


def _located_records(path: Path, handle: BinaryIO) -> Iterator[tuple[EpisodeRecord, RecordLocation]]:
    """The records of an open records file with their locations (see :func:`iter_records_with_locations`)."""
    first = True
    for lineno, _, raw, last in _nonblank_lines(handle):
        try:
            obj = _loads(raw)
        except _NotJson as exc:
            if last and _is_torn(raw):
                _log.warning(
                    "gather-envs: %s:%d: skipped a torn last line (%d bytes; a writer stopped mid-record)",
                    path, lineno, len(raw),
                )  # fmt: skip
                return
            raise _not_a_record(path, lineno, exc, last=last, first=first) from None
        first = False
        yield _to_record(path, lineno, obj), RecordLocation(path, lineno)


def _nonblank_lines(handle: BinaryIO) -> Iterator[tuple[int, int, bytes, bool]]:
    """(line number, byte offset, bytes, is it the last one) of each non-blank line, streamed."""
    pending: tuple[int, int, bytes] | None = None
    offset = 0
    for lineno, raw in enumerate(handle, start=1):
        if raw.strip():
            if pending is not None:
                yield (*pending, False)
            pending = (lineno, offset, raw)
        offset += len(raw)
    if pending is not None:
        yield (*pending, True)


def _not_a_record(path: Path, lineno: int, reason: _NotJson, *, last: bool, first: bool) -> RecordsError:
    """The error for a line that is not JSON (and not a torn last line), saying what to do."""
    if first:
        return RecordsError(
            f"{path} is not an episode-records file: line {lineno} is not a record ({reason}); "
            "records files are the JSON lines `gather-envs eval --out` writes"
        )
    if last:
        return RecordsError(
            f"{path}:{lineno}: the last line is not a record ({reason}) and is not a torn write; "
            f"resuming the run (the same `gather-envs eval ... --out`) moves it to "
            f"{corrupt_sidecar(path).name}, or delete that line"
        )
    return RecordsError(
        f"{path}:{lineno}: corrupt line in the middle of a records file ({reason}); fix or delete that line"
    )


def _to_record(path: Path, lineno: int, obj: Any) -> EpisodeRecord:
    """A parsed line as a record; RecordsError naming file and line if it does not fit the schema."""
    try:
        return EpisodeRecord.from_json(obj)
    except RecordsError as exc:
        raise RecordsError(f"{path}:{lineno}: {exc}") from exc


def read_records(paths: PathLike | Sequence[PathLike]) -> list[EpisodeRecord]:
    """All records of one file or of several files, concatenated in the order given."""
    return [record for record, _ in read_records_with_locations(paths)]


def read_records_with_locations(
    paths: PathLike | Sequence[PathLike],
) -> list[tuple[EpisodeRecord, RecordLocation]]:
    """Like :func:`read_records`, each record paired with its ``file:line`` (for duplicate checks)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    located: list[tuple[EpisodeRecord, RecordLocation]] = []
    for path in paths:
        located.extend(iter_records_with_locations(path))
    return located


def rewrite_records(path: PathLike, records: Sequence[EpisodeRecord]) -> None:
    """Replace the file ``path`` names (through any symlink) atomically by ``records``.

    The caller holds the run lock (:class:`gather_envs.runs.RunLock`).
    """
    write_atomic(path, b"".join(record.to_line() for record in records))
