"""The retrieval service as a plain ASGI app: ``POST /retrieve`` and ``GET /health``, JSON both ways.

The protocol (fields, checks, answers) is :class:`~gather_envs.serving.retrieval_server.Retriever`'s;
this module is the HTTP around it, bounded before any work: a body is read only when its
``Content-Length`` is within :data:`MAX_BODY_BYTES` (a chunked body, or none, is a 411), the
answer's largest size is checked before the search, and the bytes of bodies and answers a worker
holds at once are capped by a :class:`ByteBudget` (a request past it is a 503 to retry). The
searches run on a few threads so the event loop keeps serving other connections. Every error is
``{"error": "one line saying what to fix"}`` with its 4xx status (503 when busy, 500 for a bug).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

from gather_envs.serving.limits import ServiceLimits
from gather_envs.serving.retrieval_server import (
    HEALTH_PATH,
    MAX_BODY_BYTES,
    RETRIEVE_PATH,
    SERVER_TIMING_NAME,
    RetrievalRequestError,
    Retriever,
    decode_body,
    parse_request,
)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_DRAINED_BYTES = 16 << 20
"""A body over :data:`MAX_BODY_BYTES` but under this is read and dropped before its 413, so a
client still sending reads the 413 rather than a reset; a larger one is refused from its header."""
MAX_HEAD_BYTES = 16 << 10
"""Largest request head (target and headers); h11 bounds only a head still incomplete, and one
read of the socket can bring a whole head of up to 256 KiB."""
MAX_CONTENT_LENGTH_DIGITS = 19
"""Longest ``Content-Length`` converted to an int (h11 already refuses non-digits)."""
SEND_CHUNK_BYTES = 1 << 16
"""An answer is sent in pieces of this size: uvicorn waits for its buffer to drain before each
piece, so the answer's budget is held until all but the last piece reached the kernel."""
RETRY_AFTER_S = 1
"""``Retry-After`` of a 503 (the worker's byte budget is spent for now)."""
JSON_TYPE = (b"content-type", b"application/json; charset=utf-8")
CLOSE = (b"connection", b"close")


