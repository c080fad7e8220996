"""The Ray engine of :func:`~gather_envs.evaluation.evaluate`: the same grid, played by Ray actors.

``evaluate(..., engine="ray")`` (``gather-envs eval ... --engine ray``) keeps every rule of the
local runner (grid, episode seeds, resume of exactly the missing (task, T, i), infrastructure
errors retried then recorded, the run lock, the progress line, Ctrl-C) and changes only who plays
the episodes:

* **Workers.** ``workers`` Ray actors, each a process holding its own agent (built from the agent
  spec inside the actor, so an in-process model loads on that node and an endpoint list works
  unchanged) and, per thread, its own env. Each actor runs ``concurrency`` episodes at once
  (``max_concurrency`` threads), so N workers keep N × concurrency episodes in flight.
* **Corpus.** Each actor builds its env from the env id and kwargs, i.e. from the node's installed
  package files (or the path a kwarg names); nothing about the corpus travels with a task. The
  corpus and its BM25 index are shared by the threads of one actor, so one worker per node loads
  them once per node.
* **Backpressure.** The driver hands out one (task, T, i) at a time and keeps at most
  ``concurrency`` cells in flight per actor; the rest wait in the driver's queue.
* **One writer.** Actors return records; the driver alone appends them to the records file (the
  same crash-safe writer as the local runner) before counting them done. Its Ray calls and writes
  run in a thread of their own, so Ctrl-C in the main thread never cuts a write short.
* **Lost workers.** A cell whose actor dies (SIGKILL, OOM, a lost node) goes back to the front of
  the queue and is played again by any live actor; Ray restarts the actor up to
  ``MAX_WORKER_RESTARTS`` times. Only cells the driver received are written, so none is recorded
  twice. A driver killed mid-run leaves a records file that the next run resumes.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

import gymnasium as gym

from gather_envs.errors import ConfigError, GatherError
from gather_envs.evaluation.agent_spec import AgentSpec, resolve_agent
from gather_envs.evaluation.player import Player, PlayerSettings, scrubbed
from gather_envs.evaluation.pool import POLL_INTERVAL_S
from gather_envs.optional import require
from gather_envs.records import EpisodeRecord
from gather_envs.runs import Cell, RecordWriter, canonical_json

MAX_WORKER_RESTARTS = 4
"""Times Ray restarts a dead worker actor before the run stops using it."""
MAX_LOST_ATTEMPTS = 3
"""A cell whose worker died this many times under it stops the run (it likely kills workers)."""
RESTART_WAIT_S = 120.0
"""How long a cell may keep meeting a restarting worker (ActorUnavailableError) before the run stops."""
RESTART_POLL_S = 0.1
"""Pause before handing a cell back out after its worker was found restarting."""
WORKER_CPUS = 1.0
"""CPUs each worker actor reserves (pass ``ray_actor_options`` to ask for GPUs or other resources)."""
_RESOURCE_OF_OPTION = {"num_cpus": "CPU", "num_gpus": "GPU"}
"""Ray actor options and the cluster resource each one reserves."""
TARGET_CALL_S = 0.02
"""Seconds of episodes per actor call: Ray costs ~1-2 ms per call on a loaded 2-core machine
(benchmarks/bench_ray.py), so sub-millisecond episodes go in chunks; slow (LLM) ones go alone."""
MAX_CHUNK = 64
EPISODE_TIME_WEIGHT = 0.2
"""Weight of the newest episode in the running mean of episode seconds that sizes chunks."""
WORKER_START_NOTE_S = 30.0
"""After this long waiting for workers to start, say so once (the cluster may lack resources)."""
LOCAL_DASHBOARD = False
"""A local instance started by the runner has no dashboard (it costs a process and a port)."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or a MissingExtraError saying how to install it."""
    return require("ray", "ray", what="engine 'ray'")


@dataclass(frozen=True)
class WorkerSettings:
    """What a Ray worker needs to build its agent and player (sent to every actor)."""

    player: PlayerSettings
    agent: AgentSpec
    agent_options: dict[str, Any]


