"""Build a :class:`~gather_envs.retrieval.disk_index.DiskIndex` out of core, within a memory budget.

Documents stream in once. Their texts go straight to the index's files; their tokens become term
ids (numbered in order of first occurrence) in a fixed buffer. When the buffer is full it is
sorted into a run of ``(term, doc, tf)`` postings (the same key sort as
:class:`~gather_envs.retrieval.bm25.BM25Index`) and spilled to a temporary file. At the end a
k-way merge of the runs writes the postings term-major, a bounded chunk of each run at a time.

Memory: the token buffer and its sort take :data:`BYTES_PER_BUFFERED_TOKEN` bytes per token and
the merge's chunks :data:`BYTES_PER_MERGE_ROW` per row, both sized from ``memory_budget``. Beyond
the budget, the build holds the vocabulary: the term dict while streaming (about 100-150 bytes
per distinct term in CPython, plus the sorted copy made once at the end) and 32 bytes per term
of arrays (df, idf, largest weight, offsets). The document lengths are read back memory-mapped
during the merge (4 bytes per document, file-backed pages).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import struct
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from gather_envs.errors import ConfigError
from gather_envs.files import atomic_directory
from gather_envs.records.documents import Document
from gather_envs.retrieval.bm25 import DEFAULT_B, DEFAULT_EPSILON, DEFAULT_K1
from gather_envs.retrieval.disk_index import (
    ARRAYS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SURROGATES,
    VERIFY_CHUNK,
    array_file,
    file_sha256,
)
from gather_envs.retrieval.postings import (
    check_parameters,
    doc_norm,
    pairs_from_keys,
    sorted_keys,
    term_idf,
    weights_of,
)
from gather_envs.retrieval.tokenize import tokenize

DEFAULT_MEMORY_BUDGET = 2 << 30
"""Bytes for the build's buffers when none is given (2 GiB)."""
MIN_MEMORY_BUDGET = 4 << 20
"""The smallest budget accepted (4 MiB): below it runs get too small to be worth a file."""
BYTES_PER_BUFFERED_TOKEN = 64
"""A buffered token's cost while its run is sorted: its id (4), its key (8), its posting (12), the counting's temporaries (~40)."""
BYTES_PER_MERGE_ROW = 64
"""A merged row's cost: its key and tf read (12), the sort's order (8), docs, terms, weights and headroom."""
MIN_MERGE_ROWS = 256
"""Rows read from each run at a time however many runs share the budget."""
RUN_WRITE_ROWS = 1 << 13
"""Postings converted to run-file rows at a time while spilling."""
OFFSET_FLUSH = 1 << 13
"""Offsets (and document lengths) buffered before they are appended to their file."""
NPY_HEADER_BYTES = 128
"""Each .npy header is padded to this size, so it can be rewritten with the final length in place."""
RUNS_DIR = "runs.tmp"
BUFFER_BYTES = 1 << 16
"""Write buffer of each output file (at most 7 are open at once)."""
FIXED_BYTES = 7 * BUFFER_BYTES + 4 * OFFSET_FLUSH * 8 + VERIFY_CHUNK
"""The part of the budget taken by open files, pending offsets and checksumming; the rest sizes the buffers."""
DOC_BITS = 32
"""A run row's key is ``term << 32 | doc``: document ids are uint32."""
MAX_DOCS = (1 << DOC_BITS) - 1


def parse_size(text: str) -> int:
    """Bytes of a size such as ``2GB``, ``512MiB``, ``800M`` or ``1000000`` (powers of 1024).

    >>> parse_size("2GB"), parse_size("512MiB"), parse_size("1000")
    (2147483648, 536870912, 1000)
    """
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = cleaned.rstrip("KMGT"), cleaned[len(cleaned.rstrip("KMGT")) :]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise ConfigError(f"memory budget {text!r} is not a size such as 2GB, 512MB or 1000000") from None
    return int(value)


class _NpyWriter:
    """A 1-D .npy file appended to an array at a time; its header gets the final length on close."""

    def __init__(self, path: Path, dtype: npt.DTypeLike) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.length = 0
        self._handle: IO[bytes] = path.open("wb", buffering=BUFFER_BYTES)
        self._handle.write(_npy_header(self.dtype, 0))

    def append(self, values: Any) -> None:
        """Append values (converted to this file's dtype)."""
        data = np.ascontiguousarray(values, dtype=self.dtype)
        self._handle.write(data.tobytes())
        self.length += len(data)

    def append_bytes(self, data: bytes) -> None:
        """Append raw bytes (a uint8 file)."""
        self._handle.write(data)
        self.length += len(data)

    def close(self) -> dict[str, Any]:
        """Finish the file; its manifest entry (sha256, bytes, dtype, shape)."""
        self._handle.seek(0)
        self._handle.write(_npy_header(self.dtype, self.length))
        self._handle.close()
        size = self.path.stat().st_size
        return {
            "sha256": file_sha256(self.path),
            "bytes": size,
            "dtype": str(self.dtype),
            "shape": [self.length],
        }


