"""Keep-alive HTTP/1.1 over ``socket`` and ``ssl``: one request out in one ``sendall``, one answer in.

The client's own, kept because no maintained client comes near it under the runner's threads
(``benchmarks/bench_llm_throughput.py --clients ours httpx aiohttp openai``, 256 in flight, one
endpoint, 200 ms latency, medians of 6 back-to-back runs on 2 shared cores): ours 67% of the
ideal at 0.85 ms of runner CPU per call, aiohttp 53% at 1.15 ms, the openai SDK 17% at 4.4 ms,
httpx 9% at 8.4 ms; none holds 80% (ours does on a quiet machine; table in docs/agents.md).
``http.client`` parsed each answer's headers with the ``email`` package, 0.2-0.3 ms of CPU per
call with 64 threads (measured). It reads
``Content-Length``, chunked and read-to-close bodies and skips ``1xx`` answers; anything else that
is not HTTP is a failed attempt. Every attempt has a total deadline, enforced by the
:mod:`~gather_envs.agents.backends.http.watchdog`.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from typing import NamedTuple, Protocol

from gather_envs.agents.backends.http.errors import Retryable, timed_out
from gather_envs.agents.backends.http.watchdog import WATCHDOG

MIN_TIMEOUT_S = 0.001  # a socket timeout of 0 would make it non-blocking
STALE_ERRORS = (BrokenPipeError, ConnectionResetError)
"""How a request on a keep-alive connection the server has since closed fails (or no answer at all)."""
LOCAL_LIMIT_ERRNOS = (errno.EMFILE, errno.ENFILE)
"""Out of file descriptors: a failure here, which must not take the endpoint out of the rotation."""
MAX_HEAD_BYTES = 64 * 1024  # status line and headers of an answer
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a larger answer is not a chat completion
READ_CHUNK_BYTES = 64 * 1024
HTTP_CONTINUE = 100
NO_BODY_STATUSES = (204, 304)
DEFAULT_PORTS = {"http": 80, "https": 443}


class Answer(NamedTuple):
    """An HTTP answer: its status, its headers (lower-case names) and its body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one request to one endpoint and returns the whole answer within a total deadline.

    Failures to connect, to send or to read a whole HTTP answer in time raise
    :class:`~gather_envs.agents.backends.http.errors.Retryable`.
    """

    def exchange(self, method: str, path: str, body: bytes | None, deadline_s: float) -> Answer: ...

    def close_idle(self) -> None:
        """Close the kept-alive connections not in use (the endpoint left the rotation)."""
        ...


def public_url(url: str) -> str:
    """``url`` without credentials or query string (safe to record or print).

    >>> public_url("http://user:pw@host:8000/v1?key=x")
    'http://host:8000/v1'
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def connection_failure(error: Exception, deadline_s: float) -> Retryable:
    """The retryable failure for an OSError (or a malformed answer, ValueError) of one attempt."""
    if isinstance(error, TimeoutError):
        return timed_out(deadline_s)
    if isinstance(error, OSError) and error.errno in LOCAL_LIMIT_ERRNOS:  # our limit, not the server's
        return Retryable(
            f"connection failed: {error.strerror} in this process; lower --concurrency or "
            "max_connections, or raise the limit (ulimit -n)"
        )
    return Retryable(
        f"connection failed: {type(error).__name__}: {error}", endpoint_down=not isinstance(error, ValueError)
    )


class _Stale(Exception):
    """A pooled keep-alive connection the server had closed: the request goes on a fresh one."""


class SocketTransport:
    """Keep-alive connections to one endpoint, reused newest first (figures in the module docstring)."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or ""
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        self.prefix = parts.path
        self.query = parts.query
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.head = f"\r\nHost: {parts.netloc}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.idle: list[_Connection] = []

    def exchange(self, method: str, path: str, body: bytes | None, deadline_s: float) -> Answer:
        """One HTTP exchange within ``deadline_s`` in all; failures are Retryable.

        It reuses an idle keep-alive connection when there is one (a server that closed it
        meanwhile costs one silent retry on a fresh connection), else connects.
        """
        deadline = time.monotonic() + deadline_s
        request = self._request_bytes(method, path, body)
        connection = self._take_idle()
        if connection is not None:
            try:
                return self._exchange(connection, request, deadline, deadline_s, True)
            except _Stale:
                pass
        try:
            connection = self._connect(max(deadline - time.monotonic(), MIN_TIMEOUT_S))
        except OSError as error:
            raise connection_failure(error, deadline_s) from None
        return self._exchange(connection, request, deadline, deadline_s, False)

    def close_idle(self) -> None:
        while (connection := self._take_idle()) is not None:
            connection.close()

    def _take_idle(self) -> _Connection | None:
        try:
            return self.idle.pop()  # newest first: the least likely to have been closed by the server
        except IndexError:
            return None

    def _connect(self, timeout: float) -> _Connection:
        """A new connection (TLS for https); OSError (TimeoutError included) when it fails."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def _request_bytes(self, method: str, path: str, body: bytes | None) -> bytes:
        """The whole request, head and body, to go out in one ``sendall``."""
        target = self.prefix + path + (f"?{self.query}" if self.query else "")
        head = f"{method} {target} HTTP/1.1{self.head}"
        if body is None:
            return (head + "\r\n").encode("latin-1")
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body

    def _exchange(
        self, connection: _Connection, request: bytes, deadline: float, deadline_s: float, reused: bool
    ) -> Answer:
        """Request and whole answer on an open ``connection``, cut by the watchdog at ``deadline``."""
        left = deadline - time.monotonic()
        if left <= 0:
            connection.close()
            raise timed_out(deadline_s)
        connection.sock.settimeout(left)
        alarm = WATCHDOG.arm(deadline, connection)
        connection.answered = False
        try:
            connection.sock.sendall(request)
            answer, reusable = connection.answer()
        except (OSError, ValueError) as error:
            expired = WATCHDOG.disarm(alarm)
            connection.close()
            if reused and not expired and not connection.answered and isinstance(error, STALE_ERRORS):
                raise _Stale from None
            if expired:
                raise timed_out(deadline_s) from None
            raise connection_failure(error, deadline_s) from None
        except Retryable:
            expired = WATCHDOG.disarm(alarm)
            connection.close()
            if reused and not expired and not connection.answered:
                raise _Stale from None  # closed before a byte of an answer: it was idle too long
            if expired:
                raise timed_out(deadline_s) from None
            raise
        if WATCHDOG.disarm(alarm):
            connection.close()
            raise timed_out(deadline_s)
        if reusable:
            self.idle.append(connection)
        else:
            connection.close()
        return answer


