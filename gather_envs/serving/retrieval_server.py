"""A retrieval server in the protocol of Search-R1's ``search_r1/search/retrieval_server.py``.

Search-R1, and the recipes that reuse its server (verl's ``search_r1_like``), search with
``POST /retrieve`` and a JSON body ``{"queries": [...], "topk": 3, "return_scores": true}``. The answer is
``{"result": [hits of query 1, hits of query 2, ...]}``. With ``return_scores`` each hit is
``{"document": DOC, "score": FLOAT}``, without it each hit is ``DOC`` itself. ``DOC`` is
``{"id", "contents", "title", "text"}``: Search-R1's corpus rows carry ``id`` and ``contents``
(``'"' + title + '"\\n' + text``), its BM25 path adds ``title`` and ``text``, and its clients read
``contents``. A missing or null ``topk`` takes the server's default, as in Search-R1. SkyRL's
search tool (``skyrl_gym/tools/search.py``) sends one ``"query"`` string instead of ``queries``
and reads the same answer, so that is accepted too.

The hits are the corpus's own world-scope BM25 index (:meth:`Corpus.index`), the one the env
searches, so ids, order and float64 scores equal the env's; JSON carries the floats exactly. A
query with no searchable words gets no hits (the env refuses such a search). Unlike Search-R1,
a malformed request is an HTTP 400 whose JSON body says what to fix (``{"error": ...}``), a body
over :data:`MAX_BODY_BYTES` is a 413, and no request can crash the server. Each answer's
``Server-Timing`` header says how long its BM25 searches took, which separates search time
from HTTP time on the client side.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from gather_envs.corpus.corpus import Corpus
from gather_envs.errors import ConfigError, GatherError
from gather_envs.records.documents import Document
from gather_envs.retrieval import BM25Index, DiskIndex, tokenize

DEFAULT_HOST = "127.0.0.1"
"""Loopback: the server answers only this machine unless told otherwise."""
DEFAULT_PORT = 8000
"""Search-R1's port, so its default ``search_url`` (http://127.0.0.1:8000/retrieve) works."""
DEFAULT_TOPK = 3
"""Hits per query when a request gives no ``topk``: Search-R1's default and the env's ``top_k``."""
RETRIEVE_PATH = "/retrieve"
HEALTH_PATH = "/health"
MAX_BODY_BYTES = 1 << 20
"""Largest request body read; 512 queries of 200 characters take about 110 KB."""
MAX_DRAINED_BYTES = 16 << 20
"""A body over :data:`MAX_BODY_BYTES` but under this is read and dropped before the 413 is sent."""
DRAIN_CHUNK_BYTES = 1 << 16
MAX_QUERIES = 1024
"""Most queries in one request."""
MAX_QUERY_CHARS = 4096
"""Longest query, in characters."""
MAX_TOPK = 100
"""Largest ``topk``; with :data:`MAX_QUERIES` this bounds the work and the size of one answer."""
MAX_CONNECTIONS = 256
"""Connections served at once (one thread each); a connection past this is closed at once.

Searches run on the connection's own thread, and the index keeps 9 bytes of scratch per document
per searching thread, so this also bounds that memory (256 x 9 B x 100k documents = 230 MB). A
pool of a few search threads would bound it lower but doubled a one-query request's latency
(0.7 -> 1.4 ms at 10k documents on the loaded 2-core machine)."""
SERVER_TIMING_NAME = "bm25"
"""A ``/retrieve`` answer's ``Server-Timing: bm25;dur=MS`` header: its searches' time, in ms."""
SOCKET_TIMEOUT_S = 30.0
"""A connection that sends nothing for this long is closed, so a stalled client holds no thread."""


class RetrievalRequestError(GatherError, ValueError):
    """A request the server refuses: the HTTP status and a message saying what to fix."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


def document_json(document: Document) -> dict[str, str]:
    """A document as Search-R1's servers return it (its clients read ``contents``)."""
    return {
        "id": document.doc_id,
        "contents": f'"{document.title}"\n{document.text}',
        "title": document.title,
        "text": document.text,
    }


