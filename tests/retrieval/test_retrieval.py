"""Retrieval: the tokenizer, BM25Index's exact equality with rank_bm25, subsets, pickling, cache."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import rank_bm25
from hypothesis import given, settings
from hypothesis import strategies as st

from gather_envs.errors import ConfigError
from gather_envs.retrieval import BM25Index, get_index, tokenize
from gather_envs.retrieval import cache as cache_module
from gather_envs.retrieval import search as search_module
from gather_envs.retrieval.cache import clear_cache, corpus_key

ALPHABET = ["a", "b", "c", "d", "e", "f"]
OUT_OF_VOCABULARY = "zz"
ZIPF_VOCABULARY = 400
ZIPF_DOC_LENGTH = 30

Corpus = list[list[str]]

corpora = st.lists(st.lists(st.sampled_from(ALPHABET), max_size=8), min_size=1, max_size=8).filter(
    lambda corpus: any(corpus)
)  # rank_bm25 divides by zero when every document is empty
queries = st.lists(st.sampled_from([*ALPHABET, OUT_OF_VOCABULARY]), max_size=6)


def stable_top(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The reference ranking: a stable sort by descending score (ties go to the lower index)."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(doc), float(scores[doc])) for doc in order]


def zipf_corpus(rng: np.random.Generator, n_docs: int) -> Corpus:
    """Documents of 0-29 tokens drawn from a Zipfian vocabulary (common words and rare ones)."""
    weights = 1.0 / np.arange(1, ZIPF_VOCABULARY + 1) ** 1.1
    ranks = rng.choice(ZIPF_VOCABULARY, size=(n_docs, ZIPF_DOC_LENGTH), p=weights / weights.sum())
    lengths = rng.integers(0, ZIPF_DOC_LENGTH, size=n_docs)
    return [[f"w{rank}" for rank in row[:length]] for row, length in zip(ranks, lengths)]


def zipf_queries(rng: np.random.Generator, corpus: Corpus, count: int) -> list[list[str]]:
    """Queries of 1-5 tokens: mostly taken from a document, some from anywhere in the vocabulary."""
    result = []
    for _ in range(count):
        doc = corpus[int(rng.integers(len(corpus)))]
        size = int(rng.integers(1, 6))
        if doc and rng.random() < 0.8:
            result.append([doc[i] for i in rng.integers(0, len(doc), size=size)])
        else:
            result.append([f"w{rank}" for rank in rng.integers(0, 2 * ZIPF_VOCABULARY, size=size)])
    return result


@pytest.fixture
def large_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Send even small indexes down the large-index code: dense rows, pruning, sampled selection."""
    monkeypatch.setattr(search_module, "SMALL_INDEX_DOCS", 0)
    monkeypatch.setattr(search_module, "COST_PRUNING_OVERHEAD", 0.0)
    monkeypatch.setattr(search_module, "SEED_DOCS", 4)
    monkeypatch.setattr(search_module, "SAMPLED_SELECT_MIN", 16)
    monkeypatch.setattr(search_module, "SELECT_SAMPLE_SIZE", 8)
    yield


# --- tokenize ---------------------------------------------------------------------------------


def test_tokenize_lowercases_and_splits_on_non_word_characters() -> None:
    assert tokenize("The Fox's DEN, (1999)!") == ["the", "fox", "s", "den", "1999"]


def test_tokenize_keeps_unicode_letters_digits_and_underscores() -> None:
    assert tokenize("Zürich 2nd snake_case Ελλάδα") == ["zürich", "2nd", "snake_case", "ελλάδα"]


def test_tokenize_of_blank_text_is_empty() -> None:
    assert tokenize("") == []
    assert tokenize(" \t-- ,\n") == []


# --- exact equality with rank_bm25 ------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(corpus=corpora, query=queries)
def test_scores_are_bit_identical_to_rank_bm25(corpus: Corpus, query: list[str]) -> None:
    expected = rank_bm25.BM25Okapi(corpus).get_scores(query)
    actual = BM25Index(corpus).get_scores(query)
    assert actual.dtype == np.float64
    assert np.array_equal(actual, expected)


