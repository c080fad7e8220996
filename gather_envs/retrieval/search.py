"""The exact top-k engine shared by every BM25 index: scoring, pruned (MaxScore-like) and exhaustive top k.

An index (in memory, :class:`~gather_envs.retrieval.bm25.BM25Index`, or memory-mapped,
:class:`~gather_envs.retrieval.disk_index.DiskIndex`) supplies its postings through a few hooks
(document ids of a term, the weights of some of its postings, df, the largest weight); this class
turns them into ``get_scores``, ``top_k`` and ``search``. Both indexes therefore add the same
float64 weights in the same order and return the same hits, equal to ``rank_bm25.BM25Okapi``.

``top_k`` works like MaxScore. First it scores a few documents that hold the rarest query terms;
their k-th best score is a lower bound on the answer's. Terms whose largest weights add up to less
than that bound cannot lift a document into the top k alone. So only documents holding one of
the other terms are scored, and the common terms are looked up for those documents alone.
Whenever the bound cannot prove the answer, every posting is scored instead.

Thread safety: an index never changes after it is built, and each thread gets its own scratch
buffers (9 bytes per document), so any number of threads may query one index.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from gather_envs.errors import ConfigError
from gather_envs.retrieval.tokenize import tokenize

SMALL_INDEX_DOCS = 512
"""Indexes up to this size answer ``top_k`` by scoring every document and sorting."""
SEED_DOCS = 128
"""Documents scored up front, from the rarest query terms, for a lower bound on the k-th score."""
# A rough cost model (nanoseconds per element on a 2-core VM) that picks between pruned and
# exhaustive scoring. It only affects speed: both strategies return the exact answer.
COST_SCATTER = 1.6
"""np.add.at of one posting into the score buffer (postings are sorted, so access is sequential)."""
COST_DENSE_ADD = 0.25
"""Adding one document's entry of a dense row (contiguous, vectorized)."""
COST_SCAN = 0.6
"""Reading one document's score when the top k is taken from the whole buffer."""
COST_UNION = 3.0
"""Checking and marking one posting while collecting the candidate documents."""
COST_CANDIDATE = 4.0
"""Reading and resetting one candidate's score and mark."""
COST_DENSE_LOOKUP = 2.5
"""Looking one candidate up in a dense row and adding the weight."""
COST_MARK_FILTER = 1.0
"""Testing one posting of a lookup term against the candidate marks."""
COST_SEARCH = 100.0
"""Binary-searching one candidate in a lookup term's postings."""
COST_PRUNING_OVERHEAD = 60_000.0
"""Fixed cost of trying to prune (scoring the seed documents, Python bookkeeping)."""
SAMPLED_SELECT_MIN = 4096
"""Selecting the top k of this many scores first filters them by a strided sample's top k."""
SELECT_SAMPLE_SIZE = 1024
"""How many scores that strided sample holds."""

FloatArray = npt.NDArray[np.float64]
Hit = tuple[int, float]
Select = npt.NDArray[Any] | None
"""Which postings of a term to weigh: positions, a boolean mask, or None for all of them."""


