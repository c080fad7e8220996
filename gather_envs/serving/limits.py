"""The retrieval service's bounds on time, connections and memory, in one frozen record.

Every bound an attacker could otherwise stretch has a number here: how long a client may take to
send its headers and its body (deadlines from the start, never reset by a byte), how long it may
take to read an answer, how many connections one worker holds, and how many bytes of request
bodies and answers one worker keeps in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from gather_envs.errors import ConfigError

DEFAULT_HEADER_TIMEOUT_S = 10.0
"""From a connection's accept (or its previous answer) to the end of the next request's headers."""
DEFAULT_BODY_TIMEOUT_S = 20.0
"""From the end of a request's headers to the end of its body (1 MiB takes 8 s at 1 Mbit/s)."""
DEFAULT_SEND_TIMEOUT_S = 60.0
"""From an answer's first byte to its last one handed to the kernel: a client that reads no answer
holds its memory this long at most."""
DEFAULT_KEEP_ALIVE_S = 5.0
"""An idle keep-alive connection is closed after this long (uvicorn's default)."""
DEFAULT_MAX_CONNECTIONS = 4096
"""Connections one worker holds; at the cap a new one evicts the connection that has waited
longest for its request's headers (idle or slow), and only when every held one is mid-request is
the new one refused with a 503."""
DEFAULT_MAX_INFLIGHT_BYTES = 256 << 20
"""Request-body bytes received plus answer bytes reserved, summed over one worker's requests in
flight; a request that would pass it is refused with a 503 (retry later)."""
DEFAULT_SEARCH_THREADS = 4
"""Threads per worker that run searches, off the event loop; the index keeps scratch per thread."""
MAX_WORKERS = 64
"""Most worker processes one service forks."""
SWEEP_INTERVAL_S = 0.25
"""How often a worker checks its connections' deadlines (so a deadline is late by at most this)."""


@dataclass(frozen=True)
class ServiceLimits:
    """The bounds one worker process enforces (each worker holds its own connections and bytes)."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    search_threads: int = DEFAULT_SEARCH_THREADS

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "body_timeout_s", "send_timeout_s", "keep_alive_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
                raise ConfigError(f"{name} must be a number of seconds in (0, 1e6), got {value!r}")
        for name in ("max_connections", "max_inflight_bytes", "search_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
