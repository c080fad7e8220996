"""Okapi BM25 with the exact scores of ``rank_bm25.BM25Okapi``, from a compact inverted index.

Why not use ``rank_bm25`` directly: it keeps a Python dict per document and scans every document
for every query term, so a query over a million documents takes about a second. This index gives
the same float64 scores, bit for bit, because every step does the same IEEE operations in the same
order:

* a term's ``idf`` is ``log(N - df + 0.5) - log(df + 0.5)`` (``math.log``). Negative values are
  replaced by ``epsilon * average_idf``, where ``average_idf`` sums the raw idfs one at a time in
  the order the terms first occur in the corpus (the insertion order of rank_bm25's dict).
  Term ids are given out in that same order, so the sum is the same.
* a posting's weight is ``idf * ((tf * (k1 + 1)) / (tf + k1 * ((1 - b) + (b * dl) / avgdl)))``,
  worked out once when the index is built.
* a document's score adds the weights of the query tokens one at a time, in query order. Repeated
  query tokens count every time they occur, and out-of-vocabulary tokens add nothing. rank_bm25
  also adds ``+0.0`` for every term a document lacks, which changes nothing, so skipping those
  additions gives the same sum.

Where rank_bm25 would fail or return NaN, this index returns defined scores instead. An empty
corpus gives an empty score vector, and a corpus whose documents are all empty scores 0.0
everywhere (rank_bm25 raises ``ZeroDivisionError`` on both). With ``b == 1``, an empty document
scores 0.0 (rank_bm25 gives NaN for 0/0).

Performance: the build sorts packed ``(term, document)`` keys with numpy and needs no Python dict
per document. Every term has postings (document ids and weights). A term found in more than half
of the documents also gets a dense row of weights, so adding it is one contiguous vector add.
``top_k`` works like MaxScore. First it scores a few documents that hold the rarest query terms;
their k-th best score is a lower bound on the answer's. Terms whose largest weights add up to less
than that bound cannot lift a document into the top k alone. So only documents holding one of
the other terms are scored, and the common terms are looked up for those documents alone.
Whenever the bound cannot prove the answer, every posting is scored instead.

Thread safety: an index never changes after it is built, and each thread gets its own scratch
buffers (9 bytes per document), so any number of threads may query one index.

One job, one module (over 500 lines): the index, its exact scoring and the pruned top-k search
share the posting layout and the floating-point order that makes them equal to ``rank_bm25``.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from gather_envs.errors import ConfigError
from gather_envs.retrieval.tokenize import tokenize

DEFAULT_K1 = 1.5
"""Term-frequency saturation, as in rank_bm25."""
DEFAULT_B = 0.75
"""Document-length normalization, as in rank_bm25."""
DEFAULT_EPSILON = 0.25
"""A negative idf is replaced by ``epsilon * average_idf``, as in rank_bm25."""

SMALL_INDEX_DOCS = 512
"""Indexes up to this size answer ``top_k`` by scoring every document and sorting."""
DENSE_DF_FRACTION = 1 / 2
"""Terms in more than this share of the documents get a dense weight row (< 4/3 their postings)."""
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
WEIGHT_CHUNK = 1 << 20
"""Postings whose weights are computed together during the build (this bounds temporary memory)."""
KEY_DOC_CHUNK = 1 << 14
"""Documents whose keys are offset together during the build (this bounds temporary memory)."""
PAIR_CHUNK = 1 << 20
"""Sorted keys counted together into postings during the build (this bounds temporary memory)."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Hit = tuple[int, float]


