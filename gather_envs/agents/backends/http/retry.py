"""What is tried again, where, and after how long: the retry loop of one request over an endpoint pool.

Connection errors, timeouts, HTTP 429 and 5xx, and any answer that is not a completion are retried
with exponential backoff and jitter drawn from a seeded generator (``Retry-After`` is honoured,
capped); a failure that leaves the endpoint out of the rotation is retried at once on another
endpoint when one is in it. One request spends at most ``request_budget_s`` over all its attempts
and sleeps. A failure that survives the retries raises :class:`~gather_envs.errors.BackendError`;
other 4xx answers and redirects are refused at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from gather_envs.agents.backends.http.errors import BudgetSpent, Retryable
from gather_envs.agents.backends.http.pool import DOWN, UNSENT, UP, Endpoint, EndpointPool, Route
from gather_envs.errors import BackendError

JITTER = 0.5  # each delay is scaled by a uniform factor in [1 - JITTER, 1 + JITTER]
MAX_ERROR_BODY = 300  # characters of a server's error body quoted in messages
HTTP_OK = 200
HTTP_REDIRECT = 300
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500

T = TypeVar("T")
Scrub = Callable[[str], str]


def snippet(raw: bytes | str, scrub: Scrub) -> str:
    """The start of a server's answer, safe to quote in an error message."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return scrub(text[:MAX_ERROR_BODY])


def retry_after(value: str | None) -> float | None:
    """The seconds of a ``Retry-After`` header, or None (absent, or an HTTP date)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def check_status(status: int, headers: Mapping[str, str], body: bytes, scrub: Scrub) -> None:
    """Return for 200; raise Retryable for 429 and 5xx, BackendError for any other status."""
    if status == HTTP_OK:
        return
    if status == HTTP_TOO_MANY_REQUESTS or status >= HTTP_SERVER_ERROR:
        raise Retryable(
            f"HTTP {status}: {snippet(body, scrub)!r}",
            retry_after(headers.get("retry-after")),
            endpoint_down=status >= HTTP_SERVER_ERROR,
        )
    if HTTP_REDIRECT <= status < HTTP_REDIRECT + 100:
        raise BackendError(
            f"the server redirected the request (HTTP {status}); pass the final URL as base_url"
        )
    raise BackendError(f"the server refused the request with HTTP {status}: {snippet(body, scrub)!r}")


class RetryPolicy:
    """The deadline of an attempt, retries, backoff and the request budget of one backend, with its counters (all threads)."""

    def __init__(
        self,
        timeout_s: float,
        max_retries: int,
        request_budget_s: float,
        backoff_s: float,
        max_backoff_s: float,
        seed: int,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.request_budget_s = request_budget_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.totals = {"requests": 0, "attempts": 0, "retries": 0}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with seeded jitter, at least the server's Retry-After, capped."""
        with self._lock:
            factor = 1.0 + JITTER * (2.0 * self._rng.random() - 1.0)
        delay = self.backoff_s * (2.0**attempt) * factor
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_backoff_s)

    def counts(self) -> dict[str, int]:
        """Requests, attempts and retries so far."""
        with self._lock:
            return dict(self.totals)

    def run(
        self,
        pool: EndpointPool,
        route: Route,
        attempt: Callable[[Endpoint, float], T],
        what: str,
        scrub: Scrub,
    ) -> T:
        """``attempt(endpoint, budget_end)`` until it returns, within the retries and the budget.

        ``what`` names the request (``POST /chat/completions``) in the BackendError that ends a
        request whose every attempt failed; ``scrub`` cleans each failure quoted there.
        """
        failures: list[str] = []
        budget_end = time.monotonic() + self.request_budget_s
        several = len(pool.endpoints) > 1
        attempts = 0
        for number in range(self.max_retries + 1):
            with self._lock:  # one acquisition per attempt: 256 threads contend for it
                self.totals["requests"] += number == 0
                self.totals["attempts"] += 1
                self.totals["retries"] += number > 0
            endpoint = pool.route(route)
            attempts += 1
            where = f" ({endpoint.public_url})" if several else ""
            try:
                result = attempt(endpoint, budget_end)
            except Retryable as error:
                failure = error
            except BudgetSpent:
                pool.settle(route, endpoint, UNSENT)
                failures.append(f"attempt {number + 1}{where}: the request budget was spent waiting")
                break
            except BackendError:  # the server answered, with a refusal
                pool.settle(route, endpoint, UP)
                raise
            except BaseException:
                pool.settle(route, endpoint, UNSENT)
                raise
            else:
                pool.settle(route, endpoint, UP)
                return result
            elsewhere = pool.settle(route, endpoint, DOWN if failure.endpoint_down else UP)
            failures.append(f"attempt {number + 1}{where}: {scrub(str(failure))}")
            if number == self.max_retries:
                break
            if elsewhere:
                continue  # another endpoint is in the rotation: no reason to wait
            delay = self.delay(number, failure.retry_after)
            if time.monotonic() + delay >= budget_end:
                failures.append(f"no time left for attempt {number + 2} in the request budget")
                break
            time.sleep(delay)
        method, _, path = what.partition(" ")
        target = f"{pool.describe()}{path}" if not several else f"{path} on {pool.describe()}"
        raise BackendError(
            f"{method} {target} failed after {attempts} attempt(s) "
            f"(timeout_s={self.timeout_s:g}, request_budget_s={self.request_budget_s:g}): "
            + "; ".join(failures)
        )