class Retrieval(NamedTuple):
    """One answered request: the response's JSON text and the seconds its BM25 searches took."""

    text: str
    bm25_seconds: float


class Retriever:
    """Answers ``/retrieve`` payloads from a corpus's world-scope BM25 index (thread-safe).

    ``split`` picks the documents an env of that split searches (a synthetic corpus keeps one
    world per split); None serves every document. With ``index`` (an on-disk index), that index
    and its own documents are served instead, and ``corpus`` may be None.
    """

    def __init__(
        self,
        corpus: Corpus | None,
        default_topk: int = DEFAULT_TOPK,
        split: str | None = None,
        index: DiskIndex | None = None,
    ) -> None:
        if isinstance(default_topk, bool) or not isinstance(default_topk, int):
            raise ConfigError(f"default_topk must be an int, got {default_topk!r}")
        if not 1 <= default_topk <= MAX_TOPK:
            raise ConfigError(f"default_topk must be in [1, {MAX_TOPK}], got {default_topk}")
        self.corpus = corpus
        self.split = split
        self.default_topk = default_topk
        self.index: BM25Index | DiskIndex
        self._encode: Callable[[int], str]
        if index is not None:
            self.index, self.documents = index, index.documents
            documents = index.documents  # encoded per hit: a wiki's JSON would not fit in memory
            self._encode = lambda i: json.dumps(document_json(documents[i]), ensure_ascii=False)
        elif corpus is not None:
            self.documents = corpus.documents_of(split)
            self.index = corpus.index(split)
            # Each document's JSON is encoded once: re-encoding the hits on every request cost a third
            # of a 512-query request (10k documents: 8.9k queries/s before, 14.6k after).
            self._encode = [
                json.dumps(document_json(d), ensure_ascii=False) for d in self.documents
            ].__getitem__
        else:
            raise ConfigError("a Retriever serves a corpus or an index; pass one")

    def search(self, query: str, topk: int) -> list[tuple[int, float]]:
        """The env's BM25 hits for ``query`` as ``(document position, score)``; none without words."""
        tokens = tokenize(query)
        return self.index.top_k(tokens, topk) if tokens else []

    def retrieve(self, payload: Any) -> Retrieval:
        """The JSON text answering one decoded request body; :class:`RetrievalRequestError` if malformed.

        The text is what ``json.dumps`` of the response object gives (floats as ``repr``, which
        round-trips exactly), assembled from the pre-encoded documents.
        """
        queries, topk, return_scores = parse_request(payload, self.default_topk)
        start = time.perf_counter()
        all_hits = [self.search(query, topk) for query in queries]
        bm25_seconds = time.perf_counter() - start
        encode = self._encode
        lists = []
        for hits in all_hits:
            if return_scores:
                items = [f'{{"document": {encode(i)}, "score": {score!r}}}' for i, score in hits]
            else:
                items = [encode(i) for i, _ in hits]
            lists.append(f"[{', '.join(items)}]")
        return Retrieval(f'{{"result": [{", ".join(lists)}]}}', bm25_seconds)

    def health(self) -> dict[str, Any]:
        """What ``GET /health`` answers: the corpus served and the default ``topk``."""
        answer = {
            "status": "ok",
            "corpus": None if self.corpus is None else self.corpus.name,
            "corpus_hash": None if self.corpus is None else self.corpus.content_hash,
            "split": self.split,
            "documents": len(self.documents),
            "default_topk": self.default_topk,
        }
        if isinstance(self.index, DiskIndex):
            answer["index"] = self.index.identity
        return answer


