"""The on-disk BM25 index: equal to rank_bm25 on hostile corpora, built within its memory budget, refused whole when damaged."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rank_bm25
from hypothesis import given, settings
from hypothesis import strategies as st

from gather_envs.corpus.corpus import documents_hash, index_text
from gather_envs.corpus.frozen import load_frozen
from gather_envs.corpus.passages import corpus_documents, iter_passages
from gather_envs.envs.gather_env import GatherEnv
from gather_envs.errors import ConfigError, IndexFileError
from gather_envs.records.documents import Document
from gather_envs.retrieval import BM25Index
from gather_envs.retrieval import search as search_module
from gather_envs.retrieval.disk_build import MIN_MEMORY_BUDGET, build_disk_index, parse_size
from gather_envs.retrieval.disk_index import ARRAYS, MANIFEST, DiskIndex, array_file
from gather_envs.serving.retrieval_server import Retriever, document_json

REPO = Path(__file__).resolve().parents[2]
Corpus = list[list[str]]


def documents_of(corpus: Corpus) -> list[Document]:
    """Token lists as documents whose text tokenizes back to exactly those tokens."""
    return [Document(f"d{i}", "", " ".join(tokens)) for i, tokens in enumerate(corpus)]


def text_only(document: Document) -> str:
    return document.text


def build(corpus: Corpus, directory: Path, **kwargs: object) -> DiskIndex:
    build_disk_index(documents_of(corpus), directory, text_only, **kwargs)  # type: ignore[arg-type]
    return DiskIndex.open(directory)


def stable_top(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The reference ranking: a stable sort by descending score (ties go to the lower index)."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(doc), float(scores[doc])) for doc in order]


def zipf_corpus(rng: np.random.Generator, n_docs: int, vocabulary: int = 400, length: int = 30) -> Corpus:
    weights = 1.0 / np.arange(1, vocabulary + 1) ** 1.1
    ranks = rng.choice(vocabulary, size=(n_docs, length), p=weights / weights.sum())
    lengths = rng.integers(0, length, size=n_docs)
    return [[f"w{rank}" for rank in row[:n]] for row, n in zip(ranks, lengths)]


def assert_equal_to_rank_bm25(index: DiskIndex, corpus: Corpus, queries: list[list[str]]) -> None:
    reference = rank_bm25.BM25Okapi(corpus)
    for query in queries:
        scores = reference.get_scores(query)
        assert np.array_equal(index.get_scores(query), scores), query  # bit for bit
        for k in (1, 3, 10, len(corpus) + 1):
            assert index.top_k(query, k) == stable_top(scores, k), (query, k)


@pytest.fixture
def large_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Send small indexes down the large-index code: pruning with lookups, sampled selection."""
    monkeypatch.setattr(search_module, "SMALL_INDEX_DOCS", 0)
    monkeypatch.setattr(search_module, "COST_PRUNING_OVERHEAD", 0.0)
    monkeypatch.setattr(search_module, "SEED_DOCS", 4)
    monkeypatch.setattr(search_module, "SAMPLED_SELECT_MIN", 16)
    monkeypatch.setattr(search_module, "SELECT_SAMPLE_SIZE", 8)
    yield


