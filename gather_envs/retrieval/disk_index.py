"""An exact BM25 index on disk: memory-mapped arrays that many processes share, scored like rank_bm25.

Layout of an index directory (built by :mod:`gather_envs.retrieval.disk_build`): ``manifest.json``
(format and version, k1/b/epsilon, counts, avgdl's token total, the average idf, the corpus's
identity and the sha256, dtype and shape of every array file) and one ``.npy`` file per array:

- ``postings_docs`` (uint32) and ``postings_tf`` (the smallest of uint8/uint16/uint32 that holds
  the largest term frequency): every term's postings, term-major, documents ascending;
  ``term_offsets`` (int64, one more than the terms) bounds each term's postings;
- ``max_weight`` (float64 per term): each term's largest weight, the bound that pruning needs;
- ``doc_lengths`` (smallest unsigned type) in tokens;
- the vocabulary sorted by UTF-8 bytes (``vocab_bytes`` + ``vocab_offsets``) with each entry's
  term id (``vocab_ids``); term ids number the terms in order of first occurrence, as rank_bm25's
  dict does, so the average idf sums in its order;
- the documents: ``doc_ids``, ``titles`` and ``texts``, each UTF-8 ``*_bytes`` + ``*_offsets``.

Weights are not stored: a query computes the weights of the postings it reads from tf and the
document lengths with :func:`~gather_envs.retrieval.postings.weights_of`, the same IEEE operations
as :class:`~gather_envs.retrieval.bm25.BM25Index`, and the search is the same engine
(:class:`~gather_envs.retrieval.search.PostingsSearch`), so hits and scores equal both.

Opening reads the manifest and the ``.npy`` headers only (memory-maps the rest), so it takes
milliseconds at any size; it refuses a foreign, incomplete or truncated directory (every file's
size, dtype and shape must match the manifest). The sha256 of the arrays is checked by
:meth:`DiskIndex.verify` (or ``open(..., verify=True)``), which reads every byte once.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from gather_envs.errors import ConfigError, IndexFileError
from gather_envs.records.documents import Document
from gather_envs.retrieval.postings import doc_norm, raw_idf, weights_of
from gather_envs.retrieval.search import FloatArray, PostingsSearch, Select

FORMAT = "gather-envs-bm25-index"
"""The manifest's ``format``: a directory without it is not an index of ours."""
FORMAT_VERSION = 1
"""Bumped whenever the layout changes; an index of another version is refused, not misread."""
MANIFEST = "manifest.json"
ARRAYS = (
    "postings_docs",
    "postings_tf",
    "term_offsets",
    "max_weight",
    "doc_lengths",
    "vocab_bytes",
    "vocab_offsets",
    "vocab_ids",
    "doc_ids_bytes",
    "doc_ids_offsets",
    "titles_bytes",
    "titles_offsets",
    "texts_bytes",
    "texts_offsets",
)
"""Every array file of an index, without its ``.npy`` suffix."""
MAX_MANIFEST_BYTES = 1 << 20
VERIFY_CHUNK = 1 << 18
"""Bytes hashed at a time (one reused buffer)."""
SURROGATES = "surrogatepass"
"""Terms are stored as UTF-8 with lone surrogates kept, so any Python string round-trips."""


def array_file(name: str) -> str:
    """The file name of one array."""
    return f"{name}.npy"


class _Strings:
    """A read-only sequence of byte strings stored as one blob plus offsets (bisect-able)."""

    def __init__(self, blob: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64]) -> None:
        self._blob = blob
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> bytes:
        return self._blob[self._offsets[i] : self._offsets[i + 1]].tobytes()

    def lengths(self) -> npt.NDArray[np.int64]:
        """Every string's length in bytes."""
        return np.diff(self._offsets)


