"""A client for a retrieval server in Search-R1's protocol, so any retriever can serve an env's searches.

``POST /retrieve {"queries": [q], "topk": k, "return_scores": true}`` answers
``{"result": [[{"document": {"id", "contents", ...}, "score": s}, ...]]}`` (Search-R1's own e5/FAISS
and BM25 servers, ``gather-envs serve-retrieval``, verl's ``search_r1_like`` tool). Every call is
bounded: a total deadline per request (not a per-read timeout a slow server could renew byte by
byte), a cap on the answer's size, and a capped number of retries, on connection errors only. Any
failure is one :class:`~gather_envs.errors.RetrieverError` line naming the URL and what went wrong:
an infrastructure error, never the agent's fault.

The retriever's identity (:meth:`RemoteRetriever.identity`) is the URL's scheme and the index hash
its ``GET /health`` reports (``unknown`` when it reports none, as Search-R1's server, which has no
``/health``): records carry it, so readings over different retrievers are never mixed.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gather_envs.errors import ConfigError, RetrieverError

RETRIEVE_PATH = "/retrieve"
HEALTH_PATH = "/health"
SCHEMES = ("http", "https")
DEFAULT_TIMEOUT_S = 30.0
"""Longest wait for one request's whole answer (connect, send, headers and body together)."""
MAX_ANSWER_BYTES = 16 << 20
"""Largest answer read: ``topk`` 100 of 20 kB documents is 2 MB; more is a misbehaving server."""
CONNECT_RETRIES = 2
"""Retries of a request whose connection failed (refused, reset, a keep-alive the server closed)."""
RETRY_BACKOFF_S = 0.2
"""Wait before the first retry; doubled for each next one."""
READ_CHUNK_BYTES = 1 << 16
UNKNOWN_INDEX = "unknown"
"""The identity's hash part when ``/health`` names no index (or there is no ``/health``)."""
HEALTH_HASH_KEYS = ("index_hash", "hash", "corpus_hash")
"""Where a ``/health`` answer may name its index (also inside an ``"index"`` object), first wins."""
ANONYMOUS_ID_PREFIX = "remote:"
"""Id of a hit without one (Search-R1's BM25 path sends none): this plus its contents' sha256."""


@dataclass(frozen=True)
class RemoteHit:
    """One document a remote retriever returned: its id, Search-R1 ``contents`` and score."""

    doc_id: str
    contents: str
    score: float | None
    anonymous: bool = False
    """The server sent no id; ``doc_id`` is made from the contents and maps onto no corpus."""