@settings(max_examples=100, deadline=None)
@given(
    corpus=corpora,
    query=queries,
    k1=st.floats(0.05, 3.0),
    b=st.floats(0.0, 0.95),
    epsilon=st.floats(-1.0, 1.0),
)
def test_scores_are_bit_identical_for_any_parameters(
    corpus: Corpus, query: list[str], k1: float, b: float, epsilon: float
) -> None:
    expected = rank_bm25.BM25Okapi(corpus, k1=k1, b=b, epsilon=epsilon).get_scores(query)
    actual = BM25Index(corpus, k1=k1, b=b, epsilon=epsilon).get_scores(query)
    assert np.array_equal(actual, expected)


@pytest.mark.parametrize("n_docs", [1, 2, 3, 10, 300, 2000])
def test_scores_on_zipf_corpora_equal_rank_bm25(n_docs: int) -> None:
    rng = np.random.default_rng(n_docs)
    corpus = zipf_corpus(rng, n_docs)
    if not any(corpus):
        corpus[0] = ["w0"]
    reference, index = rank_bm25.BM25Okapi(corpus), BM25Index(corpus)
    found = [(reference.get_scores(q), index.get_scores(q)) for q in zipf_queries(rng, corpus, 40)]
    for expected, actual in found:
        np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=0)
    identical = sum(np.array_equal(actual, expected) for expected, actual in found)
    assert identical == len(found), f"only {identical}/{len(found)} score vectors bit-identical"


def test_repeated_query_tokens_count_every_time() -> None:
    corpus = [["a", "b"], ["a", "a", "c"], ["b", "c", "d"], ["d"]]
    index = BM25Index(corpus)
    once, twice = index.get_scores(["c"]), index.get_scores(["c", "c"])
    assert np.array_equal(twice, once + once)
    assert np.array_equal(twice, rank_bm25.BM25Okapi(corpus).get_scores(["c", "c"]))


def test_out_of_vocabulary_and_empty_queries_score_zero() -> None:
    index = BM25Index([["a", "b"], ["c"], []])
    assert np.array_equal(index.get_scores(["zz", "yy"]), np.zeros(3))
    assert np.array_equal(index.get_scores([]), np.zeros(3))
    assert index.top_k([], 2) == [(0, 0.0), (1, 0.0)]
    assert index.top_k([OUT_OF_VOCABULARY], 5) == [(0, 0.0), (1, 0.0), (2, 0.0)]


def test_tiny_corpus_ranks_zero_scores_above_negative_ones() -> None:
    corpus = [["a"], [], ["a"]]  # "a" is in 2 of 3 documents: its idf floors to a negative value
    scores = rank_bm25.BM25Okapi(corpus).get_scores(["a"])
    assert scores[0] < 0 and scores[1] == 0
    assert BM25Index(corpus).top_k(["a"], 3) == stable_top(scores, 3)
    assert BM25Index(corpus).top_k(["a"], 3)[0] == (1, 0.0)


def test_empty_corpus_and_all_empty_documents_are_defined() -> None:
    empty = BM25Index([])
    assert len(empty) == 0
    assert empty.get_scores(["a"]).shape == (0,)
    assert empty.top_k(["a"], 3) == []
    blank = BM25Index([[], []])  # rank_bm25 raises ZeroDivisionError here
    assert np.array_equal(blank.get_scores(["a"]), np.zeros(2))
    assert blank.top_k(["a"], 1) == [(0, 0.0)]


# --- top_k ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(corpus=corpora, query=queries, k=st.integers(0, 10))
def test_top_k_is_a_stable_sort_of_rank_bm25_scores(corpus: Corpus, query: list[str], k: int) -> None:
    scores = rank_bm25.BM25Okapi(corpus).get_scores(query)
    assert BM25Index(corpus).top_k(query, k) == stable_top(scores, k)


@pytest.mark.usefixtures("large_paths")
@settings(max_examples=150, deadline=None)
@given(corpus=corpora, query=queries, k=st.integers(0, 10))
def test_top_k_large_index_paths_agree_on_tiny_corpora(corpus: Corpus, query: list[str], k: int) -> None:
    scores = rank_bm25.BM25Okapi(corpus).get_scores(query)
    assert BM25Index(corpus).top_k(query, k) == stable_top(scores, k)