class PostingsSearch:
    """Exact BM25 search over a term-major inverted index; subclasses supply the postings.

    A subclass sets the parameters and statistics below, ``_max_weight`` (each term's largest
    weight), ``_dense_slot`` and ``_dense_rows`` (full-length weight rows of the commonest
    terms, possibly none) and ``_local`` (a ``threading.local``), and implements the hooks.
    """

    _k1: float
    _b: float
    _epsilon: float
    _avgdl: float
    _average_idf: float
    _max_weight: FloatArray
    _dense_slot: dict[int, int]
    _dense_rows: FloatArray
    _local: threading.local

    @property
    def k1(self) -> float:
        """Term-frequency saturation parameter."""
        return self._k1

    @property
    def b(self) -> float:
        """Document-length normalization parameter."""
        return self._b

    @property
    def epsilon(self) -> float:
        """Floor factor for negative idf values."""
        return self._epsilon

    @property
    def average_idf(self) -> float:
        """Mean raw idf over the vocabulary (0.0 when it is empty), as rank_bm25 computes it."""
        return self._average_idf

    @property
    def avgdl(self) -> float:
        """Mean document length in tokens."""
        return self._avgdl

    def __len__(self) -> int:
        """Number of documents."""
        raise NotImplementedError

    def _term_ids(self, query_tokens: Sequence[str]) -> list[int]:
        """Term ids of the in-vocabulary query tokens, in query order, repeats kept."""
        raise NotImplementedError

    def _df(self, term: int) -> int:
        """Number of documents that contain the term."""
        raise NotImplementedError

    def _docs(self, term: int) -> npt.NDArray[Any]:
        """Document ids (ascending) of one term's postings."""
        raise NotImplementedError

    def _weights(self, term: int, select: Select = None) -> FloatArray:
        """Weights of one term's postings (``select``: just those), bit-equal to rank_bm25's terms."""
        raise NotImplementedError

    def get_scores(self, query_tokens: Sequence[str]) -> FloatArray:
        """BM25 score of every document for ``query_tokens``, equal to rank_bm25's ``get_scores``."""
        return self._scores(self._term_ids(query_tokens))

    def top_k(self, query_tokens: Sequence[str], k: int) -> list[Hit]:
        """The best ``k`` ``(doc index, score)`` pairs: highest score first, ties to the lower index.

        This is exactly the first ``k`` entries of a stable sort of :meth:`get_scores` by descending
        score. Documents with no query term score 0.0 and can outrank negative scores, which
        rank_bm25 produces in tiny corpora.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise ConfigError(f"k must be a non-negative integer, got {k!r}")
        terms = self._term_ids(query_tokens)
        k = min(int(k), len(self))
        if k == 0:
            return []
        if not terms:
            return [(doc, 0.0) for doc in range(k)]
        if len(self) <= SMALL_INDEX_DOCS:
            return _stable_top(self._scores(terms), k)
        buffers = _Buffers.of(self)
        try:
            hits = self._top_k_pruned(terms, k, buffers)
            if hits is None:
                hits = self._top_k_exhaustive(terms, k, buffers)
        except BaseException:
            buffers.clear()
            raise
        return hits

    def search(self, query: str, k: int) -> list[Hit]:
        """:meth:`top_k` of the tokenized ``query``."""
        return self.top_k(tokenize(query), k)

    def _add_term(self, scores: FloatArray, term: int) -> None:
        """Add one term's weights into a full score vector (+0.0 where it is absent: no change)."""
        slot = self._dense_slot.get(term)
        if slot is None:
            np.add.at(scores, self._docs(term), self._weights(term))
        else:
            np.add(scores, self._dense_rows[slot], out=scores)

    def _scores(self, terms: list[int]) -> FloatArray:
        """Full score vector for term ids, added in query order."""
        scores = np.zeros(len(self))
        for term in terms:
            self._add_term(scores, term)
        return scores

    def _score_docs(self, docs: npt.NDArray[Any], terms: list[int]) -> FloatArray:
        """Exact scores of a few documents (ids ascending), looking each term's weight up."""
        scores = np.zeros(len(docs))
        for term in terms:
            slot = self._dense_slot.get(term)
            if slot is not None:
                scores += self._dense_rows[slot].take(docs)
                continue
            term_docs = self._docs(term)
            where = np.searchsorted(term_docs, docs)
            np.minimum(where, len(term_docs) - 1, out=where)
            found = term_docs.take(where) == docs
            scores[found] += self._weights(term, where[found])
        return scores

    def _union(self, terms: list[int], buffers: _Buffers) -> npt.NDArray[Any]:
        """Ids of the documents that contain at least one of ``terms``, each once, unsorted."""
        if len(terms) == 1:
            return self._docs(terms[0])
        marks = buffers.marks
        parts: list[npt.NDArray[Any]] = []
        for term in terms:
            docs = self._docs(term)
            fresh = docs[~marks.take(docs)]
            marks.put(fresh, True)
            parts.append(fresh)
        union = np.concatenate(parts)
        marks.put(union, False)
        return union

    def _top_k_pruned(self, terms: list[int], k: int, buffers: _Buffers) -> list[Hit] | None:
        """Top k from the documents that hold an influential query term, or None if unproven.

        1. Score up to SEED_DOCS documents holding the rarest terms; their k-th best score,
           ``floor``, is at most the true k-th best.
        2. "Lookup" terms are the commonest ones whose largest weights add up to less than
           ``floor``. A document with no other term scores at most ``bound``,
           that sum added in query order. Rounding is monotonic, so this holds for float sums.
        3. Score the candidates (documents holding another term) exactly, looking the lookup
           terms up. If at least k of them beat ``bound``, no other document can reach them.
        """
        distinct = list(dict.fromkeys(terms))
        df = {term: self._df(term) for term in distinct}
        if len(distinct) < 2:
            return None
        exhaustive_cost = self._exhaustive_cost(terms, df)
        if exhaustive_cost <= COST_PRUNING_OVERHEAD:
            return None
        floor = self._seed_floor(distinct, df, terms, k)
        if floor is None:
            return None

        uses = {term: terms.count(term) for term in distinct}
        top = {term: max(float(self._max_weight[term]), 0.0) for term in distinct}
        lookup: set[int] = set()
        running = 0.0
        for term in sorted(distinct, key=lambda term: (-df[term], term)):  # commonest first
            if running + top[term] * uses[term] < floor:
                running += top[term] * uses[term]
                lookup.add(term)
        essential = [term for term in distinct if term not in lookup]
        if not (lookup and essential):
            return None
        n_candidates = sum(df[term] for term in essential)  # at most; the union may be smaller
        if COST_PRUNING_OVERHEAD + self._pruned_cost(terms, df, lookup, n_candidates) >= exhaustive_cost:
            return None
        bound = 0.0
        for term in terms:
            if term in lookup:
                bound += top[term]

        candidates = self._union(essential, buffers)
        scores, marks = buffers.scores, buffers.marks
        marked = False
        for term in terms:
            slot = self._dense_slot.get(term)
            if term not in lookup:
                np.add.at(scores, self._docs(term), self._weights(term))
            elif slot is not None:
                np.add.at(scores, candidates, self._dense_rows[slot].take(candidates))
            elif COST_SEARCH * len(candidates) < COST_MARK_FILTER * df[term]:
                docs = self._docs(term)
                where = np.searchsorted(docs, candidates)
                np.minimum(where, len(docs) - 1, out=where)
                found = docs.take(where) == candidates
                np.add.at(scores, candidates[found], self._weights(term, where[found]))
            else:
                if not marked:
                    marks.put(candidates, True)
                    marked = True
                docs = self._docs(term)
                hit = marks.take(docs)
                np.add.at(scores, docs[hit], self._weights(term, hit))
        candidate_scores = scores.take(candidates)
        scores.put(candidates, 0.0)
        if marked:
            marks.put(candidates, False)
        above = candidate_scores > bound
        if np.count_nonzero(above) < k:
            return None
        return _best(candidates[above], candidate_scores[above], k)

    def _exhaustive_cost(self, terms: list[int], df: dict[int, int]) -> float:
        """Rough cost of :meth:`_top_k_exhaustive` (see the COST_ constants)."""
        n_docs = len(self)
        cost = 0.0
        for term in terms:
            dense = term in self._dense_slot
            cost += COST_DENSE_ADD * n_docs if dense else COST_SCATTER * df[term]
        if self._scan_whole(df):
            return cost + COST_SCAN * n_docs
        return cost + COST_UNION * sum(df.values())

    def _scan_whole(self, df: dict[int, int]) -> bool:
        """Whether the exhaustive top k should read the whole score buffer, not a union."""
        covered = sum(df.values())
        return COST_SCAN * len(self) < COST_UNION * covered or any(term in self._dense_slot for term in df)

    def _pruned_cost(
        self, terms: list[int], df: dict[int, int], lookup: set[int], n_candidates: int
    ) -> float:
        """Rough cost of scoring ``n_candidates`` documents with these lookup terms."""
        cost = (COST_UNION + COST_CANDIDATE) * n_candidates
        for term in terms:
            if term not in lookup:
                cost += COST_SCATTER * df[term]
            elif term in self._dense_slot:
                cost += COST_DENSE_LOOKUP * n_candidates
            else:
                cost += min(COST_MARK_FILTER * df[term], COST_SEARCH * n_candidates)
        return cost

    def _seed_floor(self, distinct: list[int], df: dict[int, int], terms: list[int], k: int) -> float | None:
        """A positive lower bound on the k-th best score, from documents holding rare terms."""
        wanted = max(SEED_DOCS, 2 * k)
        parts: list[npt.NDArray[Any]] = []
        count = 0
        for term in sorted(distinct, key=lambda term: (df[term], term)):
            docs = self._docs(term)
            room = wanted - count
            if len(docs) > room:
                docs = docs[:: -(-len(docs) // room)]  # an even spread of at most ``room``
            parts.append(docs)
            count += len(docs)
            if count >= wanted:
                break
        seeds = parts[0] if len(parts) == 1 else np.unique(np.concatenate(parts))
        if len(seeds) < k:
            return None
        seed_scores = self._score_docs(seeds, terms)
        floor = _kth_largest(seed_scores, k)
        return floor if floor > 0 else None

    def _top_k_exhaustive(self, terms: list[int], k: int, buffers: _Buffers) -> list[Hit]:
        """Top k from every posting of every query term; always exact."""
        scores = buffers.scores
        df = {term: self._df(term) for term in terms}
        for term in terms:
            self._add_term(scores, term)
        if self._scan_whole(df):
            hits = _top_of_dense(scores, k)
            if hits is None:
                touched = np.flatnonzero(scores)
                hits = _rank_with_zeros(touched, scores.take(touched), k, len(self))
            scores.fill(0.0)
            return hits
        # Collect each nonzero score once, zeroing it as it is read: that resets the buffer too.
        docs_parts: list[npt.NDArray[Any]] = []
        score_parts: list[FloatArray] = []
        for term in df:
            docs = self._docs(term)
            found = scores.take(docs)
            nonzero = found != 0
            docs_parts.append(docs[nonzero])
            score_parts.append(found[nonzero])
            scores.put(docs_parts[-1], 0.0)
        touched = np.concatenate(docs_parts)
        return _rank_with_zeros(touched, np.concatenate(score_parts), k, len(self))


class _Buffers:
    """One thread's scratch arrays for one index: a score per document, and a mark per document."""

    def __init__(self, n_docs: int) -> None:
        self.scores: FloatArray = np.zeros(n_docs)
        self.marks: npt.NDArray[np.bool_] = np.zeros(n_docs, dtype=bool)

    @staticmethod
    def of(index: PostingsSearch) -> _Buffers:
        """The calling thread's buffers for ``index``, created on first use."""
        local = index._local
        buffers = getattr(local, "buffers", None)
        if buffers is None:
            buffers = _Buffers(len(index))
            local.buffers = buffers
        return buffers

    def clear(self) -> None:
        """Zero everything, so an interrupted query cannot leak into the next."""
        self.scores.fill(0.0)
        self.marks.fill(False)


def _kth_largest(values: FloatArray, k: int) -> float:
    """The k-th largest value (1-based); ``len(values) >= k``.

    Partitions the negated values at ``k - 1``: ``np.partition(values, n - k)`` is very slow
    (quadratic) when most values are equal, e.g. zeros with a few positives.
    """
    return -float(np.partition(-values, k - 1)[k - 1])


def _stable_top(scores: FloatArray, k: int) -> list[Hit]:
    """First k of a stable descending sort of a full score vector."""
    order = np.argsort(-scores, kind="stable")[:k]
    return list(zip(order.tolist(), scores[order].tolist()))


def _best(docs: npt.NDArray[Any], scores: FloatArray, k: int) -> list[Hit]:
    """The k best (doc, score) pairs by descending score, then ascending doc."""
    if len(scores) > SAMPLED_SELECT_MIN and k <= SELECT_SAMPLE_SIZE // 4:
        # A sample's k-th largest score is at most the k-th largest overall: a safe filter.
        sample = scores[:: len(scores) // SELECT_SAMPLE_SIZE]
        floor = _kth_largest(sample, k)
        keep = scores >= floor
        docs, scores = docs[keep], scores[keep]
    if len(scores) > k:
        kth = _kth_largest(scores, k)
        keep = scores >= kth  # every tie with the k-th score, so the index decides among them
        docs, scores = docs[keep], scores[keep]
    order = np.lexsort((docs, -scores))[:k]
    return list(zip(docs.take(order).tolist(), scores.take(order).tolist()))


def _top_of_dense(scores: FloatArray, k: int) -> list[Hit] | None:
    """Top k of a full score vector via a strided sample's k-th score; None if that is not > 0.

    A sample's k-th largest score is at most the true k-th largest, so every document of the top
    k scores at least that much; when it is positive, all of them are found by one comparison.
    """
    if k > SELECT_SAMPLE_SIZE // 4:
        return None
    sample = scores[:: max(1, len(scores) // SELECT_SAMPLE_SIZE)]
    sample = sample[sample > 0]
    if len(sample) < k:
        return None
    floor = _kth_largest(sample, k)
    docs = np.flatnonzero(scores >= floor)
    return _best(docs, scores.take(docs), k)


def _rank_with_zeros(docs: npt.NDArray[Any], scores: FloatArray, k: int, n_docs: int) -> list[Hit]:
    """Top k when ``docs``/``scores`` list the scored documents and every other one scores 0.0."""
    positive = scores > 0
    hits = _best(docs[positive], scores[positive], k)
    if len(hits) == k:
        return hits
    # Next come the zero scores in index order: documents outside the nonzero-scored set.
    nonzero = np.sort(docs[scores != 0])
    need = k - len(hits)
    limit = min(n_docs, need + len(nonzero))
    zeros = np.setdiff1d(np.arange(limit), nonzero, assume_unique=True)[:need]
    hits.extend((doc, 0.0) for doc in zeros.tolist())
    need -= len(zeros)
    if need:
        negative = scores < 0
        hits.extend(_best(docs[negative], scores[negative], need))
    return hits
