"""The arithmetic every BM25 index shares with ``rank_bm25.BM25Okapi``, in its IEEE order, and the posting build.

Scores are bit-identical to rank_bm25 because every step does the same floating-point operations
in the same order:

* a term's ``idf`` is ``log(N - df + 0.5) - log(df + 0.5)`` (``math.log``). Negative values are
  replaced by ``epsilon * average_idf``, where ``average_idf`` sums the raw idfs one at a time in
  the order the terms first occur in the corpus (the insertion order of rank_bm25's dict).
* a posting's weight is ``idf * ((tf * (k1 + 1)) / (tf + k1 * ((1 - b) + (b * dl) / avgdl)))``.
  Elementwise numpy arithmetic is exact IEEE, so computing it at build time for every posting
  (:class:`~gather_envs.retrieval.bm25.BM25Index`) or at query time for a few
  (:class:`~gather_envs.retrieval.disk_index.DiskIndex`) gives the same bits.
* a document's score adds the weights of the query tokens one at a time, in query order
  (:mod:`gather_envs.retrieval.search`).

The build side turns token ids into term-major postings by sorting packed ``term * n_docs + doc``
keys with numpy, a chunk at a time, with no Python dict per document.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from gather_envs.errors import ConfigError

KEY_DOC_CHUNK = 1 << 14
"""Documents whose keys are offset together during the build (this bounds temporary memory)."""
PAIR_CHUNK = 1 << 20
"""Sorted keys counted together into postings during the build (this bounds temporary memory)."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def raw_idf(df: int, n_docs: int) -> float:
    """rank_bm25's idf before the epsilon floor (``math.log``: numpy's log may differ in the last bit)."""
    return math.log(n_docs - df + 0.5) - math.log(df + 0.5)


def doc_norm(doc_len: npt.NDArray[np.integer], avgdl: float, k1: float, b: float) -> FloatArray:
    """``k1 * ((1 - b) + (b * dl) / avgdl)`` per document: the length part of the denominator."""
    return (k1 * ((1 - b) + (b * doc_len) / avgdl)).astype(np.float64, copy=False)


def weights_of(
    tf: npt.NDArray[np.integer], norm: FloatArray, idf: FloatArray | float, k1: float
) -> FloatArray:
    """Postings' weights from their tf, their documents' :func:`doc_norm` and their terms' idf."""
    freq = tf.astype(np.float64)
    denominator = norm + freq
    freq *= k1 + 1
    freq /= denominator
    freq *= idf
    return freq


def check_parameters(k1: float, b: float, epsilon: float) -> None:
    """Reject parameters that would make scores undefined (NaN) or meaningless."""
    if not (math.isfinite(k1) and k1 > 0):
        raise ConfigError(f"k1 must be a finite number > 0, got {k1!r}")
    if not (math.isfinite(b) and 0 <= b <= 1):
        raise ConfigError(f"b must lie in [0, 1], got {b!r}")
    if not math.isfinite(epsilon):
        raise ConfigError(f"epsilon must be finite, got {epsilon!r}")


class Pairs(NamedTuple):
    """Term-major postings: one entry per distinct (term, document) pair, documents ascending."""

    docs: npt.NDArray[np.int32]
    terms: npt.NDArray[np.int32]
    tf: npt.NDArray[np.int32]
    df: IntArray


def sorted_keys(tokens: npt.NDArray[np.int32], offsets: IntArray) -> IntArray:
    """One ``term * n_docs + doc`` key per token, sorted: grouped by term, documents ascending.

    Built in place, a block of documents at a time: fresh big arrays cost page faults.
    """
    n_docs = len(offsets) - 1
    keys = np.empty(len(tokens), dtype=np.int64)
    np.multiply(tokens, n_docs, out=keys, dtype=np.int64)
    lengths = np.diff(offsets)
    for lo in range(0, n_docs, KEY_DOC_CHUNK):
        hi = min(lo + KEY_DOC_CHUNK, n_docs)
        doc_ids = np.repeat(np.arange(lo, hi, dtype=np.int64), lengths[lo:hi])
        keys[offsets[lo] : offsets[hi]] += doc_ids
    keys.sort()
    return keys


def pairs_from_keys(keys: IntArray, n_docs: int, n_terms: int) -> Pairs:
    """Count sorted ``term * n_docs + doc`` keys (one per token) into postings and each term's df.

    Works through the keys in chunks, so the temporaries stay small next to the output.
    """
    total = len(keys)
    changes = (
        np.count_nonzero(keys[lo + 1 : lo + PAIR_CHUNK + 1] != keys[lo : min(lo + PAIR_CHUNK, total - 1)])
        for lo in range(0, total - 1, PAIR_CHUNK)
    )
    n_pairs = 1 + sum(int(count) for count in changes) if total else 0
    docs = np.empty(n_pairs, dtype=np.int32)
    terms = np.empty(n_pairs, dtype=np.int32)
    tf = np.empty(n_pairs, dtype=np.int32)
    df = np.zeros(n_terms, dtype=np.int64)
    written = 0
    for lo in range(0, total, PAIR_CHUNK):
        chunk = keys[lo : lo + PAIR_CHUNK]
        is_first = np.empty(len(chunk), dtype=bool)
        is_first[0] = lo == 0 or keys[lo] != keys[lo - 1]
        np.not_equal(chunk[1:], chunk[:-1], out=is_first[1:])
        starts = np.flatnonzero(is_first)
        carried = int(starts[0]) if len(starts) else len(chunk)
        if carried:  # the chunk opens inside the previous chunk's last pair
            tf[written - 1] += carried
        end = written + len(starts)
        first_keys = chunk[starts]
        docs[written:end] = first_keys % n_docs
        first_keys //= n_docs
        terms[written:end] = first_keys
        df += np.bincount(first_keys, minlength=n_terms)
        np.subtract(np.append(starts[1:], len(chunk)), starts, out=tf[written:end], casting="unsafe")
        written = end
    return Pairs(docs, terms, tf, df)


def term_idf(
    df: IntArray, n_docs: int, epsilon: float, first_seen: IntArray | None
) -> tuple[FloatArray, float]:
    """Per-term idf with rank_bm25's floor, and the raw average idf.

    ``first_seen`` orders the terms for the sum (None: id order), as rank_bm25 adds them in the
    order they enter its dict.
    """
    if len(df) == 0:
        return np.zeros(0), 0.0
    if n_docs <= len(df):  # a table over every possible df is the smaller job
        table = [raw_idf(f, n_docs) for f in range(n_docs + 1)]
        idf = np.array(table)[df]
    else:
        values, inverse = np.unique(df, return_inverse=True)
        table = [raw_idf(f, n_docs) for f in values.tolist()]
        idf = np.array(table)[inverse]
    # accumulate adds one value at a time (each output is the previous plus the next), exactly
    # like rank_bm25's loop; np.sum would add pairwise and round differently.
    ordered = idf if first_seen is None else idf[first_seen]
    average = float(np.add.accumulate(ordered)[-1]) / len(idf)
    idf[idf < 0] = epsilon * average
    return idf, average
