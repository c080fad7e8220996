"""A loopback OpenAI-compatible chat server for tests and benchmarks: scripted replies, fixed latency.

Reply ``i`` of a conversation (``i`` = the assistant messages already in the request) is
``script[i]`` (the last entry repeats), after ``latency_s``; so the replies do not depend on
which server, connection or thread answers, and an episode can move between servers. It speaks
HTTP/1.1 with keep-alive on asyncio, so one thread serves thousands of connections, and counts
what the tests assert on: requests, requests in flight at once, and which conversations it saw.

``hold_until`` holds every request until that many are in flight at once (or ``hold_s`` passes),
once: a test can then check that a client really keeps that many in flight, without a timing
assumption. ``logprobs: true`` in a request gets OpenAI-format logprobs, one entry per 4
characters of the reply, with ``top_logprobs`` alternatives.

Run as a process (``python tests/loopback_openai.py --script 'A' 'B' --latency-s 0.2``): it
prints ``PORT <n>`` on stdout once it listens; ``GET /stats`` returns its counters as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BACKLOG = 4096  # the default of 100 drops SYNs when hundreds of clients connect at once
TOKEN_CHARS = 4
DEFAULT_HOLD_S = 60.0
START_TIMEOUT_S = 30.0


def conversation_hash(messages: Sequence[Any]) -> str:
    """A short hash of a list of chat messages (the server's record of a conversation prefix)."""
    return hashlib.sha256(json.dumps(list(messages), sort_keys=True).encode()).hexdigest()[:16]


class LoopbackServer:
    """The server's state and its asyncio handlers; :meth:`serve` runs it in the current thread."""

    def __init__(
        self,
        script: Sequence[str],
        latency_s: float = 0.0,
        hold_until: int = 0,
        hold_s: float = DEFAULT_HOLD_S,
        port: int = 0,
    ) -> None:
        self.script = list(script) or ["answer[x]"]
        self.latency_s = latency_s
        self.hold_until = hold_until
        self.hold_s = hold_s
        self.port = port
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.max_connections = 0
        self.accepted = 0
        self.seen: set[str] = set()
        """Hashes of every conversation a request carried (see :func:`conversation_hash`)."""
        self.parents_missing = 0
        """Requests whose conversation minus its last two messages this server had not seen."""
        self._gate: asyncio.Event | None = None
        self.ready = threading.Event()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "connections": self.connections,
            "max_connections": self.max_connections,
            "accepted": self.accepted,
            "parents_missing": self.parents_missing,
        }

    async def _start(self) -> asyncio.Server:
        self._gate = asyncio.Event()
        if not self.hold_until:
            self._gate.set()
        server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, backlog=BACKLOG)
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        return server

    def serve(self, started: threading.Event | None = None) -> None:
        """Serve until the process ends (or the loop is stopped)."""

        async def run() -> None:
            server = await self._start()
            if started is not None:
                started.set()
            async with server:
                await server.serve_forever()

        asyncio.run(run())

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.connections += 1
        self.max_connections = max(self.max_connections, self.connections)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", 0))
                body = await reader.readexactly(length) if length else b""
                answer = await self._answer(method, path, body)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                    + answer
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away (or sent garbage): drop the connection
        finally:
            self.connections -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, method: str, path: str, body: bytes) -> bytes:
        if path.endswith("/stats"):
            return json.dumps(self.stats()).encode()
        if path.endswith("/models"):
            return json.dumps({"object": "list", "data": [{"id": "loopback"}]}).encode()
        request = json.loads(body) if body else {}
        messages = request.get("messages", [])
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if len(messages) > 2 and conversation_hash(messages[:-2]) not in self.seen:
                self.parents_missing += 1
            self.seen.add(conversation_hash(messages))
            assert self._gate is not None
            if not self._gate.is_set():
                if self.in_flight >= self.hold_until:
                    self._gate.set()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._gate.wait(), self.hold_s)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        turn = sum(1 for message in messages if message.get("role") == "assistant")
        text = self.script[min(turn, len(self.script) - 1)]
        return json.dumps(completion(text, request)).encode()


def completion(text: str, request: dict[str, Any]) -> dict[str, Any]:
    """A chat completion of ``text``, with logprobs when the request asks for them."""
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
    }
    if request.get("logprobs"):
        top = int(request.get("top_logprobs") or 0)
        pieces = [text[i : i + TOKEN_CHARS] for i in range(0, len(text), TOKEN_CHARS)]
        choice["logprobs"] = {
            "content": [
                {
                    "token": piece,
                    "logprob": -0.125 * (1 + i % 5),
                    "top_logprobs": [{"token": f"{piece}~{r}", "logprob": -1.0 - r} for r in range(top)],
                }
                for i, piece in enumerate(pieces)
            ]
        }
    return {
        "id": "loopback",
        "object": "chat.completion",
        "model": request.get("model", "loopback"),
        "choices": [choice],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


@contextlib.contextmanager
def serve_in_thread(script: Sequence[str], **options: Any) -> Iterator[LoopbackServer]:
    """A LoopbackServer on a daemon thread of this process (it dies with the process)."""
    server = LoopbackServer(script, **options)
    started = threading.Event()
    threading.Thread(target=server.serve, args=(started,), daemon=True).start()
    if not started.wait(START_TIMEOUT_S):
        raise RuntimeError("the loopback server did not start")
    yield server


class ServerProcess:
    """A LoopbackServer in its own process: SIGKILL-able, its CPU time apart from the client's."""

    def __init__(
        self, script: Sequence[str], latency_s: float = 0.0, port: int = 0, hold_until: int = 0
    ) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--latency-s", str(latency_s)]
        command += ["--port", str(port), "--hold-until", str(hold_until), "--script", *script]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"the loopback server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(self.url + "/stats", timeout=START_TIMEOUT_S) as answer:
            return json.loads(answer.read())

    def kill(self) -> None:
        """SIGKILL: in-flight requests are cut, new connections refused."""
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.kill()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", nargs="+", required=True, help="reply i of each conversation")
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hold-until", type=int, default=0)
    args = parser.parse_args(argv)
    server = LoopbackServer(args.script, args.latency_s, args.hold_until, port=args.port)

    def announce() -> None:
        server.ready.wait()
        print(f"PORT {server.port}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve()


if __name__ == "__main__":
    main()
