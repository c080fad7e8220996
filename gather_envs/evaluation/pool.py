"""The local pool: daemon threads that play queued cells and hand back finished (cell, record) pairs.

Daemon threads rather than a ``ThreadPoolExecutor``, whose workers are joined at interpreter exit:
after Ctrl-C an in-flight LLM call would otherwise keep the process alive.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence

from gather_envs.evaluation.player import Abandoned
from gather_envs.records import EpisodeRecord
from gather_envs.runs import Cell

POLL_INTERVAL_S = 0.1
"""How often the main thread wakes while waiting, so Ctrl-C is handled promptly."""


class Workers:
    """Daemon threads that play queued cells and hand back (cell, record) pairs."""

    _DONE = None

    def __init__(
        self,
        size: int,
        play: Callable[[Cell], EpisodeRecord],
        keys: Sequence[Cell],
        stop: threading.Event,
    ) -> None:
        self.stop = stop
        self._play = play
        self._remaining = len(keys)
        self._jobs: queue.Queue[Cell | None] = queue.Queue()
        self._results: queue.Queue[tuple[Cell, EpisodeRecord | None, BaseException | None]] = (
            queue.Queue()
        )
        for key in keys:
            self._jobs.put(key)
        self._threads = [
            threading.Thread(target=self._loop, name=f"gather-eval-{i}", daemon=True)
            for i in range(min(size, len(keys)))
        ]
        for _ in self._threads:
            self._jobs.put(self._DONE)
        for thread in self._threads:
            thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            key = self._jobs.get()
            if key is None:
                return
            try:
                record = self._play(key)
            except Abandoned:
                return
            except BaseException as exc:  # handed to the main thread, which re-raises it
                self._results.put((key, None, exc))
                return
            self._results.put((key, record, None))

    def results(self) -> Iterator[tuple[Cell, EpisodeRecord]]:
        """Finished cells as they come; re-raises a worker's unexpected exception."""
        while self._remaining:
            try:
                key, record, error = self._results.get(timeout=POLL_INTERVAL_S)
            except queue.Empty:
                continue
            if error is not None:
                self.stop.set()
                raise error
            assert record is not None
            self._remaining -= 1
            yield key, record

    def drain(self) -> Iterator[tuple[Cell, EpisodeRecord]]:
        """Finished cells already handed back, without waiting (used when stopping early)."""
        while True:
            try:
                key, record, _ = self._results.get_nowait()
            except queue.Empty:
                return
            if record is not None:
                yield key, record

    def join(self) -> None:
        """Wait for the threads after a complete run (they have all exited or are about to)."""
        for thread in self._threads:
            thread.join()