def parse_request(payload: Any, default_topk: int) -> tuple[list[str], int, bool]:
    """``(queries, topk, return_scores)`` of a request body, checked field by field."""
    example = 'e.g. {"queries": ["who founded X"], "topk": 3, "return_scores": true}'
    if not isinstance(payload, dict):
        raise RetrievalRequestError(f"the body must be a JSON object, got {_kind(payload)}; {example}")
    if "query" in payload:  # SkyRL's search tool sends one query per request under this name
        if "queries" in payload:
            raise RetrievalRequestError('send "queries" (a list) or "query" (one string), not both')
        if not isinstance(payload["query"], str):
            raise RetrievalRequestError(f'"query" must be a string, got {_kind(payload["query"])}')
        payload = {**payload, "queries": [payload["query"]]}
    if "queries" not in payload:
        raise RetrievalRequestError(f'missing field "queries" (a list of strings); {example}')
    queries = payload["queries"]
    if not isinstance(queries, list):
        raise RetrievalRequestError(f'"queries" must be a list of strings, got {_kind(queries)}')
    if len(queries) > MAX_QUERIES:
        raise RetrievalRequestError(
            f'"queries" has {len(queries)} entries; send at most {MAX_QUERIES} per request'
        )
    for position, query in enumerate(queries):
        if not isinstance(query, str):
            raise RetrievalRequestError(f'"queries"[{position}] must be a string, got {_kind(query)}')
        if len(query) > MAX_QUERY_CHARS:
            raise RetrievalRequestError(
                f'"queries"[{position}] has {len(query)} characters; the most is {MAX_QUERY_CHARS}'
            )
    topk = payload.get("topk")
    if topk is None:
        topk = default_topk
    elif isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:
        raise RetrievalRequestError(f'"topk" must be an integer in [1, {MAX_TOPK}] or null, got {topk!r}')
    return_scores = payload.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise RetrievalRequestError(f'"return_scores" must be true or false, got {_kind(return_scores)}')
    return queries, topk, return_scores


