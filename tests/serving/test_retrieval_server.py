"""`gather-envs serve-retrieval`: a real server process, a real HTTP client, the env's own BM25."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from _support.retrieval_service import PACKAGE_ROOT, Server

import gather_envs
from gather_envs.corpus.frozen import load_directory, write_frozen
from gather_envs.corpus.synthetic import generate_corpus
from gather_envs.serving.retrieval_server import MAX_BODY_BYTES, MAX_QUERIES, MAX_TOPK
from gather_envs.world.generator import WorldConfig

ENV_ID = next(i for i in gather_envs.ENV_IDS if gym.make(i).unwrapped.max_tool_calls > 0)  # type: ignore[attr-defined]
"""The first registered id whose agent may search."""
START_TIMEOUT_S = 120
QUERIES = [
    "who founded the company",
    "river city born",
    "headquartered in",
    "zzzz-not-a-word qqqq",  # no word in the vocabulary: the env's BM25 still answers (all 0.0)
    "Ada Lovelace's 1st note (1843)",
]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = Server("--env", ENV_ID)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def env() -> gym.Env:
    return gym.make(ENV_ID)


def expected_hits(env: gym.Env, query: str, topk: int) -> list[tuple[str, float]]:
    """The env's own BM25 hits in its split's world: (document id, score), best first."""
    base = env.unwrapped
    documents = base.corpus.documents_of(base.split)  # type: ignore[attr-defined]
    index = base.corpus.index(base.split)  # type: ignore[attr-defined]
    return [(documents[i].doc_id, score) for i, score in index.search(query, topk)]


def test_scores_ids_and_order_equal_the_envs_bm25(server: Server, env: gym.Env) -> None:
    for topk in (1, 3, 10):
        status, answer = server.retrieve({"queries": QUERIES, "topk": topk, "return_scores": True})
        assert status == 200, answer
        assert len(answer["result"]) == len(QUERIES)
        for query, hits in zip(QUERIES, answer["result"]):
            served = [(hit["document"]["id"], hit["score"]) for hit in hits]
            assert served == expected_hits(env, query, topk)  # floats equal exactly, not approximately


def test_documents_carry_search_r1_fields(server: Server, env: gym.Env) -> None:
    corpus = env.unwrapped.corpus  # type: ignore[attr-defined]
    status, answer = server.retrieve({"queries": [QUERIES[0]], "topk": 2, "return_scores": True})
    assert status == 200
    for hit in answer["result"][0]:
        assert set(hit) == {"document", "score"}
        document = hit["document"]
        expected = corpus.doc(document["id"])
        assert document["contents"] == f'"{expected.title}"\n{expected.text}'
        assert (document["title"], document["text"]) == (expected.title, expected.text)
        # Search-R1's client splits contents into a title line and the text.
        assert document["contents"].split("\n")[0] == f'"{expected.title}"'


def test_served_hits_are_what_the_env_shows_after_a_search(server: Server, env: gym.Env) -> None:
    env.reset(seed=0)
    observation, *_ = env.step(f"search[{QUERIES[1]}]")
    status, answer = server.retrieve({"queries": [QUERIES[1]]})
    assert status == 200
    corpus = env.unwrapped.corpus  # type: ignore[attr-defined]
    rendered = [corpus.doc(document["id"]).render() for document in answer["result"][0]]
    assert len(rendered) == env.unwrapped.top_k  # type: ignore[attr-defined]
    lines = [f"{i}. {text}" for i, text in enumerate(rendered, start=1)]
    positions = [observation.index(line) for line in lines]
    assert positions == sorted(positions)


def test_without_scores_each_hit_is_the_document(server: Server, env: gym.Env) -> None:
    status, answer = server.retrieve({"queries": QUERIES[:2], "topk": 4})
    assert status == 200
    for query, hits in zip(QUERIES[:2], answer["result"]):
        assert [hit["id"] for hit in hits] == [doc for doc, _ in expected_hits(env, query, 4)]
        assert all("score" not in hit for hit in hits)


def test_missing_or_null_topk_takes_the_envs_top_k(server: Server, env: gym.Env) -> None:
    top_k = env.unwrapped.top_k  # type: ignore[attr-defined]
    for payload in ({"queries": [QUERIES[0]]}, {"queries": [QUERIES[0]], "topk": None}):
        status, answer = server.retrieve(payload)
        assert status == 200 and len(answer["result"][0]) == top_k


def test_skyrls_single_query_field_gets_the_same_answer(server: Server, env: gym.Env) -> None:
    status, answer = server.retrieve({"query": QUERIES[0], "topk": 3, "return_scores": True})
    assert status == 200
    (hits,) = answer["result"]
    assert [(h["document"]["id"], h["score"]) for h in hits] == expected_hits(env, QUERIES[0], 3)


def test_empty_batch_and_wordless_query(server: Server) -> None:
    assert server.retrieve({"queries": []}) == (200, {"result": []})
    assert server.retrieve({"queries": ["", " ?! "]}) == (200, {"result": [[], []]})


def test_health_names_the_corpus(server: Server, env: gym.Env) -> None:
    status, answer = server.request("GET", "/health")
    corpus = env.unwrapped.corpus  # type: ignore[attr-defined]
    assert status == 200
    assert answer["corpus_hash"] == corpus.content_hash and answer["split"] == "test"
    # The test split's own world only: the train world's documents are not searched.
    assert answer["documents"] == len(corpus.documents_of("test")) < len(corpus.documents)


def test_the_train_split_serves_the_train_world_as_a_train_env_searches_it() -> None:
    train_env = gym.make(ENV_ID, split="train")
    running = Server("--env", ENV_ID, "--split", "train")
    try:
        status, answer = running.retrieve({"queries": QUERIES, "topk": 3, "return_scores": True})
        assert status == 200
        for query, hits in zip(QUERIES, answer["result"]):
            assert [(h["document"]["id"], h["score"]) for h in hits] == expected_hits(train_env, query, 3)
        assert running.request("GET", "/health")[1]["split"] == "train"
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ([1, 2], "must be a JSON object"),
        ({"questions": ["x"]}, 'missing field "queries"'),
        ({"query": ["x"]}, '"query" must be a string, got a list'),
        ({"query": "x", "queries": ["y"]}, "not both"),
        ({"queries": "who"}, '"queries" must be a list of strings, got a string'),
        ({"queries": ["ok", 7]}, '"queries"[1] must be a string, got a number'),
        ({"queries": ["x"] * (MAX_QUERIES + 1)}, f"at most {MAX_QUERIES}"),
        ({"queries": ["x" * 5000]}, '"queries"[0] has 5000 characters'),
        ({"queries": ["x"], "topk": 0}, '"topk" must be an integer'),
        ({"queries": ["x"], "topk": MAX_TOPK + 1}, '"topk" must be an integer'),
        ({"queries": ["x"], "topk": "3"}, '"topk" must be an integer'),
        ({"queries": ["x"], "topk": True}, '"topk" must be an integer'),
        ({"queries": ["x"], "topk": 2.5}, '"topk" must be an integer'),
        ({"queries": ["x"], "return_scores": "yes"}, '"return_scores" must be true or false'),
    ],
)
def test_malformed_fields_are_a_400_saying_what_to_fix(server: Server, payload: Any, needle: str) -> None:
    status, answer = server.retrieve(payload)
    assert status == 400
    assert needle in answer["error"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "the body is not JSON"),
        (b"", "the body is not JSON"),
        (b'{"queries": ["\xff"]}', "not UTF-8"),
        (b"[" * 200_000 + b"]" * 200_000, "nests too deeply"),
        (b'{"queries": [NaN]}', "must be a string"),
    ],
)
def test_bodies_that_are_not_json_are_a_400(server: Server, body: bytes, needle: str) -> None:
    status, answer = server.request("POST", server.path, body)
    assert status == 400
    assert needle in answer["error"]


def test_other_paths_and_methods_are_json_errors(server: Server) -> None:
    assert server.request("POST", "/search", b"{}")[0] == 404
    status, answer = server.request("GET", server.path)
    assert status == 405 and "POST" in answer["error"]
    assert server.request("GET", "/")[0] == 404


@pytest.mark.parametrize("size", [MAX_BODY_BYTES + 1, 4 * MAX_BODY_BYTES])
def test_a_body_over_the_bound_is_refused_with_a_413_the_client_reads(server: Server, size: int) -> None:
    status, answer = server.request("POST", server.path, b" " * size)
    assert status == 413 and str(MAX_BODY_BYTES) in answer["error"]


def raw_exchange(server: Server, data: bytes) -> bytes:
    """Send raw bytes, half-close, and read everything the server answers."""
    with socket.create_connection((server.host, server.port), timeout=60) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_missing_short_or_huge_content_length_never_hangs_or_crashes(server: Server, env: gym.Env) -> None:
    head = f"POST {server.path} HTTP/1.1\r\nHost: x\r\n".encode()
    assert b" 411 " in raw_exchange(server, head + b"\r\n" + b'{"queries": []}')
    assert b" 400 " in raw_exchange(server, head + b"Content-Length: -5\r\n\r\n")
    assert b" 400 " in raw_exchange(server, head + b"Content-Length: 100\r\n\r\n{}")  # the body ends early
    assert b" 413 " in raw_exchange(server, head + b"Content-Length: 99999999999999999999\r\n\r\n")
    assert b" 411 " in raw_exchange(server, head + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    garbage = raw_exchange(server, b"\x00\x01garbage\r\n\r\n")
    assert b" 400 " in garbage and json.loads(garbage.split(b"\r\n\r\n", 1)[1])["error"]
    unknown = raw_exchange(server, f"PUT {server.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert b" 501 " in unknown and b"PUT" in unknown.split(b"\r\n\r\n", 1)[1]
    long_header = raw_exchange(server, head + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n")
    assert b" 431 " in long_header or b" 400 " in long_header
    # Still serving, with the same answers.
    status, answer = server.retrieve({"queries": [QUERIES[0]], "topk": 3, "return_scores": True})
    assert status == 200
    assert [(h["document"]["id"], h["score"]) for h in answer["result"][0]] == expected_hits(
        env, QUERIES[0], 3
    )
    assert server.process.poll() is None


def test_each_answer_says_its_search_time_in_server_timing(server: Server) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.request("POST", server.path, body=json.dumps({"queries": QUERIES}).encode())
        response = connection.getresponse()
        response.read()
        timing = str(response.getheader("Server-Timing"))
    finally:
        connection.close()
    name, _, duration = timing.partition(";dur=")
    assert name == "bm25" and float(duration) >= 0.0


def test_keep_alive_serves_many_requests_on_one_connection(server: Server, env: gym.Env) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        for query in QUERIES:
            connection.request("POST", server.path, body=json.dumps({"queries": [query], "topk": 2}).encode())
            response = connection.getresponse()
            hits = json.loads(response.read())["result"][0]
            assert [hit["id"] for hit in hits] == [doc for doc, _ in expected_hits(env, query, 2)]
    finally:
        connection.close()


def test_serves_a_corpus_directory_with_its_own_index(tmp_path: Path) -> None:
    config = WorldConfig.from_json(
        {"seed": 5, "num_entities": 300, "tasks_per_family": 4, "train_tasks_per_family": 2}
    )
    corpus, stats = generate_corpus(config, "tiny")
    write_frozen(corpus, stats, tmp_path / "tiny")
    loaded = load_directory(tmp_path / "tiny")
    running = Server("--corpus", str(tmp_path / "tiny"), "--topk", "5")
    try:
        status, answer = running.retrieve({"queries": QUERIES[:3], "return_scores": True})
        assert status == 200
        for query, hits in zip(QUERIES[:3], answer["result"]):
            own = loaded.documents_of("test")  # the default split's world, as a test-split env searches
            expected = [(own[i].doc_id, s) for i, s in loaded.index("test").search(query, 5)]
            assert [(h["document"]["id"], h["score"]) for h in hits] == expected
    finally:
        running.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    command = [sys.executable, "-m", "gather_envs.cli", "serve-retrieval", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=START_TIMEOUT_S)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--port", "70000"), "--port"),
        (("--topk", "0"), "--topk"),
        (("--workers", "0"), "--workers"),
        (("--header-timeout", "0"), "--header-timeout"),
        (("--body-timeout", "nan"), "--body-timeout"),
        (("--max-connections", "0"), "--max-connections"),
        (("--corpus", "no-such-corpus"), "no frozen corpus 'no-such-corpus'"),
        (("--env", "Gather-Nope-v0"), "unknown env id"),
        (("--kwarg", "scope=distractor"), "scope=world"),
    ],
)
def test_bad_flags_are_one_line_errors(args: tuple[str, ...], needle: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert needle in result.stderr and result.stderr.count("\n") == 1


def test_a_port_in_use_is_a_one_line_error(server: Server) -> None:
    result = run_cli("--env", ENV_ID, "--port", str(server.port))
    assert result.returncode == 2
    assert "cannot listen" in result.stderr and "--port" in result.stderr and result.stderr.count("\n") == 1
