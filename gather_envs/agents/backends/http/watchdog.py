"""One thread per process that cuts every HTTP attempt still running at its total deadline.

Socket timeouts bound each read only, so a server trickling one byte at a time would never time
out; a ``threading.Timer`` per attempt did the job but started a thread per request. Cancelled
alarms stay in the heap until they reach its top (or a compaction), so arming and disarming cost a
heap push and a flag.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from typing import Protocol

COMPACT_AT = 1024  # cancelled alarms kept in the heap before it is rebuilt


class Cuttable(Protocol):
    """Something an alarm can cut: a connection whose blocked reads and writes end at ``cut()``."""

    def cut(self) -> None: ...


class Alarm:
    """One armed deadline: what to cut, and whether it was cut."""

    __slots__ = ("target", "fired")

    def __init__(self, target: Cuttable) -> None:
        self.target: Cuttable | None = target
        self.fired = False


class Watchdog:
    """Cuts each armed target at its deadline unless it is disarmed first (see the module docstring)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Alarm]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._pid = 0

    def arm(self, deadline: float, target: Cuttable) -> Alarm:
        """Cut ``target`` at ``deadline`` (``time.monotonic`` seconds) unless disarmed first."""
        alarm = Alarm(target)
        with self._cond:
            if self._pid != os.getpid():  # first use, or a forked child: the thread is not ours
                self._pid = os.getpid()
                self._heap, self._cancelled = [], 0
                threading.Thread(target=self._run, name="gather-http-watchdog", daemon=True).start()
            heapq.heappush(self._heap, (deadline, next(self._order), alarm))
            if self._heap[0][2] is alarm:
                self._cond.notify()
        return alarm

    def disarm(self, alarm: Alarm) -> bool:
        """Cancel ``alarm``; True if it had already fired (the attempt ran out of time)."""
        with self._cond:
            if alarm.fired:
                return True
            alarm.target = None
            self._cancelled += 1
            if self._cancelled > COMPACT_AT and 2 * self._cancelled > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2].target is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0
            return False

    def _run(self) -> None:
        pid = os.getpid()
        with self._cond:
            while self._pid == pid:
                heap = self._heap
                while heap and heap[0][2].target is None:
                    heapq.heappop(heap)
                    self._cancelled -= 1
                if not heap:
                    self._cond.wait()
                    continue
                wait = heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                alarm = heapq.heappop(heap)[2]
                alarm.fired = True
                if alarm.target is not None:
                    alarm.target.cut()
                alarm.target = None


WATCHDOG = Watchdog()
"""The process's one watchdog, shared by every endpoint of every backend."""