class _Connection:
    """One keep-alive HTTP/1.1 connection and the bytes read past the last answer."""

    __slots__ = ("sock", "buffer", "answered")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.answered = False  # a byte of an answer came on this connection during this exchange

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def cut(self) -> None:
        """Shut the socket (the attempt passed its deadline), which ends any blocked read or write."""
        with contextlib.suppress(OSError):  # already closed
            self.sock.shutdown(socket.SHUT_RDWR)

    def answer(self) -> tuple[Answer, bool]:
        """The answer, and whether the connection can be reused."""
        while True:
            status, version, headers = self._head()
            if not HTTP_CONTINUE <= status < HTTP_CONTINUE + 100:
                break
        keep = headers.get("connection", "").lower()
        reusable = keep != "close" if version == "HTTP/1.1" else keep == "keep-alive"
        if status in NO_BODY_STATUSES:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise ValueError(f"Content-Length {headers['content-length']!r} is not a number") from None
            body = self._exactly(length)
        else:
            body, reusable = self._to_close(), False
        return Answer(status, headers, body), reusable

    def _recv(self) -> bytes:
        chunk = self.sock.recv(READ_CHUNK_BYTES)
        if chunk:
            self.answered = True
        return chunk

    def _line(self, marker: bytes, limit: int, what: str) -> bytes:
        """Bytes up to ``marker`` (dropped); Retryable when the server hangs up first."""
        buffer = self.buffer
        start = 0
        while (end := buffer.find(marker, start)) < 0:
            if len(buffer) > limit:
                raise ValueError(f"the answer's {what} is longer than {limit} bytes")
            start = max(0, len(buffer) - len(marker) + 1)
            chunk = self._recv()
            if not chunk:
                closed = (
                    "before answering" if not buffer and not self.answered else f"in the middle of the {what}"
                )
                raise Retryable(
                    f"connection failed: the server closed the connection {closed}", endpoint_down=True
                )
            buffer += chunk
        self.buffer = buffer[end + len(marker) :]
        return buffer[:end]

    def _head(self) -> tuple[int, str, dict[str, str]]:
        head = self._line(b"\r\n\r\n", MAX_HEAD_BYTES, "headers").decode("latin-1")
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/") or not code.isdigit():
            raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(code), version, headers

    def _exactly(self, length: int) -> bytes:
        if length > MAX_RESPONSE_BYTES:
            raise Retryable(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
        parts = [self.buffer[:length]]
        size = len(parts[0])
        self.buffer = self.buffer[length:]
        while size < length:
            chunk = self._recv()
            if not chunk:
                raise Retryable(f"the answer was cut short: {size} of {length} bytes")
            parts.append(chunk[: length - size])
            self.buffer = chunk[length - size :]
            size += len(parts[-1])
        return b"".join(parts)

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self._line(b"\r\n", MAX_HEAD_BYTES, "chunk sizes")
            try:
                length = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise ValueError(f"bad chunk size {line[:40]!r} in a chunked answer") from None
            if length == 0:
                while self._line(b"\r\n", MAX_HEAD_BYTES, "trailers"):
                    pass
                return b"".join(parts)
            size += length
            if size > MAX_RESPONSE_BYTES:
                raise Retryable(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
            parts.append(self._exactly(length))
            if self._line(b"\r\n", MAX_HEAD_BYTES, "chunk sizes"):
                raise ValueError("a chunk of a chunked answer is longer than its size")

    def _to_close(self) -> bytes:
        parts = [self.buffer]
        size = len(self.buffer)
        self.buffer = b""
        while chunk := self._recv():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise Retryable(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
            parts.append(chunk)
        return b"".join(parts)