@pytest.mark.parametrize("pruning", ["default", "forced"])
@pytest.mark.parametrize("n_docs", [600, 3000])
def test_top_k_on_zipf_corpora_is_a_stable_sort(
    n_docs: int, pruning: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if pruning == "forced":
        monkeypatch.setattr(search_module, "COST_PRUNING_OVERHEAD", 0.0)
        monkeypatch.setattr(search_module, "SEED_DOCS", 8)
    rng = np.random.default_rng(n_docs)
    corpus = zipf_corpus(rng, n_docs)
    reference, index = rank_bm25.BM25Okapi(corpus), BM25Index(corpus)
    for query in zipf_queries(rng, corpus, 60):
        scores = reference.get_scores(query)
        for k in (1, 3, 10):
            assert index.top_k(query, k) == stable_top(scores, k), (query, k)


def test_top_k_fills_with_zero_scores_in_index_order() -> None:
    corpus = [["x"], ["y", "rare"], ["y"], ["x"], ["z"]]
    assert BM25Index(corpus).top_k(["rare"], 4)[1:] == [(0, 0.0), (2, 0.0), (3, 0.0)]


def test_search_tokenizes_the_query() -> None:
    index = BM25Index.from_texts(["Red fox.", "Blue whale", "red RED hen"])
    assert index.search("RED, red!", 2) == index.top_k(["red", "red"], 2)
    assert index.search("red", 1)[0][0] == 2


@pytest.mark.parametrize("bad_k", [-1, 1.5, "3", True])
def test_top_k_rejects_a_bad_k(bad_k: object) -> None:
    with pytest.raises(ConfigError, match="k must be"):
        BM25Index([["a"]]).top_k(["a"], bad_k)  # type: ignore[arg-type]


def test_a_query_string_instead_of_tokens_is_rejected() -> None:
    with pytest.raises(ConfigError, match="search"):
        BM25Index([["a"]]).top_k("a", 1)


@pytest.mark.parametrize(
    ("k1", "b", "epsilon"), [(0.0, 0.75, 0.25), (1.5, 1.5, 0.25), (1.5, 0.75, float("nan"))]
)
def test_parameters_that_make_scores_undefined_are_rejected(k1: float, b: float, epsilon: float) -> None:
    with pytest.raises(ConfigError):
        BM25Index([["a"]], k1=k1, b=b, epsilon=epsilon)


def test_untokenized_documents_are_rejected() -> None:
    with pytest.raises(ConfigError, match="corpus_tokens\\[1\\]"):
        BM25Index([["a"], "b c"])  # type: ignore[list-item]


# --- subset -----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(corpus=corpora, query=queries, data=st.data())
def test_subset_scores_equal_rank_bm25_on_the_sub_corpus(
    corpus: Corpus, query: list[str], data: st.DataObject
) -> None:
    picks = data.draw(st.lists(st.integers(0, len(corpus) - 1), min_size=1, max_size=10))
    sub_corpus = [corpus[i] for i in picks]
    if not any(sub_corpus):
        return
    subset = BM25Index(corpus).subset(picks)
    expected = rank_bm25.BM25Okapi(sub_corpus).get_scores(query)
    assert len(subset) == len(picks)
    assert np.array_equal(subset.get_scores(query), expected)
    assert subset.top_k(query, 3) == stable_top(expected, 3)


def test_subset_of_a_subset_equals_rank_bm25() -> None:
    rng = np.random.default_rng(7)
    corpus = zipf_corpus(rng, 200)
    inner = BM25Index(corpus).subset(list(range(50, 80))).subset([9, 3, 3, 20])
    sub_corpus = [corpus[i] for i in (59, 53, 53, 70)]
    for query in zipf_queries(rng, sub_corpus, 20):
        assert np.array_equal(inner.get_scores(query), rank_bm25.BM25Okapi(sub_corpus).get_scores(query))


def test_subset_of_nothing_is_an_empty_index() -> None:
    assert len(BM25Index([["a"]]).subset([])) == 0


def test_subset_of_empty_documents_scores_zero() -> None:
    subset = BM25Index([["a"], [], []]).subset([1, 2])
    assert np.array_equal(subset.get_scores(["a", "zz"]), np.zeros(2))
    assert subset.top_k(["a"], 1) == [(0, 0.0)]


@pytest.mark.parametrize("bad", [[3], [-1], [0.5], [[0]]])
def test_subset_rejects_bad_indices(bad: Sequence[int]) -> None:
    with pytest.raises(ConfigError, match="doc_indices"):
        BM25Index([["a"], ["b"], ["c"]]).subset(bad)


# --- pickling, threads, cache ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["root", "subset", "large"])
def test_pickle_round_trip_keeps_scores_and_rankings(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if kind == "large":
        monkeypatch.setattr(search_module, "SMALL_INDEX_DOCS", 0)
    rng = np.random.default_rng(3)
    corpus = zipf_corpus(rng, 300)
    index = BM25Index(corpus)
    if kind == "subset":
        index = index.subset(list(range(0, 300, 7)))
    index.top_k(["w1", "w2"], 3)  # leave a thread buffer behind: it must not be pickled
    restored = pickle.loads(pickle.dumps(index))
    for query in zipf_queries(rng, corpus, 20):
        assert np.array_equal(restored.get_scores(query), index.get_scores(query))
        assert restored.top_k(query, 5) == index.top_k(query, 5)
    arrays = [value for value in vars(restored).values() if isinstance(value, np.ndarray)]
    assert all(array.dtype is np.dtype(array.dtype.char) for array in arrays)


def test_concurrent_queries_from_threads_agree_with_serial_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(search_module, "SMALL_INDEX_DOCS", 0)
    rng = np.random.default_rng(11)
    corpus = zipf_corpus(rng, 500)
    index = BM25Index(corpus)
    work = zipf_queries(rng, corpus, 200)
    expected = [index.top_k(query, 3) for query in work]
    results: dict[int, list[list[tuple[int, float]]]] = {}

    def run(worker: int) -> None:
        results[worker] = [index.top_k(query, 3) for query in work]

    threads = [threading.Thread(target=run, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == expected for result in results.values())


def test_cache_builds_once_and_returns_the_same_object() -> None:
    clear_cache()
    calls = []

    def build() -> BM25Index:
        calls.append(1)
        return BM25Index([["a"], ["b"]])

    results: list[BM25Index] = []
    threads = [
        threading.Thread(target=lambda: results.append(get_index("corpus-1", build))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert all(result is results[0] for result in results)
    assert get_index("corpus-1", build) is results[0]
    assert get_index("corpus-2", build) is not results[0]
    clear_cache()


def test_cache_retries_after_a_failed_build() -> None:
    clear_cache()

    def fail() -> BM25Index:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        get_index("flaky", fail)
    assert len(get_index("flaky", lambda: BM25Index([["a"]]))) == 1
    clear_cache()


def test_cache_drops_the_least_recently_used_index(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_cache()
    monkeypatch.setattr(cache_module, "MAX_CACHED_INDEXES", 2)
    first = get_index("first", lambda: BM25Index([["a"]]))
    get_index("second", lambda: BM25Index([["b"]]))
    assert get_index("first", lambda: BM25Index([["c"]])) is first  # now the most recent
    get_index("third", lambda: BM25Index([["d"]]))  # drops "second"
    assert get_index("first", lambda: BM25Index([["e"]])) is first
    rebuilt = BM25Index([["f"]])
    assert get_index("second", lambda: rebuilt) is rebuilt
    clear_cache()


def test_corpus_key_depends_on_texts_order_and_boundaries() -> None:
    assert corpus_key(["a b", "c"]) == corpus_key(["a b", "c"])
    assert corpus_key(["a b", "c"]) != corpus_key(["a", "b c"])
    assert corpus_key(["a", "b"]) != corpus_key(["b", "a"])
    assert corpus_key(["a"], 1.5) != corpus_key(["a"], 1.2)