ADVERSARIAL = {
    "one document": [["a", "b", "a"]],
    "empty documents among others": [[], ["a"], [], ["a", "b"], [], ["c", "c", "c"]],
    "a term in every document (idf floored to epsilon)": [
        ["the", "x"],
        ["the", "y"],
        ["the"],
        ["the", "the", "z"],
    ],
    "ties everywhere": [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"], ["c"]],
    "one term repeated past uint8": [["a"] * 300 + ["b"], ["b"], ["a", "c"], ["c"]],
    "unicode and underscores": [["zürich", "ß"], ["snake_case"], ["日本", "zürich"], ["x"]],
}
ADVERSARIAL_QUERIES = [
    ["a"], ["b", "a"], ["a", "a", "a"], ["the"], ["the", "x", "the"], ["c", "zz"], ["zz"], [],
    ["zürich"], ["日本", "ß", "snake_case"], ["x", "y", "z", "the"],
]  # fmt: skip


@pytest.mark.parametrize("paths", ["small", "large"])
@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_scores_and_rankings_equal_rank_bm25_on_adversarial_corpora(
    name: str, paths: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if paths == "large":
        request.getfixturevalue("large_paths")
    corpus = ADVERSARIAL[name]
    index = build(corpus, tmp_path / "index")
    assert len(index) == len(corpus)
    assert_equal_to_rank_bm25(index, corpus, ADVERSARIAL_QUERIES)


def test_tf_takes_the_smallest_type_that_holds_it(tmp_path: Path) -> None:
    assert build([["a", "b"]], tmp_path / "small").manifest["tf_dtype"] == "uint8"
    assert (
        build(ADVERSARIAL["one term repeated past uint8"], tmp_path / "big").manifest["tf_dtype"] == "uint16"
    )


@pytest.mark.parametrize("n_docs", [700, 3000])
def test_zipf_corpora_equal_rank_bm25_and_bm25index_through_pruning(
    n_docs: int, tmp_path: Path, large_paths: None
) -> None:
    rng = np.random.default_rng(n_docs)
    corpus = zipf_corpus(rng, n_docs)
    index = build(corpus, tmp_path / "index")
    memory = BM25Index(corpus)
    queries = [[f"w{int(r)}" for r in rng.zipf(1.3, size=rng.integers(1, 6)) if r < 500] for _ in range(80)]
    assert_equal_to_rank_bm25(index, corpus, queries[:20])
    assert np.array_equal(index._max_weight, memory._max_weight)
    for query in queries:
        for k in (1, 3, 10, 100):
            assert index.top_k(query, k) == memory.top_k(query, k)


@settings(max_examples=25, deadline=None)
@given(
    corpus=st.lists(
        st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=6), min_size=1, max_size=6
    ).filter(any),
    query=st.lists(st.sampled_from(["a", "b", "c", "d", "zz"]), max_size=5),
)
def test_any_small_corpus_scores_like_rank_bm25(
    corpus: Corpus, query: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    index = build(corpus, tmp_path_factory.mktemp("index"))
    assert_equal_to_rank_bm25(index, corpus, [query])


def test_an_empty_corpus_and_all_empty_documents_give_defined_answers(tmp_path: Path) -> None:
    empty = build([], tmp_path / "empty")
    assert len(empty) == 0 and empty.top_k(["a"], 3) == [] and empty.get_scores(["a"]).shape == (0,)
    blank = build([[], []], tmp_path / "blank")
    assert blank.top_k(["a"], 3) == [(0, 0.0), (1, 0.0)]


# --- the budgeted build ------------------------------------------------------------------------

MEASURE = textwrap.dedent(
    """
    import json, sys, tracemalloc
    from pathlib import Path
    import numpy as np
    from gather_envs.records.documents import Document
    from gather_envs.retrieval.disk_build import build_disk_index

    n_docs, budget, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    words = [f"w{i}" for i in range(500)]

    def documents():
        rng = np.random.default_rng(5)
        for i in range(n_docs):
            yield Document(f"d{i}", "", " ".join(words[r] for r in rng.integers(0, 500, 200)))

    tracemalloc.start()
    build_disk_index(documents(), out, lambda d: d.text, memory_budget=budget)
    print(json.dumps({"peak": tracemalloc.get_traced_memory()[1]}))
    """
)


def measured_build(n_docs: int, budget: int, out: Path) -> int:
    """Peak traced memory (numpy buffers included) of a build in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(n_docs), str(budget), str(out)],
        capture_output=True, text=True, env=env, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(done.stdout)["peak"]


def test_budgeted_build_stays_within_its_budget_and_writes_the_unbudgeted_arrays(tmp_path: Path) -> None:
    budget = MIN_MEMORY_BUDGET
    n_docs = 4_000  # 0.8M tokens (3.6 MB of text): an in-memory build holds 24 B per token, 5x the budget
    peak = measured_build(n_docs, budget, tmp_path / "budgeted")
    twice = measured_build(2 * n_docs, budget, tmp_path / "twice")
    unbudgeted = measured_build(n_docs, 1 << 30, tmp_path / "unbudgeted")
    # Traced peak: every numpy buffer and Python object; the 500-term vocabulary is negligible here.
    assert peak <= budget and twice <= budget, (peak, twice)  # twice the corpus, the same bound
    assert unbudgeted > 5 * budget  # the same corpus in one run holds all its postings at once
    budgeted_manifest = json.loads((tmp_path / "budgeted" / MANIFEST).read_text())
    unbudgeted_manifest = json.loads((tmp_path / "unbudgeted" / MANIFEST).read_text())
    assert budgeted_manifest["build"]["runs"] > 10 and unbudgeted_manifest["build"]["runs"] == 1
    assert budgeted_manifest["files"] == unbudgeted_manifest["files"]  # every array byte for byte (sha256)


def test_memory_budget_sizes_parse_and_too_small_ones_are_refused(tmp_path: Path) -> None:
    assert parse_size("2GB") == 2 << 30 and parse_size("512MiB") == 512 << 20 and parse_size("1000") == 1000
    with pytest.raises(ConfigError, match="not a size"):
        parse_size("lots")
    with pytest.raises(ConfigError, match="memory_budget"):
        build_disk_index([], tmp_path / "x", text_only, memory_budget=1000)


# --- sources ---------------------------------------------------------------------------------


def test_wiki18_rows_round_trip_through_the_servers_contents(tmp_path: Path) -> None:
    rows = [
        {"id": "1", "contents": '"Ada Lovelace"\nAda wrote the first program.\nA second line.'},
        {"id": 2, "contents": '"Charles Babbage"\nBabbage designed the engine.'},
        {"id": "3", "title": "Custom row", "text": "a custom documents.jsonl row"},
    ]
    path = tmp_path / "psgs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    documents = list(iter_passages(path))
    assert [document_json(d)["contents"] for d in documents[:2]] == [rows[0]["contents"], rows[1]["contents"]]
    assert documents[1].doc_id == "2" and documents[2] == Document(
        "3", "Custom row", "a custom documents.jsonl row"
    )


def test_a_frozen_corpus_index_names_its_content_hash_and_returns_its_documents(tmp_path: Path) -> None:
    corpus = load_frozen()
    documents, identity = corpus_documents("default", None)
    build_disk_index(documents, tmp_path / "index", index_text, corpus=identity)
    index = DiskIndex.open(tmp_path / "index", verify=True)
    assert (
        index.manifest["corpus"]["documents_sha256"]
        == corpus.content_hash
        == documents_hash(corpus.documents)
    )
    memory = corpus.index()
    for query in ("who founded the company", "river city born", "capital"):
        hits = index.search(query, 5)
        assert hits == memory.search(query, 5)
        assert [index.document(i) for i, _ in hits] == [corpus.documents[i] for i, _ in hits]


# --- damaged and foreign directories -----------------------------------------------------------


@pytest.fixture
def built(tmp_path: Path) -> Path:
    directory = tmp_path / "index"
    build(zipf_corpus(np.random.default_rng(1), 200), directory)
    return directory


def refusal(directory: Path, verify: bool = False) -> str:
    with pytest.raises(IndexFileError) as caught:
        DiskIndex.open(directory, verify=verify)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_corrupted_array_is_refused_by_verify(built: Path) -> None:
    DiskIndex.open(built, verify=True)
    path = built / array_file("postings_docs")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    DiskIndex.open(built)  # sizes and headers still agree: only the checksums can tell
    assert "sha256" in refusal(built, verify=True) and "postings_docs" in refusal(built, verify=True)


@pytest.mark.parametrize("name", ARRAYS)
def test_a_truncated_array_is_refused_at_open(built: Path, name: str) -> None:
    path = built / array_file(name)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size - 1)
    assert "truncated" in refusal(built)


def test_a_missing_array_is_refused_at_open(built: Path) -> None:
    (built / array_file("vocab_ids")).unlink()
    assert "missing" in refusal(built)


@pytest.mark.parametrize(
    "manifest",
    [
        None,
        "not json {",
        json.dumps({"format": "something-else"}),
        json.dumps({"format": "gather-envs-bm25-index", "version": 99}),
    ],
    ids=["no manifest", "garbage", "foreign format", "future version"],
)
def test_foreign_directories_are_refused_at_open(tmp_path: Path, manifest: str | None) -> None:
    directory = tmp_path / "foreign"
    directory.mkdir()
    if manifest is not None:
        (directory / MANIFEST).write_text(manifest)
    refusal(directory)


def test_a_frozen_corpus_directory_is_not_an_index(tmp_path: Path) -> None:
    message = refusal(REPO / "corpora" / "default")
    assert "not a BM25 index" in message


# --- the CLI, in a real subprocess -------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "gather_envs.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_builds_a_wiki18_file_and_describes_the_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    corpus = zipf_corpus(rng, 400)
    path = tmp_path / "psgs_w100.jsonl"
    rows = [
        {"id": str(i + 1), "contents": f'"Title {i}"\n' + " ".join(tokens)} for i, tokens in enumerate(corpus)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    built = run_cli("index", "build", str(path), "--out", str(tmp_path / "index"), "--memory-budget", "4MB")
    assert built.returncode == 0, built.stderr
    assert "400 documents" in built.stdout
    info = run_cli("index", "info", str(tmp_path / "index"), "--verify")
    assert info.returncode == 0, info.stderr
    assert "documents 400" in info.stdout and "checksums: all match" in info.stdout
    index = DiskIndex.open(tmp_path / "index")
    tokenized = [["title", str(i), *tokens] for i, tokens in enumerate(corpus)]
    assert_equal_to_rank_bm25(index, tokenized, [["w1", "title"], ["w7", "w30", "3"], ["title"]])
    assert index.document(0).doc_id == "1" and index.document(0).title == "Title 0"


def test_cli_refuses_a_foreign_index_and_a_bad_row_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    info = run_cli("index", "info", str(tmp_path / "empty"))
    assert info.returncode == 2 and info.stderr.count("\n") == 1 and "not a BM25 index" in info.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "contents": "\\"A\\"\\nfine"}\n{"id": "2"}\n', encoding="utf-8")
    built = run_cli("index", "build", str(bad), "--out", str(tmp_path / "index"))
    assert built.returncode == 2 and built.stderr.count("\n") == 1 and "bad.jsonl:2" in built.stderr
    assert not (tmp_path / "index").exists()  # nothing half-built is left


# --- index=DIR in the env and the server --------------------------------------------------------


@pytest.fixture(scope="module")
def test_split_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default corpus's test world, built as `gather-envs index build default --split test` does."""
    directory = tmp_path_factory.mktemp("split") / "index"
    documents, identity = corpus_documents("default", "test")
    build_disk_index(documents, directory, index_text, corpus=identity, memory_budget=MIN_MEMORY_BUDGET)
    return directory


def play(env: GatherEnv, actions: list[str]) -> list[tuple[str, float, bool, bool]]:
    observation, _ = env.reset(seed=7)
    steps = [(observation, 0.0, False, False)]
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(action)
        steps.append((observation, float(reward), terminated, truncated))
        if terminated or truncated:
            break
    return steps


def test_the_env_on_an_index_plays_the_same_episodes_as_in_memory(test_split_index: Path) -> None:
    memory = GatherEnv(family="bridge")
    disk = GatherEnv(family="bridge", index=str(test_split_index))
    for task in memory.tasks[:20]:
        assert disk._retrieve(task.question) == memory._retrieve(task.question)
    actions = ["search[who founded the company]", "search[born in the river city]", "finish[nobody]"]
    assert play(disk, actions) == play(memory, actions)
    restored = pickle.loads(pickle.dumps(disk))
    assert play(restored, actions) == play(memory, actions)


def test_the_env_refuses_an_index_of_other_documents_of_its_corpus(tmp_path: Path) -> None:
    documents, identity = corpus_documents("default", None)  # both worlds: a test env searches one
    build_disk_index(
        documents, tmp_path / "all", index_text, corpus=identity, memory_budget=MIN_MEMORY_BUDGET
    )
    with pytest.raises(ConfigError, match="--split test"):
        GatherEnv(index=str(tmp_path / "all"))
    with pytest.raises(ConfigError, match="scope='world'"):
        GatherEnv(index=str(tmp_path / "all"), scope="distractor")
    with pytest.raises(IndexFileError):
        GatherEnv(index=str(tmp_path / "nowhere"))


def test_the_retriever_on_an_index_answers_as_on_the_corpus(test_split_index: Path) -> None:
    on_disk = Retriever(None, index=DiskIndex.open(test_split_index))
    in_memory = Retriever(load_frozen(), split="test")
    payload = {
        "queries": ["who founded the company", "river city", "capital of", "zz"],
        "topk": 7,
        "return_scores": True,
    }
    assert on_disk.retrieve(payload).text == in_memory.retrieve(payload).text
    health = on_disk.health()
    assert health["documents"] == len(in_memory.documents)
    assert health["index"]["hash"] == DiskIndex.open(test_split_index).manifest_hash
    assert health["index"]["kind"] == "bm25-disk" and health["index"]["built_from"]["split"] == "test"


def test_serve_retrieval_index_serves_it_over_http(test_split_index: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "gather_envs.cli",
        "serve-retrieval",
        "--index",
        str(test_split_index),
        "--port",
        "0",
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = re.search(r"http://\S+", line)
        assert url is not None, line + (server.stderr.read() if server.stderr else "")
        body = json.dumps({"queries": ["who founded the company"], "topk": 5, "return_scores": True}).encode()
        request = urllib.request.Request(
            url.group(0), data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        expected = json.loads(Retriever(load_frozen(), split="test").retrieve(json.loads(body)).text)
        assert answer == expected
    finally:
        server.terminate()
        server.wait(timeout=30)
