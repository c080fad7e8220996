"""A misbehaving Search-R1-protocol retriever in a thread: ``/health`` names no index, ``/retrieve`` as ``mode`` says."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANONYMOUS_ANSWER = b'{"result": [[{"document": {"contents": "\\"Far Isle\\"\\nIt is far away."}, "score": 2.5}]]}'
"""Search-R1's BM25 path: one passage without an id."""


class StubRetriever(BaseHTTPRequestHandler):
    """``mode`` (a class attribute, changeable while it serves): "500", "garbage", "shape",
    "anonymous", "slow" (headers, then a byte now and then) or "refuse" (the server goes away)."""

    protocol_version = "HTTP/1.1"
    mode = "500"

    def do_GET(self) -> None:
        self._send(200, b'{"status": "ok"}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        mode = type(self).mode
        if mode == "500":
            self._send(503, b'{"error": "index is reloading,\\n try later"}')
        elif mode == "garbage":
            self._send(200, b"<html>not json</html>")
        elif mode == "shape":
            self._send(200, b'{"result": [[{"document": {"id": "d1"}, "score": 1.0}]]}')
        elif mode == "anonymous":
            self._send(200, ANONYMOUS_ANSWER)
        elif mode == "slow":  # the headers at once, then a byte now and then: no deadline renewal
            self.send_response(200)
            self.send_header("Content-Length", "200")
            self.end_headers()
            for _ in range(200):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
        elif mode == "refuse":  # the server goes away: this connection drops, the next are refused
            stopper = threading.Thread(target=self.server.shutdown)
            stopper.start()
            stopper.join()
            self.server.server_close()
            self.close_connection = True

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def serve_stub(mode: str) -> tuple[ThreadingHTTPServer, str, type[StubRetriever]]:
    """A stub in ``mode`` on a free port: the server, its ``/retrieve`` URL and its handler class."""
    handler = type("Stub", (StubRetriever,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/retrieve", handler