def _npy_header(dtype: np.dtype[Any], length: int) -> bytes:
    """An .npy version 1.0 header for a 1-D array, padded to exactly :data:`NPY_HEADER_BYTES`."""
    descr = np.lib.format.dtype_to_descr(dtype)
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': ({length},), }}"
    text = text.ljust(NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


class _Strings:
    """A blob of UTF-8 strings and their offsets, written as two arrays."""

    def __init__(self, directory: Path, name: str) -> None:
        self._bytes = _NpyWriter(directory / array_file(f"{name}_bytes"), np.uint8)
        self._offsets = _NpyWriter(directory / array_file(f"{name}_offsets"), np.int64)
        self._pending = array("q", [0])
        self._end = 0

    def add(self, text: str) -> None:
        data = text.encode("utf-8", SURROGATES)
        self._bytes.append_bytes(data)
        self._end += len(data)
        self._pending.append(self._end)
        if len(self._pending) >= OFFSET_FLUSH:
            self._flush()

    def _flush(self) -> None:
        self._offsets.append(np.frombuffer(self._pending, dtype=np.int64))
        self._pending = array("q")

    def close(self) -> dict[str, dict[str, Any]]:
        self._flush()
        return {self._bytes.path.name: self._bytes.close(), self._offsets.path.name: self._offsets.close()}


class _Run:
    """One spilled run: ``term << 32 | doc`` keys (uint64) and term frequencies (uint32), sorted by key."""

    def __init__(self, stem: Path, rows: int) -> None:
        self.keys_path = stem.with_suffix(".keys")
        self.tf_path = stem.with_suffix(".tf")
        self.rows = rows
        self.read = 0
        self.keys = np.zeros(0, dtype=np.uint64)
        self.tf = np.zeros(0, dtype=np.uint32)

    def fill(self, rows: int) -> None:
        """Top the buffer up to ``rows`` rows from the file (while the file has any left)."""
        count = min(rows - len(self.keys), self.rows - self.read)
        if count <= 0:
            return
        keys = np.fromfile(self.keys_path, np.uint64, count, offset=self.read * 8)
        tf = np.fromfile(self.tf_path, np.uint32, count, offset=self.read * 4)
        self.keys = np.concatenate([self.keys, keys])
        self.tf = np.concatenate([self.tf, tf])
        self.read += count

    @property
    def file_done(self) -> bool:
        return self.read == self.rows

    def take(self, frontier: np.uint64) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint32]]:
        """Remove and return the buffered rows with key <= ``frontier``."""
        cut = int(np.searchsorted(self.keys, frontier, side="right"))
        taken = self.keys[:cut], self.tf[:cut]
        self.keys, self.tf = self.keys[cut:], self.tf[cut:]
        return taken