def _kind(value: Any) -> str:
    """A JSON value's type in JSON's words, for error messages (the value itself is not echoed)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def decode_body(body: bytes) -> Any:
    """The JSON value of a request body; :class:`RetrievalRequestError` if it is not UTF-8 JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RetrievalRequestError(f"the body is not UTF-8 (byte {exc.start}); send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise RetrievalRequestError(
            f"the body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise RetrievalRequestError("the body nests too deeply to decode; send a flat JSON object") from None


class _Handler(BaseHTTPRequestHandler):
    """One connection: POST /retrieve and GET /health; every answer, error or not, is JSON."""

    protocol_version = "HTTP/1.1"  # keep-alive, so a client's batch-of-1 loop reuses its connection
    default_request_version = "HTTP/1.0"  # so a garbled request line still gets a status and headers
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK cost 40 ms
    timeout = SOCKET_TIMEOUT_S
    _server_timing = ""  # this request's Server-Timing header value, set once its searches ran
    server: _RetrievalHTTPServer

    def do_POST(self) -> None:
        self._server_timing = ""
        self._answer(self._post)

    def do_GET(self) -> None:
        self._server_timing = ""
        self._answer(self._get)

    def _post(self) -> str:
        path = self.path.split("?", 1)[0]
        if path != RETRIEVE_PATH:
            raise RetrievalRequestError(
                f"no such path {path!r}; POST to {RETRIEVE_PATH}", HTTPStatus.NOT_FOUND
            )
        answer = self.server.retriever.retrieve(decode_body(self._body()))
        self._server_timing = f"{SERVER_TIMING_NAME};dur={1e3 * answer.bm25_seconds:.3f}"
        return answer.text

    def _get(self) -> str:
        path = self.path.split("?", 1)[0]
        if path == HEALTH_PATH:
            return json.dumps(self.server.retriever.health(), ensure_ascii=False)
        if path == RETRIEVE_PATH:
            raise RetrievalRequestError(
                f"{RETRIEVE_PATH} takes POST with a JSON body", HTTPStatus.METHOD_NOT_ALLOWED
            )
        raise RetrievalRequestError(
            f"no such path {path!r}; POST to {RETRIEVE_PATH} or GET {HEALTH_PATH}", HTTPStatus.NOT_FOUND
        )

    def _body(self) -> bytes:
        """The request body, read only when its declared length is within bounds."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RetrievalRequestError(
                "chunked bodies are not accepted; send a Content-Length header", HTTPStatus.LENGTH_REQUIRED
            )
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            raise RetrievalRequestError("send a Content-Length header", HTTPStatus.LENGTH_REQUIRED)
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise RetrievalRequestError(
                f"bad Content-Length {length_text[:40]!r}; send the body's size in bytes"
            )
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body must not be parsed as the next request
            if length <= MAX_DRAINED_BYTES:  # a client still sending then reads the 413, not EPIPE
                self._discard(length)
            raise RetrievalRequestError(
                f"the body has {length} bytes; the most is {MAX_BODY_BYTES} (split the queries into batches)",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise RetrievalRequestError(f"the body ended after {len(body)} of {length} bytes")
        return body

    def _discard(self, length: int) -> None:
        """Read and drop ``length`` body bytes, a chunk at a time, stopping early at end of stream."""
        while length > 0:
            chunk = self.rfile.read(min(length, DRAIN_CHUNK_BYTES))
            if not chunk:
                return
            length -= len(chunk)

    def _answer(self, handle: Callable[[], str]) -> None:
        """Run ``handle`` and send the JSON text it returns; a refusal is its status, anything else a 500."""
        try:
            status, text = HTTPStatus.OK, handle()
        except RetrievalRequestError as exc:
            status, text = exc.status, json.dumps({"error": str(exc)}, ensure_ascii=False)
        except Exception as exc:  # a bug must cost one request, not the server
            print(f"gather-envs serve-retrieval: internal error: {exc!r}", file=sys.stderr, flush=True)
            status, text = HTTPStatus.INTERNAL_SERVER_ERROR, json.dumps({"error": "internal server error"})
        self._send_json(status, text)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the base class finds (bad request line, long headers, unknown method) as JSON too."""
        self.close_connection = True
        self._server_timing = ""
        status = HTTPStatus(code)
        error = f"{message or status.phrase}; {explain or status.description}".rstrip("; ")
        self._send_json(status, json.dumps({"error": error}, ensure_ascii=False))

    def _send_json(self, status: HTTPStatus, text: str) -> None:
        """One JSON response; a client that hung up first just loses its answer."""
        body = text.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            if self._server_timing:
                self.send_header("Server-Timing", self._server_timing)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """No line per request: at thousands of queries a second the log would cost more than BM25."""


class _RetrievalHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that holds its :class:`Retriever`."""

    daemon_threads = True
    request_queue_size = 128  # connections waiting to be accepted (socketserver's default is 5)
    retriever: Retriever
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread when one of :data:`MAX_CONNECTIONS` is free, else close it."""
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line on stderr instead of socketserver's traceback; the server goes on."""
        error = sys.exc_info()[1]
        print(f"gather-envs serve-retrieval: connection from {client_address[0]}: {error!r}", file=sys.stderr)


class _RetrievalHTTPServer6(_RetrievalHTTPServer):
    """The same server on an IPv6 address."""

    address_family = socket.AF_INET6


def make_server(
    retriever: Retriever, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server for ``retriever``; port 0 picks a free port."""
    server_class = _RetrievalHTTPServer6 if ":" in host else _RetrievalHTTPServer
    server = server_class((host, port), _Handler)
    server.retriever = retriever
    server.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    return server


def server_url(server: ThreadingHTTPServer) -> str:
    """The ``/retrieve`` URL of a bound server, with the port it actually got."""
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in str(host) else str(host)
    return f"http://{host}:{port}{RETRIEVE_PATH}"
