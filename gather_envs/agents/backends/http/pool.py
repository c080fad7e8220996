"""Endpoints of one model and the routing of episodes among them.

An episode's first call goes to the endpoint with the fewest requests outstanding (ties: the
fewest episodes so far) and every later call to the same one, so the server's prefix cache holds
the conversation. An endpoint that failed (see ``Retryable.endpoint_down``) leaves the rotation;
after ``probe_after_s`` the next new episode probes it with its real request, one probe at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from gather_envs.agents.backends.http.transport import Transport, public_url

UP, DOWN, UNSENT = "up", "down", "unsent"
"""How an attempt ended for its endpoint: it answered, it failed, or nothing was sent."""


class Endpoint:
    """One server URL: its transport, at most ``max_connections`` requests in flight, the requests
    outstanding on it, and whether it is in the rotation."""

    def __init__(self, url: str, transport: Transport, max_connections: int, position: int) -> None:
        self.url = url
        self.public_url = public_url(url)
        self.transport = transport
        self.position = position
        self.slots = threading.BoundedSemaphore(max_connections)
        self.outstanding = 0
        self.sessions = 0  # sessions ever routed here: among equally busy endpoints, the fewest wins
        self.down_until: float | None = None
        """None while in the rotation; else when (``time.monotonic``) a probe request may go."""
        self.prober: Route | None = None
        """The route whose request probes the endpoint while it is out of the rotation."""


class Route:
    """One episode's endpoint: chosen at its first attempt, kept until that endpoint leaves the rotation."""

    __slots__ = ("endpoint",)

    def __init__(self) -> None:
        self.endpoint: Endpoint | None = None


class EndpointPool:
    """The endpoints of a backend, which attempt goes where, and which are in the rotation."""

    def __init__(
        self,
        urls: Sequence[str],
        make_transport: Callable[[str], Transport],
        max_connections: int,
        probe_after_s: float,
    ) -> None:
        self.endpoints = [
            Endpoint(url, make_transport(url), max_connections, i) for i, url in enumerate(urls)
        ]
        self.probe_after_s = probe_after_s
        self.failovers = 0
        self._lock = threading.Lock()

    def describe(self) -> str:
        """The public URLs, comma-separated (for messages)."""
        return ",".join(endpoint.public_url for endpoint in self.endpoints)

    def states(self) -> list[dict[str, Any]]:
        """Each endpoint's public URL, requests outstanding and whether it is in the rotation."""
        with self._lock:
            return [
                {"url": e.public_url, "outstanding": e.outstanding, "up": e.down_until is None}
                for e in self.endpoints
            ]

    def route(self, route: Route) -> Endpoint:
        """The endpoint for the route's next attempt, counted as outstanding.

        A route keeps its endpoint while it is in the rotation. Otherwise: an endpoint due for a
        probe (out of the rotation for ``probe_after_s``, no probe in flight, not the one the
        route just failed on) takes it, so a restarted server comes back; else the endpoint in
        the rotation with the fewest requests outstanding (ties: the fewest sessions so far); else
        (all are out) the one that left the rotation first.
        """
        with self._lock:
            endpoint = route.endpoint
            if endpoint is None or endpoint.down_until is not None and endpoint.prober is not route:
                now = time.monotonic()
                up = [e for e in self.endpoints if e.down_until is None]
                due = [
                    e
                    for e in self.endpoints
                    if e.down_until is not None
                    and e.prober is None
                    and e.down_until <= now
                    and e is not endpoint
                ]
                if due:
                    endpoint = due[0]
                    endpoint.prober = route
                elif up:
                    endpoint = min(up, key=lambda e: (e.outstanding, e.sessions, e.position))
                else:
                    endpoint = min(self.endpoints, key=lambda e: (e.down_until or 0.0, e.position))
                if route.endpoint is not None and route.endpoint is not endpoint:
                    self.failovers += 1
                route.endpoint = endpoint
                endpoint.sessions += 1
            endpoint.outstanding += 1
            return endpoint

    def settle(self, route: Route, endpoint: Endpoint, outcome: str) -> bool:
        """Book the end of an attempt on ``endpoint`` (UP, DOWN or UNSENT); after a DOWN, True if
        another endpoint is in the rotation to take the next attempt at once."""
        with self._lock:
            endpoint.outstanding -= 1
            if endpoint.prober is route:
                endpoint.prober = None
            if outcome == UP:
                endpoint.down_until = None
            if outcome != DOWN:
                return False
            endpoint.down_until = time.monotonic() + self.probe_after_s
            others = any(e.down_until is None for e in self.endpoints)
        endpoint.transport.close_idle()
        return others
