"""A `gather-envs serve-retrieval` child process, a small HTTP client to it, and its memory from /proc."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gather_envs

PACKAGE_ROOT = Path(gather_envs.__file__).resolve().parent.parent  # the checkout, or the installed wheel
READY_PATTERN = re.compile(r"^serving (http://\S+)")
STOP_TIMEOUT_S = 30


class Server:
    """A `gather-envs serve-retrieval` child process and a keep-alive HTTP client to it."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
        command = [sys.executable, "-m", "gather_envs.cli", "serve-retrieval", "--port", "0", *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the server prints its URL once it is ready
        match = READY_PATTERN.match(line)
        if match is None:
            self.process.kill()
            raise AssertionError(f"no ready line: {line!r}; stderr: {self.process.communicate()[1]}")
        self.url = match.group(1)
        parts = urlsplit(self.url)
        self.host, self.port, self.path = str(parts.hostname), int(parts.port or 0), parts.path
        self.idle_rss = 0
        """The server's RSS once it is up and idle, for a test to compare with (set by that test)."""

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """Status and decoded JSON body of one request on a fresh connection."""
        status, data = self.request_raw(method, path, body, headers)
        return status, json.loads(data)

    def request_raw(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Status and body bytes of one request on a fresh connection."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def retrieve(self, payload: Any) -> tuple[int, Any]:
        return self.request(
            "POST", self.path, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )

    def connect(self) -> socket.socket:
        """A raw TCP connection to the server."""
        return socket.create_connection((self.host, self.port), timeout=60)

    def pids(self) -> list[int]:
        """The server process and its workers (children found in /proc)."""
        return [self.process.pid, *children(self.process.pid)]

    def rss_bytes(self) -> int:
        """Resident memory of the server and its workers together, from /proc."""
        return sum(rss_bytes(pid) for pid in self.pids())

    def stop(self) -> None:
        """SIGTERM, as a supervisor would; SIGKILL if it does not end in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate(timeout=STOP_TIMEOUT_S)


def children(pid: int) -> list[int]:
    """Ids of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def rss_bytes(pid: int) -> int:
    """A process's resident memory (VmRSS), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