class BM25Index:
    """An immutable BM25 index over tokenized documents, scoring exactly like rank_bm25's BM25Okapi.

    >>> texts = ["red fox", "blue fox", "red red hen", "green sky", "grey cloud", "blue sea"]
    >>> index = BM25Index.from_texts(texts)
    >>> [doc for doc, _ in index.search("red fox", k=3)]
    [0, 2, 1]
    >>> index.subset([3, 1, 4]).search("fox", k=1)[0][0]
    1
    """

    _k1: float
    _b: float
    _epsilon: float
    _root_terms: list[str]
    _root_vocab: dict[str, int]
    _root_ids: IntArray | None
    _tokens: npt.NDArray[np.int32]
    _doc_offsets: IntArray
    _avgdl: float
    _average_idf: float
    _idf: FloatArray
    _term_offsets: IntArray
    _post_docs: npt.NDArray[np.int32]
    _post_weights: FloatArray
    _max_weight: FloatArray
    _dense_slot: dict[int, int]
    _dense_rows: FloatArray
    _local: threading.local

    def __init__(
        self,
        corpus_tokens: Sequence[Sequence[str]],
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        epsilon: float = DEFAULT_EPSILON,
    ) -> None:
        if isinstance(corpus_tokens, str):
            raise ConfigError("corpus_tokens is a str; pass one token list per document")
        bad = next((i for i, doc in enumerate(corpus_tokens) if isinstance(doc, str)), None)
        if bad is not None:
            raise ConfigError(
                f"corpus_tokens[{bad}] is a str, not a token list; tokenize it first "
                "(or build the index with BM25Index.from_texts)"
            )
        n_docs = len(corpus_tokens)
        # Ids are handed out in order of first occurrence, which is rank_bm25's idf summation order.
        vocab: defaultdict[str, int] = defaultdict(itertools.count().__next__)
        offsets = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, corpus_tokens), np.int64, n_docs), out=offsets[1:])
        tokens = np.fromiter(
            map(vocab.__getitem__, itertools.chain.from_iterable(corpus_tokens)),
            np.int32,
            int(offsets[-1]),
        )
        keys = _sorted_keys(tokens, offsets)
        pairs = _pairs_from_keys(keys, n_docs, len(vocab))
        del keys
        self._setup(list(vocab), dict(vocab), None, tokens, offsets, pairs, None, k1, b, epsilon)

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        epsilon: float = DEFAULT_EPSILON,
    ) -> BM25Index:
        """Index raw texts, tokenized with :func:`~gather_envs.retrieval.tokenize.tokenize`."""
        if isinstance(texts, str):
            raise ConfigError("texts is a str; pass a sequence of document texts")
        return cls([tokenize(text) for text in texts], k1=k1, b=b, epsilon=epsilon)

    def _setup(
        self,
        root_terms: list[str],
        root_vocab: dict[str, int],
        root_ids: IntArray | None,
        tokens: npt.NDArray[np.int32],
        offsets: IntArray,
        pairs: _Pairs,
        first_seen: IntArray | None,
        k1: float,
        b: float,
        epsilon: float,
    ) -> None:
        """Compute idf and posting weights, and store everything; shared by every constructor.

        ``tokens`` hold local term ids. Local id ``i`` is root term ``root_ids[i]``, or root term
        ``i`` itself when ``root_ids`` is None. ``pairs`` are the term-major postings of
        ``tokens``. ``first_seen`` lists the local ids in the order they first occur; None means
        the ids are already numbered in that order.
        """
        _check_parameters(k1, b, epsilon)
        self._k1, self._b, self._epsilon = float(k1), float(b), float(epsilon)
        self._root_terms = root_terms
        self._root_vocab = root_vocab
        self._root_ids = root_ids
        self._tokens = tokens
        self._doc_offsets = offsets
        n_docs = len(offsets) - 1
        n_terms = len(pairs.df)
        self._avgdl = int(offsets[-1]) / n_docs if n_docs else 0.0
        self._idf, self._average_idf = _idf(pairs.df, n_docs, self._epsilon, first_seen)
        self._term_offsets = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(pairs.df, out=self._term_offsets[1:])
        self._post_docs = pairs.docs
        self._post_weights = _weights(pairs, self._idf, np.diff(offsets), self._avgdl, self._k1, self._b)
        if n_terms:
            self._max_weight = np.maximum.reduceat(self._post_weights, self._term_offsets[:-1])
        else:
            self._max_weight = np.zeros(0)
        common = pairs.df > n_docs * DENSE_DF_FRACTION if n_docs > SMALL_INDEX_DOCS else []
        self._dense_slot = {term: slot for slot, term in enumerate(np.flatnonzero(common).tolist())}
        self._build_dense_rows()
        self._local = threading.local()

    def _build_dense_rows(self) -> None:
        """Spread the postings of the terms in ``_dense_slot`` into full-length weight rows."""
        self._dense_rows = np.zeros((len(self._dense_slot), len(self)))
        for term, slot in self._dense_slot.items():
            docs, weights = self._postings(term)
            self._dense_rows[slot, docs] = weights

    def __len__(self) -> int:
        """Number of documents."""
        return len(self._doc_offsets) - 1

    def __repr__(self) -> str:
        return (
            f"BM25Index(documents={len(self)}, terms={self.num_terms}, "
            f"k1={self._k1}, b={self._b}, epsilon={self._epsilon})"
        )

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
    def num_terms(self) -> int:
        """Size of the vocabulary."""
        return len(self._idf)

    @property
    def average_idf(self) -> float:
        """Mean raw idf over the vocabulary (0.0 when it is empty), as rank_bm25 computes it."""
        return self._average_idf

    @property
    def avgdl(self) -> float:
        """Mean document length in tokens."""
        return self._avgdl

    @property
    def nbytes(self) -> int:
        """Bytes held in the index's arrays (the vocabulary's Python objects are not counted)."""
        arrays = (
            self._tokens,
            self._doc_offsets,
            self._idf,
            self._term_offsets,
            self._post_docs,
            self._post_weights,
            self._max_weight,
            self._dense_rows,
        )
        return sum(array.nbytes for array in arrays)

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

    def subset(self, doc_indices: Sequence[int]) -> BM25Index:
        """An index over just these documents, renumbered ``0..m-1`` in the order given.

        Its scores equal rank_bm25 built on that sub-corpus. It is built from this index's token
        ids and shares its vocabulary, so ten documents take about 0.1 ms (rank_bm25: about 0.3).
        Duplicate indices are allowed and count as separate documents.
        """
        indices = np.asarray(doc_indices)
        if indices.size == 0:
            indices = np.zeros(0, dtype=np.int64)
        if indices.ndim != 1 or indices.dtype.kind not in "iu":
            raise ConfigError("doc_indices must be a flat sequence of integer document indices")
        indices = indices.astype(np.int64, copy=False)
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= len(self)):
            raise ConfigError(f"doc_indices must lie in [0, {len(self)}); got {indices.tolist()!r}")
        starts = self._doc_offsets[indices]
        lengths = self._doc_offsets[indices + 1] - starts
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        positions = np.arange(int(offsets[-1])) + np.repeat(starts - offsets[:-1], lengths)
        root_tokens = self._tokens[positions]
        if self._root_ids is not None:
            root_tokens = self._root_ids[root_tokens]
        # Local ids number the sub-corpus's root ids in ascending order, which makes query lookup
        # a binary search; the idf sum follows first occurrence through ``first_seen``.
        order = np.argsort(root_tokens, kind="stable")
        in_order = root_tokens[order]
        is_new = np.empty(len(order), dtype=bool)
        is_new[:1] = True
        np.not_equal(in_order[1:], in_order[:-1], out=is_new[1:])
        local_in_order = np.cumsum(is_new) - 1
        local_tokens = np.empty(len(order), dtype=np.int32)
        local_tokens[order] = local_in_order
        # The stable sort keeps each term's tokens in document order: these keys are sorted.
        keys = local_in_order * len(indices)
        keys += np.repeat(np.arange(len(indices), dtype=np.int64), lengths)[order]
        root_ids = in_order[is_new].astype(np.int64)
        index = BM25Index.__new__(BM25Index)
        index._setup(
            self._root_terms,
            self._root_vocab,
            root_ids,
            local_tokens,
            offsets,
            _pairs_from_keys(keys, len(indices), len(root_ids)),
            np.argsort(order[is_new]),
            self._k1,
            self._b,
            self._epsilon,
        )
        return index

    def __getstate__(self) -> dict[str, Any]:
        """Pickle arrays and this index's own term list; shared dicts and buffers are rebuilt."""
        state = self.__dict__.copy()
        del state["_local"], state["_root_vocab"], state["_root_ids"], state["_dense_rows"]
        if self._root_ids is not None:
            state["_root_terms"] = [self._root_terms[term] for term in self._root_ids.tolist()]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`__getstate__`; the result owns its vocabulary."""
        # Unpickled arrays carry non-canonical dtype instances, which push np.add.at onto a
        # generic path about 25 times slower; view them with the canonical dtypes.
        for name, value in state.items():
            if isinstance(value, np.ndarray):
                state[name] = value.view(np.dtype(value.dtype.char))
        self.__dict__.update(state)
        self._root_ids = None
        self._root_vocab = dict(zip(self._root_terms, range(len(self._root_terms))))
        self._build_dense_rows()
        self._local = threading.local()

    def _term_ids(self, query_tokens: Sequence[str]) -> list[int]:
        """Local ids of the in-vocabulary query tokens, in query order, repeats kept."""
        if isinstance(query_tokens, str):
            raise ConfigError("query_tokens is a str; pass a token list, or call search(query, k)")
        lookup = self._root_vocab.get
        terms = [term for term in map(lookup, query_tokens) if term is not None]
        if self._root_ids is None:
            return terms
        if not (terms and len(self._root_ids)):
            return []
        where = np.searchsorted(self._root_ids, terms)
        np.minimum(where, len(self._root_ids) - 1, out=where)
        return where[self._root_ids[where] == terms].tolist()

    def _postings(self, term: int) -> tuple[npt.NDArray[np.int32], FloatArray]:
        """Document ids (ascending) and weights of one term."""
        lo, hi = self._term_offsets[term], self._term_offsets[term + 1]
        return self._post_docs[lo:hi], self._post_weights[lo:hi]

    def _df(self, term: int) -> int:
        """Number of documents that contain the term."""
        return int(self._term_offsets[term + 1] - self._term_offsets[term])

    def _add_term(self, scores: FloatArray, term: int) -> None:
        """Add one term's weights into a full score vector (+0.0 where it is absent: no change)."""
        slot = self._dense_slot.get(term)
        if slot is None:
            docs, weights = self._postings(term)
            np.add.at(scores, docs, weights)
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
            term_docs, weights = self._postings(term)
            where = np.searchsorted(term_docs, docs)
            np.minimum(where, len(term_docs) - 1, out=where)
            found = term_docs.take(where) == docs
            scores[found] += weights.take(where[found])
        return scores

    def _union(self, terms: list[int], buffers: _Buffers) -> npt.NDArray[np.int32]:
        """Ids of the documents that contain at least one of ``terms``, each once, unsorted."""
        if len(terms) == 1:
            return self._postings(terms[0])[0]
        marks = buffers.marks
        parts: list[npt.NDArray[np.int32]] = []
        for term in terms:
            docs = self._postings(term)[0]
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
                docs, weights = self._postings(term)
                np.add.at(scores, docs, weights)
            elif slot is not None:
                np.add.at(scores, candidates, self._dense_rows[slot].take(candidates))
            elif COST_SEARCH * len(candidates) < COST_MARK_FILTER * df[term]:
                docs, weights = self._postings(term)
                where = np.searchsorted(docs, candidates)
                np.minimum(where, len(docs) - 1, out=where)
                found = docs.take(where) == candidates
                np.add.at(scores, candidates[found], weights.take(where[found]))
            else:
                if not marked:
                    marks.put(candidates, True)
                    marked = True
                docs, weights = self._postings(term)
                hit = marks.take(docs)
                np.add.at(scores, docs[hit], weights[hit])
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
        parts: list[npt.NDArray[np.int32]] = []
        count = 0
        for term in sorted(distinct, key=lambda term: (df[term], term)):
            docs = self._postings(term)[0]
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
        docs_parts: list[npt.NDArray[np.int32]] = []
        score_parts: list[FloatArray] = []
        for term in df:
            docs = self._postings(term)[0]
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
    def of(index: BM25Index) -> _Buffers:
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


