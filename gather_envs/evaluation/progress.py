"""Progress of a run: a tqdm bar with ETA and the running success rate, or plain stderr lines."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from gather_envs.optional import optional
from gather_envs.records import EpisodeRecord

PROGRESS_INTERVAL_S = 2.0
"""Seconds between lines of the plain progress printer (used when tqdm is not installed)."""


def _tqdm_class() -> Any:
    """tqdm's progress bar class, or None when tqdm is not installed (it is optional)."""
    tqdm = optional("tqdm")
    return None if tqdm is None else tqdm.tqdm


class Progress:
    """A progress bar with ETA and the running success rate: tqdm when installed, else stderr lines."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.done = self.successes = self.infra = 0
        self.started = time.monotonic()
        self._last_line = 0.0
        bar = _tqdm_class()
        self._bar = (
            bar(total=total, desc=label, unit="ep", file=self.stream, dynamic_ncols=True) if bar else None
        )

    @property
    def success_rate(self) -> float:
        """Successes over finished episodes, infrastructure errors excluded."""
        played = self.done - self.infra
        return self.successes / played if played else 0.0

    def update(self, record: EpisodeRecord) -> None:
        self.done += 1
        self.infra += int(record.is_infra_error)
        self.successes += int(record.success and not record.is_infra_error)
        if self._bar is not None:
            self._bar.set_postfix(success=f"{self.success_rate:.3f}", infra=self.infra, refresh=False)
            self._bar.update(1)
            return
        now = time.monotonic()
        if now - self._last_line >= PROGRESS_INTERVAL_S or self.done == self.total:
            self._last_line = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float | None = None) -> str:
        """The plain progress line: done/total, success rate, infra errors, elapsed and ETA."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        share = self.done / self.total if self.total else 1.0
        return (
            f"{self.label}: {self.done}/{self.total} episodes ({share:.1%}), success "
            f"{self.success_rate:.3f}, infra errors {self.infra}, elapsed {_clock(elapsed)}, ETA {_clock(eta)}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN: no estimate yet
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