class _EpisodeWorker:
    """A Ray actor's state: an agent built from its spec and a player with one env per thread."""

    def __init__(self, settings: WorkerSettings) -> None:
        self._error: BaseException | None = None
        self._player: Player | None = None
        shared = settings.player
        run = shared.run
        try:
            env = gym.make(shared.env_id, **shared.env_kwargs)
            try:
                agent_obj = resolve_agent(settings.agent, env, settings.agent_options)
                unwrapped: Any = env.unwrapped
                tasks = {task.task_id: task for task in unwrapped.tasks}
            finally:
                env.close()
            settings_json = canonical_json(agent_obj.settings())
            if agent_obj.agent_id != run.agent_id or settings_json != canonical_json(run.agent_settings):
                raise ConfigError(
                    f"the agent built in a Ray worker is {agent_obj.agent_id!r} with settings "
                    f"{settings_json}, but the driver's is {run.agent_id!r} with "
                    f"{canonical_json(run.agent_settings)}; make the agent's settings independent of the process"
                )
            self._player = Player(shared, agent_obj, tasks, None, threading.Event())
        except Exception as exc:  # reported by ready(), so the driver raises it with its own type
            self._error = exc

    def ready(self) -> BaseException | None:
        """None once the worker can play, or the error its construction raised."""
        return self._error

    def play(self, keys: Sequence[tuple[str, int, int]]) -> list[EpisodeRecord]:
        """The finished records of a chunk of cells, infrastructure errors retried as locally."""
        assert self._player is not None, "play() on a worker that failed to start"
        return [self._player.play(Cell(*key)) for key in keys]


class RayEngine:
    """Ray for one run: connects (or starts a local instance), starts the workers, stops them after."""

    def __init__(
        self,
        address: str | None,
        workers: int | None,
        concurrency: int,
        actor_options: Mapping[str, Any] | None = None,
    ) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"workers must be an int >= 1, got {workers!r}")
        if address is not None and (not isinstance(address, str) or not address):
            raise ConfigError(
                f"ray_address must be a non-empty str such as 'auto' or 'HOST:6379', got {address!r}"
            )
        self.address = address
        self.workers = workers
        self.concurrency = concurrency
        self.actor_options = {"num_cpus": WORKER_CPUS, **dict(actor_options or {})}
        self.ray = import_ray()
        self._started = False
        self._actors: list[Any] = []

    def __enter__(self) -> RayEngine:
        ray = self.ray
        if not ray.is_initialized():
            if self.address is None:
                ray.init(include_dashboard=LOCAL_DASHBOARD)
            else:
                try:
                    ray.init(address=self.address)
                except (ConnectionError, ValueError) as exc:
                    raise ConfigError(
                        f"cannot join the Ray cluster at {self.address!r}: {exc}; start it with "
                        "`ray start --head` or pass the head's HOST:6379"
                    ) from None
            self._started = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for actor in self._actors:
            self.ray.kill(actor, no_restart=True)
        self._actors = []
        if self._started:
            self.ray.shutdown()
            self._started = False

    def worker_count(self) -> int:
        """``workers``, or one per alive node of the cluster."""
        if self.workers is not None:
            return self.workers
        return max(1, sum(1 for node in self.ray.nodes() if node.get("Alive")))

    def _check_fits(self, count: int) -> None:
        """ConfigError when ``count`` workers need more CPUs or GPUs than the cluster has in all.

        Ray would otherwise leave the extra actors pending forever.
        """
        total = self.ray.cluster_resources()
        for option, resource in _RESOURCE_OF_OPTION.items():
            need = count * float(self.actor_options.get(option) or 0)
            if need > total.get(resource, 0.0):
                raise ConfigError(
                    f"{count} Ray workers need {need:g} {resource} ({option}="
                    f"{self.actor_options.get(option)} each) but the cluster has "
                    f"{total.get(resource, 0.0):g}; pass fewer --workers, add nodes, or lower "
                    f"ray_actor_options[{option!r}]"
                )

    def start_workers(self, count: int, settings: WorkerSettings, stop: threading.Event) -> list[Any]:
        """``count`` started actors built from ``settings``.

        Returns early, with the actors not yet started, once ``stop`` is set.
        """
        self._check_fits(count)
        actor_class = self.ray.remote(_EpisodeWorker).options(
            max_restarts=MAX_WORKER_RESTARTS,
            max_task_retries=0,
            max_concurrency=self.concurrency,
            **self.actor_options,
        )
        self._actors = [actor_class.remote(settings) for _ in range(count)]
        pending = {actor.ready.remote() for actor in self._actors}
        started = time.monotonic()
        noted = False
        while pending and not stop.is_set():
            ready, _ = self.ray.wait(list(pending), num_returns=len(pending), timeout=POLL_INTERVAL_S)
            for ref in ready:
                pending.discard(ref)
                error = self.ray.get(ref)
                if error is not None:
                    raise error
            if pending and not noted and time.monotonic() - started > WORKER_START_NOTE_S:
                noted = True
                print(
                    f"waiting for {len(pending)} of {count} Ray workers to start; each reserves "
                    f"{self.actor_options}: add nodes or pass fewer --workers",
                    file=sys.stderr,
                )
        return self._actors


