"""Micro-batching: the runner's worker threads each call ``chat``; a local model answers them in batches.

:class:`MicroBatcher` wraps a :class:`~gather_envs.agents.backends.base.BatchChatBackend` as a
plain ChatBackend. The runner keeps playing one episode per worker thread (``--concurrency N``),
with the same records and the same resume; each ``chat`` call waits until the batcher sends the
waiting calls to the model as one ``chat_batch`` and then returns its own result or raises its own
error. A batch is sent as soon as

* every live caller is waiting (a caller is live from its first call until its thread ends or it
  has not called again for ``idle_s`` after its last reply), or no caller is live any more, or
* ``max_batch`` calls are waiting, or
* ``max_wait_s`` has passed since the first waiting call arrived (or since the last batch ended,
  whichever is later: callers coming back from that batch get the same window). At the start of a
  run no caller is known yet, so the first batch waits this long for the others' first calls.

With every caller live and quick between calls, each batch holds one call per in-flight episode:
the episodes advance in lockstep. One batch runs at a time (the model is one), and calls that
arrive while it runs form the next. The caller whose arrival completes a batch runs it in its own
thread, so the batcher has no thread of its own to start or stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gather_envs.agents.backends.base import BatchChatBackend, ChatBackend, ChatResult, Message, Sampling
from gather_envs.errors import BackendError

DEFAULT_MAX_BATCH = 64
"""Most calls in one batch (more in-flight episodes wait for the next)."""
DEFAULT_MAX_WAIT_S = 0.1
"""Longest a waiting call holds the batch open for a caller that has not come back (or, at the start,
not come) yet. An env step between two calls takes about a millisecond; a batch of a local model, seconds."""
DEFAULT_IDLE_S = 1.0
"""A thread that has not called again this long after its last reply no longer holds batches open."""



def chat_alone(backend: BatchChatBackend, messages: Sequence[Message], sampling: Sampling) -> ChatResult:
    """``chat`` as a batch of one: a backend that decodes batches itself answers single calls so."""
    (result,) = backend.chat_batch([(messages, sampling)])
    if isinstance(result, BaseException):
        raise result
    return result

@dataclass
class _Call:
    """One waiting ``chat`` call: its request, its thread, and (once answered) its result or error."""

    messages: Sequence[Message]
    sampling: Sampling
    thread: threading.Thread
    arrived: float
    result: ChatResult | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _State:
    """What the batcher's condition guards: waiting calls, known callers, whether a batch runs."""

    pending: list[_Call] = field(default_factory=list)
    replied: dict[threading.Thread, float] = field(default_factory=dict)  # caller -> its last reply
    running: bool = False
    last_batch_end: float = 0.0


class MicroBatcher:
    """A ChatBackend that gathers concurrent ``chat`` calls into ``chat_batch`` calls of ``backend``.

    ``settings()``, ``count_tokens``, ``context_tokens`` and ``supports_tools`` are the wrapped
    backend's, so records and resume do not depend on batching.
    """

    def __init__(
        self,
        backend: BatchChatBackend,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        idle_s: float = DEFAULT_IDLE_S,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0 or idle_s < 0:
            raise ValueError(
                f"need max_batch >= 1, max_wait_s >= 0, idle_s >= 0 (got {max_batch}, {max_wait_s}, {idle_s})"
            )
        self.backend = backend
        self.supports_tools = backend.supports_tools
        self.context_tokens = backend.context_tokens
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.idle_s = float(idle_s)
        self.batch_sizes: list[int] = []
        """The size of every batch sent, in order (for benchmarks and tests)."""
        self._state = _State()
        self._cond = threading.Condition()

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """The wrapped backend's count (not batched: it does not touch the model)."""
        return self.backend.count_tokens(messages)

    def settings(self) -> dict[str, Any]:
        """The wrapped backend's settings: batching changes no record."""
        return self.backend.settings()

    def chat(self, messages: Sequence[Message], sampling: Sampling) -> ChatResult:
        """This call's completion, computed in a batch with the other threads' waiting calls."""
        call = _Call(messages, sampling, threading.current_thread(), time.monotonic())
        state = self._state
        with self._cond:
            state.pending.append(call)
            while not call.done:
                timeout = self._until_ready()
                if timeout == 0:
                    self._run_batch()
                else:
                    self._cond.wait(timeout)
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def _until_ready(self) -> float | None:
        """0 when a batch should go now, else how long to wait for one (None: until notified)."""
        state = self._state
        if state.running or not state.pending:
            return None
        if len(state.pending) >= self.max_batch:
            return 0
        now = time.monotonic()
        waiting = {call.thread for call in state.pending}
        for thread, replied in list(state.replied.items()):
            if not thread.is_alive() or now - replied > self.idle_s:
                del state.replied[thread]  # gone, or no longer playing: it holds no batch open
        if state.replied and all(thread in waiting for thread in state.replied):
            return 0
        if not state.replied and now - state.last_batch_end <= self.idle_s:
            return 0  # every other caller is gone: nobody to wait for
        opened = max(state.pending[0].arrived, state.last_batch_end)
        return max(0.0, opened + self.max_wait_s - now)

    def _run_batch(self) -> None:
        """Send the waiting calls (up to max_batch) as one chat_batch; called holding the condition."""
        state = self._state
        batch, state.pending = state.pending[: self.max_batch], state.pending[self.max_batch :]
        state.running = True
        self.batch_sizes.append(len(batch))
        self._cond.release()
        try:
            results: list[Any] = []
            error: BaseException | None = None
            try:
                results = list(self.backend.chat_batch([(call.messages, call.sampling) for call in batch]))
                if len(results) != len(batch):
                    error = RuntimeError(
                        f"chat_batch returned {len(results)} results for {len(batch)} requests"
                    )
            except (
                BaseException
            ) as exc:  # every call of the batch fails with it (the runner retries a BackendError)
                error = exc
        finally:
            self._cond.acquire()
        now = time.monotonic()
        for i, call in enumerate(batch):
            outcome = results[i] if error is None else None
            if isinstance(outcome, ChatResult):
                call.result = outcome
            elif isinstance(outcome, BaseException):
                call.error = outcome
            else:
                call.error = error or BackendError(
                    f"chat_batch returned {type(outcome).__name__}, not a ChatResult"
                )
            call.done = True
            state.replied[call.thread] = now
        state.running = False
        state.last_batch_end = now
        self._cond.notify_all()


def micro_batched(backend: ChatBackend) -> ChatBackend:
    """``backend`` behind a :class:`MicroBatcher` when it offers ``chat_batch``, else ``backend`` itself."""
    if isinstance(backend, BatchChatBackend) and not isinstance(backend, MicroBatcher):
        return MicroBatcher(backend)
    return backend