class _Builder:
    """The state of one build: the vocabulary, the token buffer, the runs and the open output files."""

    def __init__(self, staging: Path, memory_budget: int, index_text: Callable[[Document], str]) -> None:
        self.staging = staging
        self.runs_dir = staging / RUNS_DIR
        self.runs_dir.mkdir()
        self.index_text = index_text
        self.vocab: defaultdict[str, int] = defaultdict(itertools.count().__next__)
        self.work_bytes = memory_budget - FIXED_BYTES
        self.buffer = np.empty(self.work_bytes // BYTES_PER_BUFFERED_TOKEN, dtype=np.int32)
        self.fill = 0
        self.run_offsets = array("q", [0])
        self.doc_base = 0
        self.n_docs = 0
        self.total_tokens = 0
        self.max_tf = 0
        self.df = np.zeros(0, dtype=np.int64)
        self.runs: list[_Run] = []
        self.doc_lengths = _NpyWriter(staging / array_file("doc_lengths"), np.uint32)
        self.pending_lengths = array("I")
        self.strings = {name: _Strings(staging, name) for name in ("doc_ids", "titles", "texts")}
        self.documents_digest = hashlib.sha256()

    def add(self, document: Document) -> None:
        """Stream one document in: its strings to the files, its tokens to the buffer."""
        if self.n_docs == MAX_DOCS:
            raise ConfigError(f"an index holds at most {MAX_DOCS} documents (uint32 document ids)")
        tokens = tokenize(self.index_text(document))
        n = len(tokens)
        if self.fill + n > len(self.buffer):
            self.spill()
            if n > len(self.buffer):
                raise ConfigError(
                    f"document {document.doc_id!r:.60} has {n} tokens, more than the memory budget "
                    f"buffers ({len(self.buffer)}); raise --memory-budget"
                )
        self.buffer[self.fill : self.fill + n] = np.fromiter(map(self.vocab.__getitem__, tokens), np.int32, n)
        self.fill += n
        self.run_offsets.append(self.fill)
        self.pending_lengths.append(n)
        if len(self.pending_lengths) >= OFFSET_FLUSH:
            self.doc_lengths.append(np.frombuffer(self.pending_lengths, dtype=np.uint32))
            self.pending_lengths = array("I")
        self.total_tokens += n
        self.n_docs += 1
        self.strings["doc_ids"].add(document.doc_id)
        self.strings["titles"].add(document.title)
        self.strings["texts"].add(document.text)
        # The same bytes as corpus.documents_hash, so a frozen corpus's index names its content hash.
        line = json.dumps(document.to_json(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        self.documents_digest.update(line.encode("utf-8", SURROGATES) + b"\n")

    def spill(self) -> None:
        """Sort the buffered tokens into postings and write them as one run file."""
        n_docs = len(self.run_offsets) - 1
        if n_docs == 0:
            return
        offsets = np.frombuffer(self.run_offsets, dtype=np.int64)
        keys = sorted_keys(self.buffer[: self.fill], offsets)
        pairs = pairs_from_keys(keys, n_docs, len(self.vocab))
        del keys
        if len(self.df) < len(self.vocab):
            self.df = np.concatenate([self.df, np.zeros(len(self.vocab) - len(self.df), dtype=np.int64)])
        self.df += pairs.df
        if len(pairs.tf):
            self.max_tf = max(self.max_tf, int(pairs.tf.max()))
            run = _Run(self.runs_dir / f"run-{len(self.runs):05d}", len(pairs.docs))
            with run.keys_path.open("wb") as keys_file, run.tf_path.open("wb") as tf_file:
                for lo in range(0, len(pairs.docs), RUN_WRITE_ROWS):
                    hi = lo + RUN_WRITE_ROWS
                    row_keys = pairs.terms[lo:hi].astype(np.uint64) << np.uint64(DOC_BITS)
                    row_keys |= pairs.docs[lo:hi].astype(np.uint64) + np.uint64(self.doc_base)
                    keys_file.write(row_keys.tobytes())
                    tf_file.write(pairs.tf[lo:hi].astype(np.uint32).tobytes())
            self.runs.append(run)
        self.doc_base += n_docs
        self.fill = 0
        self.run_offsets = array("q", [0])

    def finish(self, k1: float, b: float, epsilon: float) -> dict[str, Any]:
        """Spill the rest, write the vocabulary and the merged postings; the arrays' manifest entries and counts."""
        self.spill()
        self.buffer = np.empty(0, dtype=np.int32)
        self.doc_lengths.append(np.frombuffer(self.pending_lengths, dtype=np.uint32))
        files: dict[str, dict[str, Any]] = {array_file("doc_lengths"): self.doc_lengths.close()}
        for strings in self.strings.values():
            files.update(strings.close())
        n_terms = len(self.vocab)
        files.update(self._write_vocabulary())
        idf, average_idf = term_idf(self.df, self.n_docs, epsilon, None)
        avgdl = self.total_tokens / self.n_docs if self.n_docs else 0.0
        files.update(self._merge(idf, avgdl, k1, b))
        shutil.rmtree(self.runs_dir)
        return {
            "n_docs": self.n_docs,
            "n_terms": n_terms,
            "n_postings": int(self.df.sum()),
            "total_tokens": self.total_tokens,
            "avgdl": avgdl,
            "average_idf": average_idf,
            "runs": len(self.runs),
            "files": files,
        }

    def _write_vocabulary(self) -> dict[str, dict[str, Any]]:
        """The terms sorted by UTF-8 bytes, with each one's term id; frees the term dict."""
        encoded = [term.encode("utf-8", SURROGATES) for term in self.vocab]
        self.vocab.clear()
        order = sorted(range(len(encoded)), key=encoded.__getitem__)
        blob = _NpyWriter(self.staging / array_file("vocab_bytes"), np.uint8)
        offsets = _NpyWriter(self.staging / array_file("vocab_offsets"), np.int64)
        ids = _NpyWriter(self.staging / array_file("vocab_ids"), np.uint32)
        end = 0
        offsets.append([0])
        for lo in range(0, len(order), OFFSET_FLUSH):
            chunk = order[lo : lo + OFFSET_FLUSH]
            data = [encoded[term] for term in chunk]
            blob.append_bytes(b"".join(data))
            ends = np.cumsum([len(term) for term in data], dtype=np.int64) + end
            offsets.append(ends)
            end = int(ends[-1])
            ids.append(chunk)
        return {writer.path.name: writer.close() for writer in (blob, offsets, ids)}

    def _merge(
        self, idf: npt.NDArray[np.float64], avgdl: float, k1: float, b: float
    ) -> dict[str, dict[str, Any]]:
        """k-way merge of the runs into the term-major postings; also each term's largest weight."""
        tf_dtype = next(
            dtype for dtype in (np.uint8, np.uint16, np.uint32) if self.max_tf <= np.iinfo(dtype).max
        )
        docs_out = _NpyWriter(self.staging / array_file("postings_docs"), np.uint32)
        tf_out = _NpyWriter(self.staging / array_file("postings_tf"), tf_dtype)
        doc_len = np.load(self.staging / array_file("doc_lengths"), mmap_mode="r")
        max_weight = np.full(len(self.df), -np.inf)
        rows = max(MIN_MERGE_ROWS, self.work_bytes // (max(1, len(self.runs)) * BYTES_PER_MERGE_ROW))
        runs = list(self.runs)
        done = np.uint64((1 << 64) - 1)
        while runs:
            for run in runs:
                if len(run.keys) < rows // 2:
                    run.fill(rows)
            # Every unread row of a run is above its buffer's last key: up to the least of those
            # keys, every run's rows are buffered, so they can be merged and written.
            frontier = min((run.keys[-1] for run in runs if not run.file_done), default=done)
            parts = [run.take(frontier) for run in runs]
            runs = [run for run in runs if len(run.keys) or not run.file_done]
            keys = np.concatenate([part[0] for part in parts])
            tf = np.concatenate([part[1] for part in parts])
            order = np.argsort(keys)
            keys, tf = keys[order], tf[order]
            del order
            docs = (keys & np.uint64(MAX_DOCS)).astype(np.uint32)
            terms = (keys >> np.uint64(DOC_BITS)).astype(np.int64)
            del keys
            docs_out.append(docs)
            tf_out.append(tf)
            if len(terms):
                weights = weights_of(tf, doc_norm(doc_len[docs], avgdl, k1, b), idf[terms], k1)
                starts = np.flatnonzero(np.concatenate([[True], terms[1:] != terms[:-1]]))
                np.maximum.at(max_weight, terms[starts], np.maximum.reduceat(weights, starts))
        del doc_len
        term_offsets = np.zeros(len(self.df) + 1, dtype=np.int64)
        np.cumsum(self.df, out=term_offsets[1:])
        files = {docs_out.path.name: docs_out.close(), tf_out.path.name: tf_out.close()}
        for name, values in (("term_offsets", term_offsets), ("max_weight", max_weight)):
            writer = _NpyWriter(self.staging / array_file(name), values.dtype)
            writer.append(values)
            files[writer.path.name] = writer.close()
        return files


def build_disk_index(
    documents: Iterable[Document],
    out: str | Path,
    index_text: Callable[[Document], str],
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    epsilon: float = DEFAULT_EPSILON,
    corpus: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Stream ``documents`` into an index directory at ``out`` (replacing an older index there); its manifest.

    ``index_text(document)`` is the text BM25 indexes (the suite's is
    :func:`gather_envs.corpus.corpus.index_text`, title then text). ``corpus`` names the source
    in the manifest; the sha256 of the documents' canonical JSON lines is added to it.
    """
    check_parameters(k1, b, epsilon)
    if (
        isinstance(memory_budget, bool)
        or not isinstance(memory_budget, int)
        or memory_budget < MIN_MEMORY_BUDGET
    ):
        raise ConfigError(f"memory_budget must be an int >= {MIN_MEMORY_BUDGET} bytes, got {memory_budget!r}")
    out = Path(out)
    with atomic_directory(out, replaceable=_is_index_file) as staging:
        builder = _Builder(staging, memory_budget, index_text)  # a failure removes staging, runs and all
        for document in documents:
            builder.add(document)
        counts = builder.finish(k1, b, epsilon)
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "k1": float(k1),
            "b": float(b),
            "epsilon": float(epsilon),
            **{key: value for key, value in counts.items() if key not in ("runs", "files")},
            "tf_dtype": counts["files"][array_file("postings_tf")]["dtype"],
            "corpus": {**(corpus or {}), "documents_sha256": builder.documents_digest.hexdigest()},
            "build": {"memory_budget": memory_budget, "runs": counts["runs"], "tokenizer": "lowercase \\w+"},
            "files": {array_file(name): counts["files"][array_file(name)] for name in ARRAYS},
        }
        (staging / MANIFEST).write_text(
            json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
    return manifest


def _is_index_file(name: str) -> bool:
    """Whether an existing output's file belongs to an index (so a rebuild may replace it)."""
    return name == MANIFEST or name in {array_file(array_name) for array_name in ARRAYS}