class RayWorkers:
    """The Ray twin of the runner's thread pool: finished (cell, record) pairs, written by the driver."""

    def __init__(
        self,
        engine: RayEngine,
        settings: WorkerSettings,
        concurrency: int,
        keys: Sequence[Cell],
        writer: RecordWriter | None,
    ) -> None:
        self._engine = engine
        self._ray = engine.ray
        self._settings = settings
        self._actors: list[Any] = []
        self._alive: list[bool] = []
        self._load: list[int] = []
        self._concurrency = concurrency
        self._queue: deque[Cell] = deque(keys)
        self._in_flight: dict[Any, tuple[list[Cell], int]] = {}
        self._lost: dict[Cell, int] = {}
        self._waiting_since: dict[Cell, float] = {}
        self._episode_s: float | None = None
        self._stop = threading.Event()
        self._results: queue.Queue[
            tuple[tuple[Cell, EpisodeRecord] | None, BaseException | None] | None
        ] = queue.Queue()
        # Ray calls and writes run in this thread, so Ctrl-C (raised in the main thread) never
        # interrupts a write: every record handed back is whole on disk, and counted.
        self._thread = threading.Thread(target=self._drive, name="gather-eval-ray", daemon=True)
        self._writer = writer
        self._secrets = settings.player.secrets

    def _start(self) -> None:
        """Start the workers (in the driver thread, so Ctrl-C while they start is an interrupt)."""
        count = min(self._engine.worker_count(), len(self._queue))
        self._actors = self._engine.start_workers(count, self._settings, self._stop)
        self._alive = [True] * count
        self._load = [0] * count

    def _chunk(self) -> int:
        """Cells per call: about TARGET_CALL_S of episodes, but never so many that a slot idles."""
        if self._episode_s is None:
            return 1
        wanted = int(TARGET_CALL_S / max(self._episode_s, TARGET_CALL_S / MAX_CHUNK))
        slots = sum(self._alive) * self._concurrency
        return max(1, min(wanted, -(-len(self._queue) // max(slots, 1))))

    def _submit(self) -> None:
        """Hand queued cells to live workers, round robin, up to ``concurrency`` calls each."""
        while self._queue:
            placed = False
            for index, actor in enumerate(self._actors):
                if not self._queue:
                    break
                if self._alive[index] and self._load[index] < self._concurrency:
                    keys = [self._queue.popleft() for _ in range(min(self._chunk(), len(self._queue)))]
                    ref = actor.play.remote([tuple(key) for key in keys])
                    self._in_flight[ref] = (keys, index)
                    self._load[index] += 1
                    placed = True
            if not placed:
                return

    def _collect(self, refs: Sequence[Any]) -> Iterator[tuple[Cell, EpisodeRecord]]:
        """The records of finished calls, written in one go; cells of dead workers go back to the queue."""
        ray = self._ray
        finished: list[tuple[Cell, EpisodeRecord]] = []
        lost: list[tuple[list[Cell], int, BaseException]] = []
        for ref in refs:
            keys, index = self._in_flight.pop(ref)
            self._load[index] -= 1
            try:
                played: list[EpisodeRecord] = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                lost.append((keys, index, exc))
                continue
            finished.extend(zip(keys, (scrubbed(record, self._secrets) for record in played)))
        if self._writer is not None:
            self._writer.write_many(record for _, record in finished)  # one fsync for all of them
        for keys, index, exc in lost:  # after writing: a requeue may stop the run
            self._requeue(keys, index, exc)
        for _, record in finished:
            seconds, mean = record.wall_time, self._episode_s
            self._episode_s = seconds if mean is None else mean + EPISODE_TIME_WEIGHT * (seconds - mean)
        yield from finished

    def _requeue(self, keys: list[Cell], index: int, error: BaseException) -> None:
        """Put a lost call's cells back first; only a worker that died under a cell counts against it.

        A call sent while Ray restarts a killed worker fails at once with ActorUnavailableError.
        That says nothing about the cell, so it is retried after a short pause (within
        RESTART_WAIT_S); counting it made a slow restart on a loaded machine look like a cell
        that kills its worker.
        """
        if isinstance(error, self._ray.exceptions.ActorUnavailableError):
            now = time.monotonic()
            for key in keys:
                if now - self._waiting_since.setdefault(key, now) > RESTART_WAIT_S:
                    raise GatherError(
                        f"episode {tuple(key)} found its Ray worker restarting for over "
                        f"{RESTART_WAIT_S:.0f} s; check the cluster, then rerun the same command to resume"
                    )
            self._queue.extendleft(reversed(keys))
            print(
                f"note: Ray worker {index} is restarting ({type(error).__name__}); its {len(keys)} "
                "episode(s) go back to the queue",
                file=sys.stderr,
            )
            time.sleep(RESTART_POLL_S)
            return
        for key in keys:
            lost = self._lost.get(key, 0) + 1
            self._lost[key] = lost
            if lost >= MAX_LOST_ATTEMPTS:
                raise GatherError(
                    f"episode {tuple(key)} lost its Ray worker {lost} times (last: {type(error).__name__}); "
                    "it likely crashes the worker: run it locally (--engine local) to see the error"
                )
        if isinstance(error, self._ray.exceptions.ActorDiedError):
            self._alive[index] = False  # restarts exhausted or the node is gone
        self._queue.extendleft(reversed(keys))
        print(
            f"note: Ray worker {index} was lost ({type(error).__name__}); its {len(keys)} in-flight "
            "episode(s) go back to the queue",
            file=sys.stderr,
        )

    def _drive(self) -> None:
        """The driver thread: start workers, hand out cells, write and hand back what returns."""
        ray = self._ray
        try:
            self._start()
            while (self._queue or self._in_flight) and not self._stop.is_set():
                self._submit()
                if not self._in_flight:
                    raise GatherError(
                        f"every Ray worker died; {len(self._queue)} episodes are left: rerun the same "
                        "command to resume"
                    )
                refs = list(self._in_flight)
                ready, rest = ray.wait(refs, num_returns=1, timeout=POLL_INTERVAL_S)
                if ready and rest:
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready = ready + more
                for pair in self._collect(ready):
                    self._results.put((pair, None))
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self._results.put((None, exc))
        finally:
            self._results.put(None)

    def results(self) -> Iterator[tuple[Cell, EpisodeRecord]]:
        """Finished cells as they come, each on disk first; re-raises the driver thread's error."""
        self._thread.start()
        while True:
            try:
                item = self._results.get(timeout=POLL_INTERVAL_S)
            except queue.Empty:
                continue
            if item is None:
                return
            pair, error = item
            if error is not None:
                raise error
            assert pair is not None
            yield pair

    def drain(self) -> Iterator[tuple[Cell, EpisodeRecord]]:
        """Stop handing out cells; the cells written so far (used when stopping early)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        while True:
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                return
            if item is not None and item[0] is not None:
                yield item[0]

    def join(self) -> None:
        """Wait for the driver thread after a complete run (it has exited or is about to)."""
        self._thread.join()