class RemoteRetriever:
    """Searches one ``/retrieve`` URL; one keep-alive connection, used by one thread at a time."""

    def __init__(
        self,
        url: str,
        timeout_s: float | None = None,
        max_answer_bytes: int | None = None,
        retries: int | None = None,
    ) -> None:
        """None takes the module's defaults (:data:`DEFAULT_TIMEOUT_S` and friends) at this call."""
        if not isinstance(url, str):
            raise ConfigError(f"retriever= takes a URL string such as 'http://127.0.0.1:8000/retrieve', got {url!r}")
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ConfigError(
                f"retriever={url!r} is not an http(s) URL; pass e.g. 'http://127.0.0.1:8000/retrieve'"
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"retriever={url!r} has a bad port") from None
        self.url = url
        self.scheme = parts.scheme
        self._host, self._port = parts.hostname, port
        path = parts.path.rstrip("/") or RETRIEVE_PATH
        self._retrieve_path = path + (f"?{parts.query}" if parts.query else "")
        self._health_path = path.rsplit("/", 1)[0] + HEALTH_PATH
        self.timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        self.max_answer_bytes = MAX_ANSWER_BYTES if max_answer_bytes is None else max_answer_bytes
        self.retries = CONNECT_RETRIES if retries is None else retries
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._identity: str | None = None

    def identity(self) -> str:
        """``scheme:hash`` of the index behind the URL (``scheme:unknown`` without one); asked once."""
        if self._identity is None:
            status, body = self._request("GET", self._health_path, None)
            if status >= 500:
                raise RetrieverError(f"retriever {self.url}: GET {self._health_path} answered HTTP {status}")
            self._identity = f"{self.scheme}:{_index_hash(body) if status == 200 else UNKNOWN_INDEX}"
        return self._identity

    def search(self, query: str, topk: int) -> list[RemoteHit]:
        """The retriever's top ``topk`` hits for ``query``, best first (at most ``topk``)."""
        payload = json.dumps({"queries": [query], "topk": topk, "return_scores": True}).encode("utf-8")
        status, body = self._request("POST", self._retrieve_path, payload)
        if status != 200:
            raise RetrieverError(f"retriever {self.url}: HTTP {status}{_error_line(body)}")
        return self._hits(body)[:topk]

    def close(self) -> None:
        """Close the keep-alive connection (the next request opens another)."""
        with self._lock:
            self._drop()

    def _hits(self, body: bytes) -> list[RemoteHit]:
        """The one query's hits of an answer; RetrieverError naming what is malformed."""
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            raise RetrieverError(f"retriever {self.url}: the answer is not JSON ({len(body)} bytes)") from None
        result = answer.get("result") if isinstance(answer, dict) else None
        if not (isinstance(result, list) and len(result) == 1 and isinstance(result[0], list)):
            raise RetrieverError(
                f'retriever {self.url}: the answer has no "result" holding one list of hits for the one query'
            )
        hits = []
        for position, hit in enumerate(result[0]):
            document, score = (hit.get("document"), hit.get("score")) if _has_document(hit) else (hit, None)
            if not isinstance(document, dict):
                raise RetrieverError(f"retriever {self.url}: hit {position} is not a document object")
            contents = document.get("contents")
            if contents is None and isinstance(document.get("text"), str):
                contents = f'"{document.get("title", "")}"\n{document["text"]}'
            if not isinstance(contents, str):
                raise RetrieverError(f'retriever {self.url}: hit {position} has no "contents" string')
            if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
                raise RetrieverError(f'retriever {self.url}: hit {position} has a "score" that is not a number')
            doc_id = document.get("id")
            if isinstance(doc_id, bool) or not isinstance(doc_id, str | int | type(None)):
                raise RetrieverError(f'retriever {self.url}: hit {position} has an "id" that is not a string')
            if doc_id is None:
                digest = hashlib.sha256(contents.encode("utf-8")).hexdigest()[:16]
                hits.append(RemoteHit(ANONYMOUS_ID_PREFIX + digest, contents, score, anonymous=True))
            else:
                hits.append(RemoteHit(str(doc_id), contents, None if score is None else float(score)))
        return hits

    def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        """Status and body of one request, retrying connection failures; RetrieverError otherwise."""
        deadline = time.monotonic() + self.timeout_s
        with self._lock:
            for attempt in range(self.retries + 1):
                try:
                    return self._exchange(method, path, body, deadline)
                except ConnectionError as exc:  # refused, reset, or a keep-alive closed under us
                    self._drop()
                    wait = RETRY_BACKOFF_S * 2**attempt
                    if attempt == self.retries or time.monotonic() + wait >= deadline:
                        raise RetrieverError(
                            f"retriever {self.url}: cannot connect ({exc.__class__.__name__}: {exc or 'closed'}) "
                            f"after {attempt + 1} connection attempts; is the server running?"
                        ) from None
                    time.sleep(wait)
                except (TimeoutError, OSError, http.client.HTTPException) as exc:
                    self._drop()
                    if isinstance(exc, TimeoutError):
                        raise RetrieverError(
                            f"retriever {self.url}: no complete answer within {self.timeout_s:g} s"
                        ) from None
                    raise RetrieverError(f"retriever {self.url}: {exc.__class__.__name__}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, method: str, path: str, body: bytes | None, deadline: float) -> tuple[int, bytes]:
        """One request on the keep-alive connection, every read under the request's deadline."""
        connection = self._connection
        if connection is None:
            kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            connection = self._connection = kind(self._host, self._port, timeout=_left(deadline))
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.timeout = _left(deadline)
        _set_timeout(connection, deadline)
        connection.request(method, path, body=body, headers=headers)
        _set_timeout(connection, deadline)
        response = connection.getresponse()
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_answer_bytes:
            self._drop()
            raise RetrieverError(
                f"retriever {self.url}: the answer has {declared} bytes; the most read is {self.max_answer_bytes}"
            )
        parts: list[bytes] = []
        size = 0
        while True:
            _set_timeout(connection, deadline)
            chunk = response.read(READ_CHUNK_BYTES)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
            if size > self.max_answer_bytes:
                self._drop()
                raise RetrieverError(
                    f"retriever {self.url}: the answer passed {self.max_answer_bytes} bytes; the most read"
                )
        if response.will_close:
            self._drop()
        return response.status, b"".join(parts)

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _left(deadline: float) -> float:
    """Seconds left before ``deadline``; TimeoutError when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _set_timeout(connection: http.client.HTTPConnection, deadline: float) -> None:
    """Bound the next socket operation by what is left of the request's deadline."""
    if connection.sock is not None:
        connection.sock.settimeout(_left(deadline))


def _has_document(hit: Any) -> bool:
    return isinstance(hit, dict) and "document" in hit


def _index_hash(body: bytes) -> str:
    """The index hash a ``/health`` answer names (see :data:`HEALTH_HASH_KEYS`), with its split."""
    try:
        health = json.loads(body)
    except (ValueError, RecursionError):
        return UNKNOWN_INDEX
    if not isinstance(health, dict):
        return UNKNOWN_INDEX
    places = [health, health.get("index") if isinstance(health.get("index"), dict) else {}]
    for key in HEALTH_HASH_KEYS:
        for place in places:
            value = place.get(key)
            if isinstance(value, str) and value:
                split = health.get("split")
                return value + (f"@{split}" if isinstance(split, str) and split else "")
    return UNKNOWN_INDEX


def _error_line(body: bytes) -> str:
    """``: message`` from a JSON error answer (``{"error": ...}`` or FastAPI's ``detail``), else ""."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    message = data.get("error", data.get("detail")) if isinstance(data, dict) else None
    return f": {' '.join(str(message).split())[:200]}" if message else ""
