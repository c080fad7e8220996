"""Deadlines and a connection cap under uvicorn's HTTP/1.1 protocol, which has neither.

uvicorn (h11) only times out a keep-alive connection idle *after* an answer, and any byte a
client sends cancels that timer: a connection that sends nothing, or one byte a second, is held
for ever, and a few hundred of them starve every other client (slowloris). ASGI middleware cannot
help, since the app is called only once the headers are in. :class:`GuardedH11Protocol` is
uvicorn's own h11 protocol with each connection's phase tracked from h11's state, and
:class:`ConnectionGuard` (one per worker) sweeps the connections a few times a second:

* headers: from accept (or the previous answer) the whole request head must arrive within
  ``header_timeout_s``; a byte does not reset it. A connection that sent nothing is closed, one
  that sent part of a request gets a 408.
* body: from the end of the headers the whole body must arrive within ``body_timeout_s`` (408).
  A client that half-closes mid-body (a Content-Length longer than what it sent) gets a 400 at once.
* answer: bytes of an answer waiting in the server's buffer must all reach the kernel within
  ``send_timeout_s``, or the connection is aborted (a client that reads nothing holds the answer's
  memory that long); the next request's header clock starts once the answer is out.
* cap: at ``max_connections`` a new connection evicts the one that has waited longest for its
  headers (an idle or slow client); only if every held connection is mid-request is it refused
  with a 503.

Every refusal is a JSON ``{"error": ...}`` answer with ``Connection: close``, as the app's are.
"""

from __future__ import annotations

import asyncio
import enum
import json
from http import HTTPStatus
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from gather_envs.serving.limits import SWEEP_INTERVAL_S, ServiceLimits


class Phase(enum.Enum):
    """Where a connection is in its current request, as far as deadlines go."""

    HEADERS = "headers"  # waiting for (the rest of) a request head, idle keep-alive included
    BODY = "body"  # the head is in; the body is arriving
    ANSWER = "answer"  # the request is in; the app searches, then the answer is sent


def error_response(status: HTTPStatus, message: str) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response whose body is ``{"error": message}``."""
    body = json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        "content-type: application/json; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ConnectionGuard:
    """One worker's connections: admission at the cap and the deadlines' sweep."""

    def __init__(self, limits: ServiceLimits) -> None:
        self.limits = limits
        self.connections: dict[GuardedH11Protocol, None] = {}  # a dict keeps the admission order

    def admit(self, connection: GuardedH11Protocol) -> bool:
        """Hold ``connection``, evicting the longest-waiting one at the cap; False if none can go."""
        if len(self.connections) >= self.limits.max_connections:
            waiting = [c for c in self.connections if c.phase is Phase.HEADERS]
            if not waiting:
                return False
            oldest = min(waiting, key=lambda c: c.phase_since)
            oldest.expire_headers("the server dropped this slow request to admit a new connection")
            self.connections.pop(oldest, None)
        self.connections[connection] = None
        return True

    def release(self, connection: GuardedH11Protocol) -> None:
        """Forget a closed connection."""
        self.connections.pop(connection, None)

    def sweep(self, now: float) -> None:
        """Close or answer every connection past its phase's deadline."""
        for connection in list(self.connections):
            connection.check_deadlines(now)

    async def run(self) -> None:
        """Sweep a few times a second until cancelled (one task per worker's event loop)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.sweep(loop.time())


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the deadlines and cap of :attr:`guard` (see the module docstring)."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase = Phase.HEADERS
        self.phase_since = self.loop.time()
        self.head_bytes = 0  # bytes of the current request received while in Phase.HEADERS
        self.sending_since: float | None = None  # when the sweep first saw bytes waiting to be sent

    @classmethod
    def bound_to(cls, guard: ConnectionGuard) -> type[GuardedH11Protocol]:
        """A subclass whose connections ``guard`` holds (uvicorn's ``http`` option takes a class)."""
        return type("GuardedH11Protocol", (cls,), {"guard": guard})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter(Phase.HEADERS)
        if not self.guard.admit(self):
            self.refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"the server holds {self.guard.limits.max_connections} connections, all mid-request; retry",
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.HEADERS:
            self.head_bytes += len(data)
        super().data_received(data)
        self._follow_h11()

    def eof_received(self) -> bool | None:
        """A client that half-closes mid-request gets its 400 now; one whose request is in, its answer."""
        if self.phase is Phase.BODY:
            self.refuse(HTTPStatus.BAD_REQUEST, "the connection ended before the body's Content-Length bytes")
        elif self.phase is Phase.HEADERS and self.head_bytes:
            self.refuse(HTTPStatus.BAD_REQUEST, "the connection ended inside the request's headers")
        elif self.phase is Phase.ANSWER and self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # send the answer, then close
            return True  # keep the transport open for writing
        return None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_h11()

    def send_400_response(self, msg: str) -> None:
        """h11's refusals (bad request line, headers over 16 KiB, bad framing) as JSON too."""
        self.refuse(
            HTTPStatus.BAD_REQUEST,
            "malformed HTTP/1.1 request (request line, headers over 16 KiB, or framing); "
            "send a request line, headers and a Content-Length body",
        )

    def _follow_h11(self) -> None:
        """Move to the phase h11's view of the client's side implies; a new phase restarts the clock."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        phase = Phase.HEADERS if state is h11.IDLE else Phase.BODY if state is h11.SEND_BODY else Phase.ANSWER
        if phase is not self.phase:
            self._enter(phase)

    def _enter(self, phase: Phase) -> None:
        self.phase, self.phase_since, self.head_bytes = phase, self.loop.time(), 0

    def check_deadlines(self, now: float) -> None:
        """Act on this connection's deadline if it has passed (called by the guard's sweep)."""
        if self.transport.is_closing():
            return
        limits = self.guard.limits
        if self.transport.get_write_buffer_size():  # an answer is on its way out
            if self.sending_since is None:
                self.sending_since = now
            elif now - self.sending_since > limits.send_timeout_s:
                self.transport.abort()  # the client does not read its answer
                return
            if self.phase is Phase.HEADERS:
                self.phase_since = now  # the next request's clock starts once this answer is out
            return
        self.sending_since = None
        elapsed = now - self.phase_since
        if self.phase is Phase.HEADERS and elapsed > limits.header_timeout_s:
            self.expire_headers(f"the request's headers did not arrive within {limits.header_timeout_s:g} s")
        elif self.phase is Phase.BODY and elapsed > limits.body_timeout_s:
            self.refuse(
                HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive within {limits.body_timeout_s:g} s"
            )

    def expire_headers(self, reason: str) -> None:
        """Close a connection waiting for headers: silently when idle, with a 408 when mid-head."""
        if self.head_bytes:
            self.refuse(HTTPStatus.REQUEST_TIMEOUT, reason)
        else:
            self.transport.abort()

    def refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer ``status`` with a JSON error and close; abort instead if an answer already began."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            started = cycle.response_started
            cycle.disconnected = True  # the app's receive() now says http.disconnect, its send() is a no-op
            cycle.message_event.set()
            if started:
                self.transport.abort()
                return
        if not self.transport.is_closing():
            self.transport.write(error_response(status, message))
            self.transport.close()