class ByteBudget:
    """Bytes one worker holds for requests in flight; taken and given on its one event loop."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.used = capacity, 0

    def take(self, size: int) -> None:
        """Hold ``size`` more bytes, or refuse the request with a 503 when they do not fit."""
        if self.used + size > self.capacity:
            raise RetrievalRequestError(
                f"the server holds {self.used} of its {self.capacity} bytes for requests in flight; "
                f"retry in {RETRY_AFTER_S} s",
                HTTPStatus.SERVICE_UNAVAILABLE,
            )
        self.used += size

    def give(self, size: int) -> None:
        """Return ``size`` bytes taken before."""
        self.used -= size


class Disconnected(Exception):
    """The client went away (or a deadline dropped it) before its request was in."""


class Refusal(RetrievalRequestError):
    """A refusal after which the connection closes (its body, if any, was not read)."""


class RetrievalApp:
    """ASGI app answering Search-R1's ``/retrieve`` and ``/health`` from one :class:`Retriever`."""

    def __init__(self, retriever: Retriever, limits: ServiceLimits) -> None:
        self.retriever = retriever
        self.limits = limits
        self.budget = ByteBudget(limits.max_inflight_bytes)
        self._executor: ThreadPoolExecutor | None = None  # made in the worker, after any fork

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; nothing else is served
            return
        held = [0]  # bytes this request holds in the budget, given back once it is answered
        headers: list[tuple[bytes, bytes]] = []
        try:
            status, text, headers = HTTPStatus.OK, *await self._route(scope, receive, held)
        except Disconnected:
            self.budget.give(held[0])
            return
        except RetrievalRequestError as exc:
            status, text = exc.status, json.dumps({"error": str(exc)}, ensure_ascii=False)
            if isinstance(exc, Refusal):
                headers = [CLOSE]
            if status is HTTPStatus.SERVICE_UNAVAILABLE:
                headers = [*headers, (b"retry-after", str(RETRY_AFTER_S).encode())]
        except Exception as exc:  # a bug must cost one request, not the worker
            print(f"gather-envs serve-retrieval: internal error: {exc!r}", file=sys.stderr, flush=True)
            status, text = HTTPStatus.INTERNAL_SERVER_ERROR, json.dumps({"error": "internal server error"})
        body = text.encode("utf-8")
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": status.value,
                    "headers": [JSON_TYPE, (b"content-length", str(len(body)).encode()), *headers],
                }
            )
            view = memoryview(body)
            for start in range(0, max(1, len(body)), SEND_CHUNK_BYTES):
                end = start + SEND_CHUNK_BYTES
                await send(
                    {
                        "type": "http.response.body",
                        "body": bytes(view[start:end]),
                        "more_body": end < len(body),
                    }
                )
        finally:
            self.budget.give(held[0])

    async def _route(
        self, scope: dict[str, Any], receive: Receive, held: list[int]
    ) -> tuple[str, list[tuple[bytes, bytes]]]:
        """The answer's JSON text and extra headers for one request; raises to refuse it."""
        method, path = scope["method"], scope["path"]
        head = (
            len(scope["raw_path"])
            + len(scope["query_string"])
            + sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        )
        if head > MAX_HEAD_BYTES:
            raise Refusal(
                f"the request's target and headers have {head} bytes; the most is {MAX_HEAD_BYTES}",
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            )
        if method in ("GET", "HEAD"):
            if path == HEALTH_PATH:
                return json.dumps(self.retriever.health(), ensure_ascii=False), []
            if path == RETRIEVE_PATH:
                raise RetrievalRequestError(
                    f"{RETRIEVE_PATH} takes POST with a JSON body", HTTPStatus.METHOD_NOT_ALLOWED
                )
            raise RetrievalRequestError(
                f"no such path {path!r}; POST to {RETRIEVE_PATH} or GET {HEALTH_PATH}", HTTPStatus.NOT_FOUND
            )
        if method != "POST":
            raise Refusal(
                f"method {method[:20]!r} is not served; POST to {RETRIEVE_PATH} or GET {HEALTH_PATH}",
                HTTPStatus.NOT_IMPLEMENTED,
            )
        if path != RETRIEVE_PATH:
            raise Refusal(f"no such path {path!r}; POST to {RETRIEVE_PATH}", HTTPStatus.NOT_FOUND)
        body = await self._body(dict(scope["headers"]), receive, held)
        queries, topk, return_scores = parse_request(decode_body(body), self.retriever.default_topk)
        worst = self.retriever.check_answer_size(len(queries), topk)
        self.budget.take(worst)  # the answer's bytes are held before any search
        held[0] += worst
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(
            self._searchers(), self.retriever.answer, queries, topk, return_scores
        )
        return answer.text, [
            (b"server-timing", f"{SERVER_TIMING_NAME};dur={1e3 * answer.bm25_seconds:.3f}".encode())
        ]

    async def _body(self, headers: dict[bytes, bytes], receive: Receive, held: list[int]) -> bytes:
        """The request body, read only when its declared length is within bounds."""
        if b"transfer-encoding" in headers:
            raise Refusal(
                "chunked bodies are not accepted; send a Content-Length header", HTTPStatus.LENGTH_REQUIRED
            )
        length_text = headers.get(b"content-length")
        if length_text is None:
            raise Refusal("send a Content-Length header", HTTPStatus.LENGTH_REQUIRED)
        if len(length_text) > MAX_CONTENT_LENGTH_DIGITS or not length_text.isdigit():
            raise Refusal(
                f"Content-Length has {len(length_text)} characters; the most is {MAX_BODY_BYTES} bytes",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            if length <= MAX_DRAINED_BYTES:  # a client still sending then reads the 413, not a reset
                await self._discard(receive)
            raise Refusal(
                f"the body has {length} bytes; the most is {MAX_BODY_BYTES} (split the queries into batches)",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            chunk = message.get("body", b"")
            self.budget.take(len(chunk))
            held[0] += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _discard(receive: Receive) -> None:
        """Read and drop a body (its length is bounded by the caller; the guard bounds its time)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            if not message.get("more_body", False):
                return

    def _searchers(self) -> ThreadPoolExecutor:
        """The worker's search threads, made on first use (so none exists before a fork)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.limits.search_threads, thread_name_prefix="bm25")
        return self._executor
