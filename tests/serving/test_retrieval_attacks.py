"""`gather-envs serve-retrieval` tried as an attacker would: the real server process, raw sockets.

Idle and one-byte-a-second connections, a full connection cap, a small request asking for a huge
answer, integers of thousands of digits, a Content-Length that lies, a 100 MB body: each is refused
or dropped by a deadline while a normal client is served answers equal to the in-process
Retriever's, and the server's memory (RSS of the server and its workers, from /proc) stays bounded.
The deadlines are shortened by flags so the tests wait seconds, not minutes; they check what
happens, never how fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support.retrieval_service import Server, alive, children

from gather_envs.corpus.corpus import Corpus
from gather_envs.corpus.frozen import load_directory, write_frozen
from gather_envs.corpus.synthetic import generate_corpus
from gather_envs.records.documents import Document
from gather_envs.serving import DEFAULT_TOPK, Retriever
from gather_envs.serving.retrieval_server import MAX_ANSWER_BYTES, MAX_BODY_BYTES
from gather_envs.world.generator import WorldConfig

HEADER_TIMEOUT_S = 3
BODY_TIMEOUT_S = 2
BIG_DOCUMENT_CHARS = 20_000
"""One document of the served world is this long, as in the amplification request of issue 27."""
MEMORY_SLACK_BYTES = 96 << 20
"""How far the server's RSS may rise over its idle figure during an attack (the refused answer
alone would be hundreds of MB)."""
IDLE, SLOW = 300, 300
WAIT_S = 60
"""A generous bound on any wait for the server: the tests check what happens, not how fast."""
QUERIES = ["who founded the company", "river city born", "headquartered in", "zzzz-not-a-word"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small frozen corpus whose test world holds one 20 kB document."""
    config = WorldConfig.from_json(
        {"seed": 5, "num_entities": 300, "tasks_per_family": 4, "train_tasks_per_family": 2}
    )
    corpus, stats = generate_corpus(config, "tiny")
    start, _ = corpus.split_documents["test"]
    documents = list(corpus.documents)
    first = documents[start]
    documents[start] = Document(
        first.doc_id, first.title, (first.text + " ") * (BIG_DOCUMENT_CHARS // len(first.text) + 1)
    )
    big = Corpus(corpus.name, documents, corpus.splits, corpus.knobs, split_documents=corpus.split_documents)
    directory = tmp_path_factory.mktemp("corpus") / "tiny-big"
    write_frozen(big, stats, directory)
    return directory


@pytest.fixture(scope="module")
def retriever(corpus_dir: Path) -> Retriever:
    """The in-process Retriever the served answers must equal."""
    return Retriever(load_directory(corpus_dir), DEFAULT_TOPK, split="test")


@pytest.fixture(scope="module")
def server(corpus_dir: Path) -> Iterator[Server]:
    """Two workers with short deadlines."""
    running = Server(
        "--corpus",
        str(corpus_dir),
        "--workers",
        "2",
        "--header-timeout",
        str(HEADER_TIMEOUT_S),
        "--body-timeout",
        str(BODY_TIMEOUT_S),
    )
    wait_until_serving(running)
    running.idle_rss = running.rss_bytes()
    yield running
    running.stop()


def wait_until_serving(server: Server) -> None:
    """Until /health answers (workers accept once forked; held connections may still be closing)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if server.request("GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the server did not answer /health")
        time.sleep(0.1)


def assert_memory_bounded(server: Server) -> None:
    assert server.rss_bytes() <= server.idle_rss + MEMORY_SLACK_BYTES


def assert_served_like_the_retriever(server: Server, retriever: Retriever) -> None:
    """Every kind of request answers the in-process Retriever's exact bytes."""
    for payload in (
        {"queries": QUERIES, "topk": 3, "return_scores": True},
        {"queries": QUERIES[:2], "topk": 10},
        {"query": QUERIES[0]},
    ):
        status, body = server.request_raw("POST", server.path, json.dumps(payload).encode())
        assert status == 200, body
        assert body == retriever.retrieve(payload).text.encode("utf-8")


def read_until_closed(sock: socket.socket, timeout: float = WAIT_S) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def json_error(response: bytes, status: int) -> str:
    """The one-line error of a raw JSON error response with ``status``."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), response[:200]
    assert b"application/json" in head
    error = json.loads(body)["error"]
    assert error and "\n" not in error
    return error


def test_served_answers_equal_the_in_process_retrievers(server: Server, retriever: Retriever) -> None:
    assert_served_like_the_retriever(server, retriever)
    status, health = server.request("GET", "/health")
    assert status == 200
    assert health["index"] == retriever.identity and health["index"]["documents"] == len(retriever.documents)


def test_a_client_is_served_while_300_idle_and_300_slow_connections_are_open(
    server: Server, retriever: Retriever
) -> None:
    idle = [server.connect() for _ in range(IDLE)]
    slow = [server.connect() for _ in range(SLOW)]
    head = f"POST {server.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode()
    stop = threading.Event()

    def trickle() -> None:  # one byte a second on every slow connection the server has not answered
        for position in range(len(head)):
            for sock in slow:
                if not select.select([sock], [], [], 0)[0]:  # a byte after the answer would be a reset
                    with contextlib.suppress(OSError):
                        sock.send(head[position : position + 1])
            if stop.wait(1.0):
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        served = 0
        deadline = time.monotonic() + HEADER_TIMEOUT_S + 2
        while time.monotonic() < deadline:  # served all along, before and after the deadlines hit
            assert_served_like_the_retriever(server, retriever)
            assert_memory_bounded(server)
            served += 1
        assert served >= 1
        for sock in idle:  # dropped at the header deadline without a word (they sent nothing)
            assert read_until_closed(sock) == b""
        for sock in slow:  # a byte a second did not reset the deadline: a 408 before the head was in
            assert "headers did not arrive" in json_error(read_until_closed(sock), 408)
    finally:
        stop.set()
        sender.join()
        for sock in idle + slow:
            sock.close()
    assert_served_like_the_retriever(server, retriever)
    assert_memory_bounded(server)


def test_the_913_byte_amplification_request_is_refused_before_any_work(
    server: Server, retriever: Retriever
) -> None:
    words = ["a", "b", "c", "d", "e", "f", "g", "h"]
    queries = [f"{words[i % 8]}{words[i // 8 % 8]}" for i in range(96)]
    body = json.dumps({"queries": queries, "topk": 100, "return_scores": True}).encode()
    assert len(body) < 1000
    assert 96 * 100 * BIG_DOCUMENT_CHARS > MAX_ANSWER_BYTES  # what it would ask for, unrefused
    status, answer = server.request("POST", server.path, body)
    assert status == 400
    assert "send at most" in answer["error"] and str(MAX_ANSWER_BYTES) in answer["error"]
    fitting = int(answer["error"].rsplit("send at most ", 1)[1].split()[0])
    assert 1 <= fitting < 96
    status, answer = server.retrieve({"queries": queries[:fitting], "topk": 100})
    assert status == 200 and len(answer["result"]) == fitting  # what the message says fits, fits
    assert_memory_bounded(server)


@pytest.mark.parametrize(
    "body",
    [
        b'{"queries": ["x"], "topk": 1' + b"0" * 5000 + b"}",
        b'{"queries": ["x"], "topk": -' + b"9" * 5000 + b"}",
        b'{"queries": [' + b"7" * 5000 + b"]}",
        b'{"queries": ["x"], "return_scores": ' + b"1" * 4301 + b"}",
        b'{"queries": ["x"], "topk": 1e400}',
        b'{"queries": ["x"], "topk": 99999999999999999999}',
    ],
)
def test_huge_integers_are_a_400_not_a_500(server: Server, body: bytes) -> None:
    status, answer = server.request("POST", server.path, body)
    assert status == 400, answer
    assert "digits" in answer["error"] or '"topk" must be an integer' in answer["error"]


def exchange(server: Server, data: bytes, half_close: bool = True) -> bytes:
    """Send raw bytes (then half-close, or not) and read until the server closes."""
    with server.connect() as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock)


def test_a_client_that_half_closes_after_its_request_still_gets_its_answer(
    server: Server, retriever: Retriever
) -> None:
    payload = {"queries": QUERIES, "topk": 5, "return_scores": True}
    body = json.dumps(payload).encode()
    head = f"POST {server.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    response = exchange(server, head + body)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.partition(b"\r\n\r\n")[2] == retriever.retrieve(payload).text.encode("utf-8")


def test_a_5000_digit_content_length_is_a_4xx(server: Server) -> None:
    response = exchange(
        server, f"POST {server.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {'9' * 5000}\r\n\r\n".encode()
    )
    assert response.split(b" ", 2)[1] in (b"400", b"413")
    json_error(response, int(response.split(b" ", 2)[1]))


def test_a_content_length_longer_than_the_body_is_a_quick_400_or_a_408(server: Server) -> None:
    head = f"POST {server.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".encode()
    # The client half-closes: the body can never arrive, so the 400 comes at once.
    assert "Content-Length" in json_error(exchange(server, head + b"{}"), 400)
    # The client waits: the body deadline (not a reset-on-byte idle timeout) answers 408.
    assert "body did not arrive" in json_error(exchange(server, head + b"{}", half_close=False), 408)
    assert_memory_bounded(server)


def test_a_100_mb_body_is_refused_from_its_header(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(
            f"POST {server.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {100_000_000}\r\n\r\n".encode()
        )
        sock.sendall(b" " * 65536)  # the start of the body; the rest is never sent
        error = json_error(read_until_closed(sock), 413)
    assert str(MAX_BODY_BYTES) in error
    assert_memory_bounded(server)


def test_the_header_deadline_is_not_reset_by_each_byte(server: Server) -> None:
    head = f"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: {'p' * 40}\r\n\r\n".encode()
    sent = 0
    with server.connect() as sock:
        sock.settimeout(0.5)
        response = b""
        while sent < len(head):  # two bytes a second: the whole head would take over 30 s
            sock.send(head[sent : sent + 1])
            sent += 1
            try:
                response = sock.recv(65536)
            except TimeoutError:
                continue
            break
        response += read_until_closed(sock)
    assert sent < len(head)
    assert "headers did not arrive" in json_error(response, 408)


@pytest.fixture(scope="module")
def capped(corpus_dir: Path) -> Iterator[Server]:
    """One worker holding at most 40 connections, with deadlines long enough not to interfere."""
    running = Server("--corpus", str(corpus_dir), "--max-connections", "40", "--header-timeout", "120")
    wait_until_serving(running)
    yield running
    running.stop()


def test_at_the_cap_a_new_connection_drops_the_longest_waiting_idle_one(
    capped: Server, retriever: Retriever
) -> None:
    idle = []
    try:
        for _ in range(100):
            idle.append(capped.connect())
            time.sleep(0.01)  # accepted in order
        assert_served_like_the_retriever(capped, retriever)  # each request evicts one more idle client
        for sock in idle[:50]:
            assert read_until_closed(sock) == b""
        for sock in idle[-10:]:  # the most recent are still held
            sock.settimeout(0.2)
            with pytest.raises(TimeoutError):
                sock.recv(1)
    finally:
        for sock in idle:
            sock.close()


def test_at_a_cap_of_connections_all_mid_request_a_new_one_gets_a_503(capped: Server) -> None:
    busy = []
    try:
        for _ in range(40):  # each sends its head and holds its body back: not droppable until the deadline
            sock = capped.connect()
            sock.sendall(f"POST {capped.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n".encode())
            busy.append(sock)
        time.sleep(2.0)  # every head read
        with capped.connect() as extra:
            assert "40 connections" in json_error(read_until_closed(extra), 503)
    finally:
        for sock in busy:
            sock.close()
    wait_until_serving(capped)


PADDED_DOCUMENTS = 100
PAD_WORD = "zzpad"


@pytest.fixture(scope="module")
def padded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose world has 100 documents of 20 kB that only the word ``zzpad`` finds, and a
    short deadline for reading an answer."""
    config = WorldConfig.from_json(
        {"seed": 6, "num_entities": 300, "tasks_per_family": 4, "train_tasks_per_family": 2}
    )
    corpus, stats = generate_corpus(config, "tiny-padded")
    start, _ = corpus.split_documents["test"]
    documents = list(corpus.documents)
    pad = f" {PAD_WORD}" * (BIG_DOCUMENT_CHARS // (len(PAD_WORD) + 1))
    for i in range(start, start + PADDED_DOCUMENTS):
        documents[i] = Document(documents[i].doc_id, documents[i].title, documents[i].text + pad)
    big = Corpus(corpus.name, documents, corpus.splits, corpus.knobs, split_documents=corpus.split_documents)
    directory = tmp_path_factory.mktemp("padded") / "tiny-padded"
    write_frozen(big, stats, directory)
    running = Server("--corpus", str(directory), "--send-timeout", "2")
    wait_until_serving(running)
    running.idle_rss = running.rss_bytes()
    yield running
    running.stop()


def test_a_client_that_does_not_read_its_answer_is_dropped_at_the_send_deadline(padded: Server) -> None:
    status, refusal = padded.retrieve({"queries": [PAD_WORD] * 96, "topk": 100})
    fitting = int(refusal["error"].rsplit("send at most ", 1)[1].split()[0])  # the largest answer allowed
    body = json.dumps({"queries": [PAD_WORD] * fitting, "topk": 100}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # the kernel holds little of the answer
    sock.settimeout(WAIT_S)
    sock.connect((padded.host, padded.port))
    with sock:
        sock.sendall(
            f"POST {padded.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1024)
        length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        assert status == 400 and length > fitting * 100 * BIG_DOCUMENT_CHARS * 0.9  # a full answer began
        time.sleep(6)  # over the 2 s deadline without reading, then read what is left
        received = len(head.partition(b"\r\n\r\n")[2]) + len(read_until_closed(sock))
    assert received < length  # the server dropped the connection mid-answer
    assert_memory_bounded(padded)
    assert padded.retrieve({"queries": [PAD_WORD], "topk": 3})[0] == 200


def test_workers_end_with_the_server_on_sigterm_and_on_sigkill(corpus_dir: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        running = Server("--corpus", str(corpus_dir), "--workers", "2")
        try:
            wait_until_serving(running)
            workers = children(running.process.pid)
            assert len(workers) == 2
            os.kill(running.process.pid, sig)
            running.process.wait(timeout=WAIT_S)
            deadline = time.monotonic() + WAIT_S
            while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(alive(pid) for pid in workers)
        finally:
            running.stop()