def _check_parameters(k1: float, b: float, epsilon: float) -> None:
    """Reject parameters that would make scores undefined (NaN) or meaningless."""
    if not (math.isfinite(k1) and k1 > 0):
        raise ConfigError(f"k1 must be a finite number > 0, got {k1!r}")
    if not (math.isfinite(b) and 0 <= b <= 1):
        raise ConfigError(f"b must lie in [0, 1], got {b!r}")
    if not math.isfinite(epsilon):
        raise ConfigError(f"epsilon must be finite, got {epsilon!r}")


class _Pairs(NamedTuple):
    """Term-major postings: one entry per distinct (term, document) pair, documents ascending."""

    docs: npt.NDArray[np.int32]
    terms: npt.NDArray[np.int32]
    tf: npt.NDArray[np.int32]
    df: IntArray


def _sorted_keys(tokens: npt.NDArray[np.int32], offsets: IntArray) -> IntArray:
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


def _pairs_from_keys(keys: IntArray, n_docs: int, n_terms: int) -> _Pairs:
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
    return _Pairs(docs, terms, tf, df)


def _idf(df: IntArray, n_docs: int, epsilon: float, first_seen: IntArray | None) -> tuple[FloatArray, float]:
    """Per-term idf with rank_bm25's floor, and the raw average idf.

    ``first_seen`` orders the terms for the sum (None: id order), as rank_bm25 adds them in the
    order they enter its dict.
    """
    if len(df) == 0:
        return np.zeros(0), 0.0
    # math.log, not np.log: numpy's vectorized log may differ from libm in the last bit.
    if n_docs <= len(df):  # a table over every possible df is the smaller job
        table = [math.log(n_docs - f + 0.5) - math.log(f + 0.5) for f in range(n_docs + 1)]
        idf = np.array(table)[df]
    else:
        values, inverse = np.unique(df, return_inverse=True)
        table = [math.log(n_docs - f + 0.5) - math.log(f + 0.5) for f in values.tolist()]
        idf = np.array(table)[inverse]
    # accumulate adds one value at a time (each output is the previous plus the next), exactly
    # like rank_bm25's loop; np.sum would add pairwise and round differently.
    ordered = idf if first_seen is None else idf[first_seen]
    average = float(np.add.accumulate(ordered)[-1]) / len(idf)
    idf[idf < 0] = epsilon * average
    return idf, average


def _weights(
    pairs: _Pairs, idf: FloatArray, doc_len: IntArray, avgdl: float, k1: float, b: float
) -> FloatArray:
    """Each posting's score contribution, with rank_bm25's operations in rank_bm25's order."""
    weights = np.empty(len(pairs.docs))
    if len(weights) == 0:
        return weights
    norm = k1 * ((1 - b) + (b * doc_len) / avgdl)
    for lo in range(0, len(weights), WEIGHT_CHUNK):
        hi = lo + WEIGHT_CHUNK
        freq = pairs.tf[lo:hi].astype(np.float64)
        denominator = norm[pairs.docs[lo:hi]]
        denominator += freq
        freq *= k1 + 1
        freq /= denominator
        freq *= idf[pairs.terms[lo:hi]]
        weights[lo:hi] = freq
    return weights


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
