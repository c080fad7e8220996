"""How an HTTP attempt fails, as the transport, the protocol parser and the retry loop tell each other."""

from __future__ import annotations


class Retryable(Exception):
    """A failed attempt worth retrying; ``retry_after`` is the server's hint in seconds.

    ``endpoint_down`` marks a failure of the endpoint itself (no connection, the connection
    dropped, the deadline passed, a 5xx answer): the endpoint leaves the rotation and the next
    attempt goes to another one without waiting.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, *, endpoint_down: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.endpoint_down = endpoint_down


class BudgetSpent(Exception):
    """The request budget ran out before the attempt could be sent (waiting for a connection)."""


def timed_out(deadline_s: float) -> Retryable:
    """The failure of an attempt that passed its total deadline."""
    return Retryable(f"timed out after {deadline_s:g} s (deadline for the whole answer)", endpoint_down=True)