class DiskIndex(PostingsSearch):
    """A memory-mapped BM25 index directory; searches like :class:`~gather_envs.retrieval.bm25.BM25Index`.

    Open one with :meth:`open`. Pass it wherever a BM25Index is searched (``top_k``, ``search``,
    ``get_scores``, ``len``); :meth:`document` returns a stored document.
    """

    def __init__(
        self, directory: Path, manifest: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self._k1, self._b, self._epsilon = (float(manifest[name]) for name in ("k1", "b", "epsilon"))
        self._n_docs = int(manifest["n_docs"])
        self._avgdl = int(manifest["total_tokens"]) / self._n_docs if self._n_docs else 0.0
        self._average_idf = float(manifest["average_idf"])
        self._post_docs = arrays["postings_docs"]
        self._post_tf = arrays["postings_tf"]
        self._term_offsets = arrays["term_offsets"]
        self._max_weight = arrays["max_weight"]
        self._doc_len = arrays["doc_lengths"]
        self._vocab = _Strings(arrays["vocab_bytes"], arrays["vocab_offsets"])
        self._vocab_ids = arrays["vocab_ids"]
        self._doc_ids = _Strings(arrays["doc_ids_bytes"], arrays["doc_ids_offsets"])
        self._titles = _Strings(arrays["titles_bytes"], arrays["titles_offsets"])
        self._texts = _Strings(arrays["texts_bytes"], arrays["texts_offsets"])
        self._dense_slot = {}
        self._dense_rows = np.zeros((0, 0))
        self._local = threading.local()

    @classmethod
    def open(cls, directory: str | Path, verify: bool = False) -> DiskIndex:
        """Memory-map an index directory; IndexFileError (one line) if it is not a whole index.

        Checks the manifest and every file's size, dtype and shape; ``verify=True`` also checks
        every file's sha256 (reads the whole index once, see :meth:`verify`).
        """
        directory = Path(directory)
        manifest = read_index_manifest(directory)
        arrays = {name: _map_array(directory, name, manifest["files"][array_file(name)]) for name in ARRAYS}
        _check_structure(directory, manifest, arrays)
        index = cls(directory, manifest, arrays)
        if verify:
            index.verify()
        return index

    def verify(self) -> None:
        """Check every array file's sha256 against the manifest; IndexFileError naming the first that differs."""
        for name in ARRAYS:
            file = array_file(name)
            expected = self.manifest["files"][file]["sha256"]
            actual = file_sha256(self.directory / file)
            if actual != expected:
                raise IndexFileError(
                    f"{self.directory / file}: sha256 {actual[:12]}… does not match the manifest's "
                    f"{expected[:12]}…; the index is corrupted: rebuild it with `gather-envs index build`"
                )

    def __len__(self) -> int:
        """Number of documents."""
        return self._n_docs

    def __repr__(self) -> str:
        return f"DiskIndex({str(self.directory)!r}, documents={len(self)}, terms={self.num_terms})"

    @property
    def num_terms(self) -> int:
        """Size of the vocabulary."""
        return len(self._vocab_ids)

    @property
    def manifest_hash(self) -> str:
        """sha256 of the manifest file: it names every array by its sha256, so it names the index."""
        return hashlib.sha256((self.directory / MANIFEST).read_bytes()).hexdigest()

    @property
    def documents(self) -> Sequence[Document]:
        """The stored documents as a read-only sequence (each read from the map when indexed)."""
        return _Documents(self)

    def longest_document_bytes(self) -> int:
        """The most UTF-8 bytes one stored document's id, title and text take together."""
        if self._n_docs == 0:
            return 0
        return int(np.max(self._doc_ids.lengths() + self._titles.lengths() + self._texts.lengths()))

    def document(self, position: int) -> Document:
        """The stored document at ``position`` (a hit's index)."""
        if not 0 <= position < self._n_docs:
            raise IndexError(f"document position {position} outside [0, {self._n_docs})")
        return Document(
            self._doc_ids[position].decode("utf-8", SURROGATES),
            self._titles[position].decode("utf-8", SURROGATES),
            self._texts[position].decode("utf-8", SURROGATES),
        )

    def _term_ids(self, query_tokens: Sequence[str]) -> list[int]:
        if isinstance(query_tokens, str):
            raise ConfigError("query_tokens is a str; pass a token list, or call search(query, k)")
        terms = []
        vocab = self._vocab
        for token in query_tokens:
            key = token.encode("utf-8", SURROGATES)
            where = bisect.bisect_left(vocab, key)  # type: ignore[arg-type]  # a sequence of bytes
            if where < len(vocab) and vocab[where] == key:
                terms.append(int(self._vocab_ids[where]))
        return terms

    def _df(self, term: int) -> int:
        return int(self._term_offsets[term + 1] - self._term_offsets[term])

    def _docs(self, term: int) -> npt.NDArray[np.uint32]:
        return self._post_docs[self._term_offsets[term] : self._term_offsets[term + 1]]

    def _weights(self, term: int, select: Select = None) -> FloatArray:
        lo, hi = self._term_offsets[term], self._term_offsets[term + 1]
        docs, tf = self._post_docs[lo:hi], self._post_tf[lo:hi]
        if select is not None:
            docs, tf = docs[select], tf[select]
        idf = raw_idf(int(hi - lo), self._n_docs)
        if idf < 0:
            idf = self._epsilon * self._average_idf
        norm = doc_norm(self._doc_len[docs], self._avgdl, self._k1, self._b)
        return weights_of(tf, norm, idf, self._k1)


class _Documents(Sequence[Document]):
    """A DiskIndex's documents, by position."""

    def __init__(self, index: DiskIndex) -> None:
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    @overload
    def __getitem__(self, position: int) -> Document: ...
    @overload
    def __getitem__(self, position: slice) -> Sequence[Document]: ...
    def __getitem__(self, position: int | slice) -> Document | Sequence[Document]:
        if isinstance(position, slice):
            return [self._index.document(i) for i in range(*position.indices(len(self)))]
        return self._index.document(position)


def read_index_manifest(directory: Path) -> dict[str, Any]:
    """An index directory's manifest, checked for format, version and fields; IndexFileError if not."""
    path = directory / MANIFEST
    if not path.is_file():
        what = "is not a directory" if not directory.is_dir() else f"has no {MANIFEST}"
        raise IndexFileError(
            f"{directory} {what}: not a BM25 index (build one with `gather-envs index build`)"
        )
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ValueError(f"over {MAX_MANIFEST_BYTES} bytes")
        manifest = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise IndexFileError(f"{path}: unreadable manifest ({exc}); rebuild the index") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFileError(f"{path}: not a {FORMAT} manifest; this directory is not a BM25 index of ours")
    if manifest.get("version") != FORMAT_VERSION:
        raise IndexFileError(
            f"{path}: index format version {manifest.get('version')!r}, this gather-envs reads "
            f"{FORMAT_VERSION}; rebuild the index with `gather-envs index build`"
        )
    fields = ("k1", "b", "epsilon", "n_docs", "n_terms", "n_postings", "total_tokens", "average_idf", "files")
    missing = [field for field in fields if field not in manifest]
    files = manifest.get("files")
    if not missing and isinstance(files, dict):
        missing = [array_file(name) for name in ARRAYS if not isinstance(files.get(array_file(name)), dict)]
    if missing:
        raise IndexFileError(f"{path}: manifest lacks {', '.join(missing)}; rebuild the index")
    return manifest


def _map_array(directory: Path, name: str, entry: dict[str, Any]) -> npt.NDArray[Any]:
    """Memory-map one array file after checking its size, dtype and shape against the manifest."""
    path = directory / array_file(name)
    try:
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise IndexFileError(
                f"{path}: {size} bytes, the manifest says {entry.get('bytes')}; the index is truncated "
                "or was edited: rebuild it with `gather-envs index build`"
            )
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise IndexFileError(f"{path}: listed in {MANIFEST} but missing; rebuild the index") from None
    except (OSError, ValueError) as exc:
        raise IndexFileError(f"{path}: not a readable .npy array ({exc}); rebuild the index") from None
    if str(array.dtype) != entry.get("dtype") or list(array.shape) != entry.get("shape"):
        raise IndexFileError(
            f"{path}: {array.dtype}{list(array.shape)}, the manifest says "
            f"{entry.get('dtype')}{entry.get('shape')}; rebuild the index"
        )
    # A plain ndarray view of the map: np.memmap's subclass hooks slow every slice and ufunc.
    return array.view(np.ndarray)


def _check_structure(directory: Path, manifest: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
    """Refuse arrays whose lengths disagree with each other or with the manifest's counts."""
    n_docs, n_terms, n_postings = (int(manifest[key]) for key in ("n_docs", "n_terms", "n_postings"))
    expected = {
        "postings_docs": n_postings,
        "postings_tf": n_postings,
        "term_offsets": n_terms + 1,
        "max_weight": n_terms,
        "doc_lengths": n_docs,
        "vocab_offsets": n_terms + 1,
        "vocab_ids": n_terms,
        "doc_ids_offsets": n_docs + 1,
        "titles_offsets": n_docs + 1,
        "texts_offsets": n_docs + 1,
    }
    for name, length in expected.items():
        if len(arrays[name]) != length:
            raise IndexFileError(
                f"{directory / array_file(name)}: {len(arrays[name])} entries, the manifest's counts "
                f"need {length}; rebuild the index"
            )
    if int(arrays["term_offsets"][-1]) != n_postings:
        raise IndexFileError(
            f"{directory / array_file('term_offsets')}: does not end at {n_postings}; rebuild the index"
        )


def file_sha256(path: Path) -> str:
    """sha256 of a file, read a chunk at a time."""
    digest = hashlib.sha256()
    buffer = bytearray(VERIFY_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()
