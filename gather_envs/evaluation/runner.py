"""The evaluation runner: every (task, T, i) episode of a PASS@(k,T) grid, resumable and concurrent.

:func:`evaluate` plays ``n`` episodes per task and budget T, seeded by
:func:`~gather_envs.evaluation.seeds.episode_seed`, and appends one record per episode to a
JSON-lines file as soon as the episode ends.

* **Resume.** Pointed at an existing file, it reads it and repairs its tail (a torn or unreadable
  last line is moved to ``<file>.corrupt``; see :func:`~gather_envs.records.read_for_append`),
  checks that it belongs to the same run (env id and kwargs, corpus, agent id and settings, base
  seed; a ConfigError otherwise), refuses a cell recorded twice (a RecordsError naming both lines)
  and plays exactly the missing (task, T, i). A cell never gets two records.
  Records of the file outside the grid (other budgets, i >= n) are kept but not returned, so a run
  can be extended with a larger ``n`` or more budgets.
* **Infrastructure errors.** A :class:`~gather_envs.errors.BackendError` raised by the agent is
  retried ``retries`` times with exponential backoff (``backoff * 2**attempt`` seconds, capped at
  ``max_backoff``); then the episode is recorded with ``infra_error`` set and termination
  ``"infra_error"``. Reports exclude such records from n and count them. On resume they are
  retried: the file is first rewritten without them (atomically), so each cell still has one line.
* **Concurrency.** ``concurrency`` worker threads, each with its own env made with the same
  kwargs (corpora and BM25 indexes are shared per process and safe to read from many threads).
  One agent object serves every thread; its per-episode state lives in the policy it starts.
  Workers are daemon threads rather than a ``ThreadPoolExecutor``, whose workers are joined at
  interpreter exit: after Ctrl-C an in-flight LLM call would otherwise keep the process alive.
  Records of episodes that end together share one fsync (a group commit), so 256 and more
  episodes in flight are not serialized on the disk; each is on disk before its worker moves on.
* **Ctrl-C.** ``KeyboardInterrupt`` stops the run: queued episodes are dropped, in-flight ones are
  abandoned at their next step, and :class:`EvaluationInterrupted` (a ``KeyboardInterrupt``) is
  raised. Every finished episode is already on disk; rerun the same call to resume.
* **Secrets.** No record holds an API key: the agent option ``api_key`` and the keys in the
  environment (``GATHER_API_KEY``, ``OPENAI_API_KEY``) are scrubbed from every record before it is
  written, and credentials (``Authorization`` values, bearer tokens) from every ``infra_error``.
* **Static family.** It is closed-book: budgets other than T = 0 are skipped with a note.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, TextIO

import gymnasium as gym

from gather_envs.agents.backends.base import known_secrets, redact
from gather_envs.agents.base import Agent, EpisodePolicy, make_agent
from gather_envs.errors import BackendError, ConfigError
from gather_envs.evaluation.seeds import episode_seed, sample_tasks
from gather_envs.records import (
    AGENT_SETTINGS_KEY,
    EPISODE_INDEX_UNKNOWN,
    TERMINATION_INFRA_ERROR,
    EpisodeRecord,
    RecordLocation,
    RecordWriter,
    read_for_append,
)
from gather_envs.records.cells import check_unique_cells
from gather_envs.wrappers.record import RecordPassAtKT, env_identity

try:  # POSIX only; elsewhere two runners on one file are not detected.
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None

DEFAULT_N = 64
DEFAULT_BUDGETS = (0, 1, 2, 3, 5)
DEFAULT_SEED = 0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 1.0
"""First retry delay; each further retry doubles it."""
MAX_BACKOFF_S = 60.0
ENGINE_LOCAL = "local"
ENGINE_RAY = "ray"
ENGINES = (ENGINE_LOCAL, ENGINE_RAY)
"""Who plays the episodes: threads of this process, or Ray actors (:mod:`.ray_engine`)."""
STATIC_FAMILY = "static"
STATIC_BUDGET = 0
USAGE_KEY = "usage"
"""Key in ``EpisodeRecord.extra`` for the policy's resource use (tokens, requests)."""
ATTEMPTS_KEY = "attempts"
"""Key in ``EpisodeRecord.extra`` of an infrastructure-error record: how many tries it got."""

POLL_INTERVAL_S = 0.1
"""How often the main thread wakes while waiting, so Ctrl-C is handled promptly."""
PROGRESS_INTERVAL_S = 2.0
"""Seconds between lines of the plain progress printer (used when tqdm is not installed)."""

PathLike = str | os.PathLike[str]
AgentSpec = str | Agent | Callable[..., Agent]


class EpisodeKey(NamedTuple):
    """One cell of the grid: episode ``index`` of ``task_id`` at budget T."""

    task_id: str
    budget: int
    index: int


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`evaluate`; every finished episode is on disk and a rerun resumes."""

    def __init__(self, completed: int, total: int, out: Path | None) -> None:
        self.completed = completed
        self.total = total
        self.out = out
        where = f"recorded in {out}" if out is not None else "finished (no records file was given)"
        super().__init__(f"evaluation interrupted: {completed} of {total} episodes {where}")


# --------------------------------------------------------------------------------------------
# Agents


def resolve_agent(agent: AgentSpec, env: gym.Env, options: Mapping[str, Any] | None = None) -> Agent:
    """An Agent from an instance, a factory, a registered name, or a ``module:attr`` path.

    A factory (an Agent subclass is one) is called as ``factory(env.unwrapped, **options)``;
    ``attr`` may name an Agent instance or a factory.
    """
    options = dict(options or {})
    if isinstance(agent, Agent):
        _no_options(options, repr(agent))
        return agent
    if callable(agent) and not isinstance(agent, str):
        return _build(agent, getattr(agent, "__qualname__", repr(agent)), env, options)
    if not isinstance(agent, str) or not agent:
        raise ConfigError(f"agent must be a name, a module:attr path, an Agent or a factory, got {agent!r}")
    if ":" not in agent:
        try:
            return make_agent(agent, env, **options)
        except TypeError as exc:
            raise ConfigError(f"agent {agent!r} rejected its options {sorted(options)}: {exc}") from exc
    module_name, _, attr = agent.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} for agent {agent!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r} (agent {agent!r})")
        target = getattr(target, part)
    if isinstance(target, Agent):
        _no_options(options, agent)
        return target
    if not callable(target):
        raise ConfigError(f"{agent!r} is neither an Agent nor a factory of one")
    return _build(target, agent, env, options)


def _build(factory: Callable[..., Any], name: str, env: gym.Env, options: dict[str, Any]) -> Agent:
    """``factory(env.unwrapped, **options)``, checked to be an Agent."""
    try:
        built = factory(env.unwrapped, **options)
    except TypeError as exc:
        raise ConfigError(f"agent factory {name!r} rejected its options {sorted(options)}: {exc}") from exc
    if not isinstance(built, Agent):
        raise ConfigError(f"agent factory {name!r} returned {type(built).__name__}, not an Agent")
    return built


def _no_options(options: Mapping[str, Any], what: str) -> None:
    if options:
        raise ConfigError(
            f"agent options {sorted(options)} need an agent given by name or factory, not {what}"
        )


# --------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class RunPlan:
    """What a run covers: tasks (split order), budgets, n, base seed, and notes for the user."""

    task_ids: tuple[str, ...]
    budgets: tuple[int, ...]
    n: int
    seed: int
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Episodes in the grid."""
        return len(self.task_ids) * len(self.budgets) * self.n

    def grid_order(self) -> list[EpisodeKey]:
        """Every cell sorted by task (split order), budget, then episode index."""
        return [EpisodeKey(t, b, i) for t in self.task_ids for b in self.budgets for i in range(self.n)]

    def run_order(self) -> list[EpisodeKey]:
        """Every cell in the order they are played: episode index first, so a partial run is balanced."""
        return [EpisodeKey(t, b, i) for i in range(self.n) for t in self.task_ids for b in self.budgets]

    def seed_of(self, key: EpisodeKey) -> int:
        """The episode seed of a cell (see :mod:`gather_envs.evaluation.seeds`)."""
        return episode_seed(self.seed, key.task_id, key.budget, key.index)


def plan_run(
    env: gym.Env,
    n: int = DEFAULT_N,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    tasks: int | Sequence[str] | None = None,
    seed: int = DEFAULT_SEED,
) -> RunPlan:
    """The grid for ``env``'s split: all tasks, a seeded sample of ``tasks`` of them, or given ids."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n (episodes per task and budget) must be an int >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    wanted = list(budgets)
    if not wanted:
        raise ConfigError("budgets must list at least one tool-call budget T")
    for budget in wanted:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ConfigError(f"budgets must be ints >= 0, got {budget!r}")
    unwrapped: Any = env.unwrapped
    split_ids = tuple(task.task_id for task in unwrapped.tasks)
    if tasks is None:
        task_ids = split_ids
    elif isinstance(tasks, bool | str):
        raise ConfigError(f"tasks must be a number of tasks or a list of task ids, got {tasks!r}")
    elif isinstance(tasks, int):
        task_ids = sample_tasks(split_ids, tasks, seed)
    else:
        known = set(split_ids)
        unknown = [t for t in tasks if t not in known]
        if unknown:
            raise ConfigError(f"unknown task id(s) for this split: {', '.join(map(str, unknown[:5]))}")
        task_ids = tuple(dict.fromkeys(tasks))
    notes: list[str] = []
    ordered = tuple(sorted(set(wanted)))
    if unwrapped.family == STATIC_FAMILY and ordered != (STATIC_BUDGET,):
        skipped = [t for t in ordered if t != STATIC_BUDGET]
        if STATIC_BUDGET not in ordered:
            raise ConfigError(
                f"the static family is closed-book (T = {STATIC_BUDGET} only); budgets {list(ordered)} "
                "leave nothing to run"
            )
        notes.append(
            f"note: the static family is closed-book; running T = {STATIC_BUDGET} only and skipping "
            f"T = {', '.join(map(str, skipped))}"
        )
        ordered = (STATIC_BUDGET,)
    return RunPlan(task_ids=task_ids, budgets=ordered, n=n, seed=seed, notes=tuple(notes))


# --------------------------------------------------------------------------------------------
# The records file: identity checks, resume, exclusive use


@dataclass(frozen=True)
class _RunIdentity:
    """What every record of one run shares."""

    env_id: str
    env_kwargs: dict[str, Any]
    corpus_hash: str
    agent_id: str
    agent_settings: dict[str, Any]


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _check_same_run(record: EpisodeRecord, run: _RunIdentity, plan: RunPlan, path: Path) -> None:
    """ConfigError unless ``record`` belongs to the run being resumed."""
    hint = "resume with the original settings, or pass another --out (or delete the file) to start afresh"
    if record.env_id != run.env_id:
        raise ConfigError(f"{path} holds a run of env {record.env_id!r}, not {run.env_id!r}; {hint}")
    if record.corpus_hash != run.corpus_hash:
        raise ConfigError(
            f"{path} holds a run on corpus {record.corpus_hash[:12]}…, not {run.corpus_hash[:12]}…; {hint}"
        )
    if _canon(record.env_kwargs) != _canon(run.env_kwargs):
        raise ConfigError(
            f"{path} holds a run with env kwargs {_canon(record.env_kwargs)}, not "
            f"{_canon(run.env_kwargs)}; {hint}"
        )
    if record.agent_id != run.agent_id:
        raise ConfigError(f"{path} holds a run of agent {record.agent_id!r}, not {run.agent_id!r}; {hint}")
    settings = record.extra.get(AGENT_SETTINGS_KEY, {})
    if _canon(settings) != _canon(run.agent_settings):
        raise ConfigError(
            f"{path} holds a run of agent {run.agent_id!r} with settings {_canon(settings)}, not "
            f"{_canon(run.agent_settings)}; {hint}"
        )
    if record.episode_index == EPISODE_INDEX_UNKNOWN:
        raise ConfigError(
            f"{path} holds records without an episode index (not written by the evaluation runner); "
            "pass another --out"
        )
    key = EpisodeKey(record.task_id, record.budget, record.episode_index)
    if record.seed != plan.seed_of(key):
        raise ConfigError(f"{path} was recorded with a different base seed than {plan.seed}; {hint}")


def _load_existing(path: Path, run: _RunIdentity, plan: RunPlan) -> dict[EpisodeKey, EpisodeRecord]:
    """The finished episodes of the file (infra errors dropped from it, for retry), by cell.

    The caller holds the run lock. A file of another run, a cell recorded twice (naming both
    lines) and damage other than a damaged last line are refused with the file untouched; a damaged
    last line is moved to the ``.corrupt`` sidecar, so what is appended next follows a record.
    """
    if not path.exists() or path.stat().st_size == 0:
        return {}

    def check(located: list[tuple[EpisodeRecord, RecordLocation]]) -> None:
        for record, _ in located:
            _check_same_run(record, run, plan, path)
        check_unique_cells(
            [record for record, _ in located],
            [str(location) for _, location in located],
            remedy="remove one line of each pair, or pass another --out, before resuming",
        )

    located = read_for_append(path, check)
    done: dict[EpisodeKey, EpisodeRecord] = {}
    for record, _ in located:
        if not record.is_infra_error:
            done[EpisodeKey(record.task_id, record.budget, record.episode_index)] = record
    if len(done) != len(located):
        _rewrite(path, list(done.values()))
    return done


def _rewrite(path: Path, records: Sequence[EpisodeRecord]) -> None:
    """Replace the file ``path`` names (through any symlink) atomically by ``records``.

    The caller holds the run lock.
    """
    path = Path(os.path.realpath(path))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        for record in records:
            handle.write(record.to_line())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    try:
        directory = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - directories cannot be opened on some platforms
        return
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (its holder may have removed it)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino)


class _RunLock:
    """An exclusive lock on a run's records file, held for the whole evaluation.

    Two runners resuming one file would both play its missing episodes; the second one fails fast
    instead. The lock is a ``flock`` on a sidecar ``<file>.lock`` next to the file's real path
    (symlinks resolved, so every name of the file shares one lock; the kernel releases it if the
    process dies). The holder removes the sidecar while still holding it; a process that locked
    that now-removed file meanwhile sees that the path no longer names it and retries on the
    path's current file, so there is never more than one holder.
    """

    def __init__(self, path: Path) -> None:
        real = Path(os.path.realpath(path))
        self.path = real.with_name(real.name + ".lock")
        self.records_path = path
        self._fd: int | None = None

    def __enter__(self) -> _RunLock:
        if fcntl is None:  # pragma: no cover - Windows
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ConfigError(
                    f"another evaluation is writing {self.records_path} (it holds {self.path}); "
                    "wait for it to finish or pass another --out"
                ) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # its holder removed it on release: lock the file the path names now
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is None or fcntl is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while held: see the class docstring
        finally:
            os.close(self._fd)  # releases the flock
            self._fd = None


# --------------------------------------------------------------------------------------------
# Playing episodes


class _Abandoned(Exception):
    """The run is stopping; the episode in this thread is dropped unfinished."""


class _GroupCommit:
    """Appends the records of many threads with one fsync per batch (a group commit).

    A thread's record is on disk when :meth:`write` returns. While one thread writes and syncs a
    batch, the records that finish meanwhile queue up and go to disk together in the next one: an
    fsync per record took 0.5-3 ms on this machine and, serialized, capped a run at 300-400
    episodes/s whatever the concurrency.
    """

    def __init__(self, writer: RecordWriter) -> None:
        self.writer = writer
        self._cond = threading.Condition()
        self._pending: list[EpisodeRecord] = []
        self._queued = 0  # records handed in so far; record k (from 1) is ticket k
        self._durable = 0  # records on disk: tickets up to this one
        self._flushing = False
        self._failure: BaseException | None = None

    def write(self, record: EpisodeRecord) -> None:
        with self._cond:
            self._pending.append(record)
            self._queued += 1
            ticket = self._queued
            while self._durable < ticket:
                if self._failure is not None:
                    raise self._failure
                if self._flushing:
                    self._cond.wait()
                    continue
                batch, self._pending, last = self._pending, [], self._queued
                self._flushing = True
                self._cond.release()
                try:
                    self.writer.write_many(batch)
                except BaseException as exc:
                    self._failure = exc
                    raise
                finally:
                    self._cond.acquire()
                    self._flushing = False
                    if self._failure is None:
                        self._durable = last
                    self._cond.notify_all()


@dataclass
class _Player:
    """Plays one cell in the calling thread, with that thread's own env; retries backend errors."""

    env_id: str
    env_kwargs: dict[str, Any]
    agent: Agent
    plan: RunPlan
    run: _RunIdentity
    tasks: Mapping[str, Any]
    writer: RecordWriter | None
    record_trajectory: bool
    retries: int
    backoff: float
    max_backoff: float
    stop: threading.Event
    secrets: tuple[str, ...] = ()
    """API keys (agent options, environment) that no record may hold; see :func:`_scrubbed`."""
    record_actions: bool = False
    """Keep each episode's raw actions (``EpisodeRecord.actions``), so a replay can check it."""
    _local: threading.local = field(default_factory=threading.local)
    _envs: list[RecordPassAtKT] = field(default_factory=list)
    _envs_lock: threading.Lock = field(default_factory=threading.Lock)
    _commit: _GroupCommit | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.writer is not None:
            self._commit = _GroupCommit(self.writer)

    def env(self) -> RecordPassAtKT:
        """This thread's env, made on first use."""
        env = getattr(self._local, "env", None)
        if env is None:
            env = RecordPassAtKT(
                # Gymnasium's passive checker would re-check every thread's first reset and step
                # character by character (0.9 ms of CPU per env, 0.23 s at 256 threads); the ids
                # pass check_env in tests/test_env_api.py.
                gym.make(self.env_id, disable_env_checker=True, **self.env_kwargs),
                agent_id=self.run.agent_id,
                record_trajectory=self.record_trajectory,
                agent_settings=self.run.agent_settings,
                record_actions=self.record_actions,
            )
            self._local.env = env
            with self._envs_lock:
                self._envs.append(env)
        return env

    def close(self) -> None:
        """Close every thread's env (call only once no episode is in flight)."""
        with self._envs_lock:
            envs, self._envs = self._envs, []
        for env in envs:
            env.close()

    def play(self, key: EpisodeKey) -> EpisodeRecord:
        """The finished record of a cell, on disk when this returns."""
        started = time.perf_counter()
        attempt = 0
        while True:
            try:
                record = self._episode(key)
                break
            except BackendError as exc:
                if attempt >= self.retries:
                    record = self._infra_record(key, exc, attempt + 1, time.perf_counter() - started)
                    break
                delay = min(self.backoff * 2**attempt, self.max_backoff)
                attempt += 1
                if self.stop.wait(delay):
                    raise _Abandoned from exc
        record = _scrubbed(record, self.secrets)
        if self._commit is not None:
            self._commit.write(record)
        return record

    def _episode(self, key: EpisodeKey) -> EpisodeRecord:
        env = self.env()
        seed = self.plan.seed_of(key)
        env.next_episode_index = key.index
        observation, info = env.reset(
            seed=seed, options={"task_id": key.task_id, "max_tool_calls": key.budget}
        )
        policy: EpisodePolicy = self.agent.start(seed)
        while True:
            if self.stop.is_set():
                raise _Abandoned
            action = policy.act(observation, info)
            observation, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        record = env.records.pop()
        usage = policy.usage()
        extra = policy.record_extra()
        if usage or extra:
            record = replace(record, extra={**record.extra, **extra, **({USAGE_KEY: usage} if usage else {})})
        return record

    def _infra_record(
        self, key: EpisodeKey, error: BackendError, attempts: int, wall: float
    ) -> EpisodeRecord:
        task = self.tasks[key.task_id]
        extra: dict[str, Any] = {ATTEMPTS_KEY: attempts}
        if self.run.agent_settings:
            extra[AGENT_SETTINGS_KEY] = dict(self.run.agent_settings)
        infra_error = redact(f"{type(error).__name__}: {error} (after {attempts} attempts)", self.secrets)
        # The last attempt's episode as far as it went: a replay of its actions shows it unfinished.
        partial = self.env().unfinished_record()
        if partial is not None and partial.task_id == key.task_id and partial.budget == key.budget:
            return replace(
                partial,
                seed=self.plan.seed_of(key),
                episode_index=key.index,
                termination=TERMINATION_INFRA_ERROR,
                wall_time=wall,
                infra_error=infra_error,
                extra=extra,
            )
        return EpisodeRecord(
            env_id=self.run.env_id,
            env_kwargs=dict(self.run.env_kwargs),
            corpus_hash=self.run.corpus_hash,
            task_id=key.task_id,
            family=task.family,
            hops=task.hops,
            seed=self.plan.seed_of(key),
            budget=key.budget,
            episode_index=key.index,
            success=False,
            gold_answer=task.answer,
            termination=TERMINATION_INFRA_ERROR,
            wall_time=wall,
            agent_id=self.run.agent_id,
            infra_error=infra_error,
            actions=() if self.record_actions else None,
            extra=extra,
        )


def _scrubbed(record: EpisodeRecord, secrets: Sequence[str]) -> EpisodeRecord:
    """``record`` with every secret value hidden, wherever it appears (a server may echo a key)."""
    if not secrets:
        return record
    line = record.to_line().decode("utf-8")
    if not any(secret in line for secret in secrets):
        return record
    return EpisodeRecord.from_json(_redact_json(record.to_json(), secrets))


def _redact_json(value: Any, secrets: Sequence[str]) -> Any:
    """A JSON value with ``secrets`` hidden in every string (keys included)."""
    if isinstance(value, str):
        return redact(value, secrets, credentials=False)
    if isinstance(value, list):
        return [_redact_json(item, secrets) for item in value]
    if isinstance(value, dict):
        return {_redact_json(k, secrets): _redact_json(v, secrets) for k, v in value.items()}
    return value


class _Workers:
    """Daemon threads that play queued cells and hand back (cell, record) pairs."""

    _DONE = None

    def __init__(
        self,
        size: int,
        play: Callable[[EpisodeKey], EpisodeRecord],
        keys: Sequence[EpisodeKey],
        stop: threading.Event,
    ) -> None:
        self.stop = stop
        self._play = play
        self._remaining = len(keys)
        self._jobs: queue.Queue[EpisodeKey | None] = queue.Queue()
        self._results: queue.Queue[tuple[EpisodeKey, EpisodeRecord | None, BaseException | None]] = (
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
            except _Abandoned:
                return
            except BaseException as exc:  # handed to the main thread, which re-raises it
                self._results.put((key, None, exc))
                return
            self._results.put((key, record, None))

    def results(self) -> Iterator[tuple[EpisodeKey, EpisodeRecord]]:
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

    def drain(self) -> Iterator[tuple[EpisodeKey, EpisodeRecord]]:
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


# --------------------------------------------------------------------------------------------
# Progress


def _tqdm_class() -> Any:
    """tqdm's progress bar class, or None when tqdm is not installed (it is optional)."""
    try:
        return importlib.import_module("tqdm").tqdm
    except ImportError:
        return None


class _Progress:
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


# --------------------------------------------------------------------------------------------
# The entry point


def evaluate(
    env_id: str,
    agent: AgentSpec,
    n: int = DEFAULT_N,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    tasks: int | Sequence[str] | None = None,
    seed: int = DEFAULT_SEED,
    concurrency: int = 1,
    out: PathLike | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    agent_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    record_trajectory: bool = False,
    record_actions: bool = False,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    max_backoff: float = MAX_BACKOFF_S,
    engine: str = ENGINE_LOCAL,
    ray_address: str | None = None,
    workers: int | None = None,
    ray_actor_options: Mapping[str, Any] | None = None,
) -> list[EpisodeRecord]:
    """Play every (task, T, i) of the grid (resuming ``out`` if it exists); the grid's records.

    ``agent`` is a registered name, a ``module:attr`` path or an Agent (see :func:`resolve_agent`);
    ``tasks`` is all tasks of the split (None), a seeded sample of that many, or a list of ids.
    Returns one record per cell, sorted by task (split order), T and episode index, the resumed ones
    included. See the module docstring for resume, retries, concurrency and Ctrl-C.
    ``engine="ray"`` plays the same grid on ``workers`` Ray actors (``concurrency`` episodes each)
    of the cluster at ``ray_address`` (a local instance if None); see
    :mod:`gather_envs.evaluation.ray_engine`.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == ENGINE_LOCAL and (ray_address is not None or workers is not None or ray_actor_options):
        raise ConfigError("ray_address, workers and ray_actor_options need engine='ray'")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be an int >= 1, got {concurrency!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be an int >= 0, got {retries!r}")
    if backoff < 0 or max_backoff < 0:
        raise ConfigError(f"backoff and max_backoff must be >= 0, got {backoff}, {max_backoff}")
    env_kwargs = dict(env_kwargs or {})
    try:
        env = gym.make(env_id, **env_kwargs)
    except gym.error.Error as exc:
        raise ConfigError(f"cannot make env {env_id!r}: {exc}") from exc
    try:
        agent_obj = resolve_agent(agent, env, agent_options)
        plan = plan_run(env, n=n, budgets=budgets, tasks=tasks, seed=seed)
        spec_id, spec_kwargs = env_identity(env)
        unwrapped: Any = env.unwrapped
        run = _RunIdentity(
            env_id=spec_id,
            env_kwargs=spec_kwargs,
            corpus_hash=unwrapped.corpus.content_hash,
            agent_id=agent_obj.agent_id,
            agent_settings=json.loads(_canon(agent_obj.settings())),
        )
        tasks_by_id = {task.task_id: task for task in unwrapped.tasks}
    finally:
        env.close()
    if progress:
        for note in plan.notes:
            print(note, file=sys.stderr)
    path = None if out is None else Path(out)

    def execute(writer: RecordWriter | None, done: dict[EpisodeKey, EpisodeRecord]) -> list[EpisodeRecord]:
        player = _Player(
            env_id=env_id,
            env_kwargs=env_kwargs,
            agent=agent_obj,
            plan=plan,
            run=run,
            tasks=tasks_by_id,
            writer=writer,
            record_trajectory=record_trajectory,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            stop=threading.Event(),
            secrets=known_secrets(agent_options),
            record_actions=record_actions,
        )
        if engine == ENGINE_LOCAL:
            return _run(plan, run, player, done, concurrency, progress)
        from gather_envs.evaluation import ray_engine  # optional: imports ray

        with ray_engine.RayEngine(ray_address, workers, concurrency, ray_actor_options) as cluster:
            init = (env_id, env_kwargs, agent, dict(agent_options or {}), plan, run, record_trajectory,
                    retries, backoff, max_backoff, player.secrets, record_actions)  # fmt: skip

            def pool(todo: Sequence[EpisodeKey]) -> Any:
                return ray_engine.RayWorkers(cluster, init, concurrency, todo, writer, player.secrets)

            return _run(plan, run, player, done, concurrency, progress, pool)

    if path is None:
        return execute(None, {})
    with _RunLock(path):
        done = _load_existing(path, run, plan)
        with RecordWriter(path) as writer:
            return execute(writer, done)


def _run(
    plan: RunPlan,
    run: _RunIdentity,
    player: _Player,
    done: dict[EpisodeKey, EpisodeRecord],
    concurrency: int,
    progress: bool,
    pool: Callable[[Sequence[EpisodeKey]], Any] | None = None,
) -> list[EpisodeRecord]:
    """Play the cells ``done`` lacks and return the whole grid's records in grid order.

    ``pool`` makes what plays them (default: ``concurrency`` threads of ``player``): an object with
    the ``results``, ``drain`` and ``join`` of :class:`_Workers` that writes each record first.
    """
    grid = plan.grid_order()
    in_grid = sum(1 for key in grid if key in done)
    todo = [key for key in plan.run_order() if key not in done]
    label = f"eval {run.agent_id} on {run.env_id}"
    if progress and in_grid:
        print(f"{label}: resuming, {in_grid} of {plan.size} episodes already recorded", file=sys.stderr)
    results: dict[EpisodeKey, EpisodeRecord] = {key: done[key] for key in grid if key in done}
    if not todo:
        return [results[key] for key in grid]
    workers = _Workers(concurrency, player.play, todo, player.stop) if pool is None else pool(todo)
    bar = _Progress(len(todo), label) if progress else None
    finished = False
    try:
        for key, record in workers.results():
            results[key] = record
            if bar is not None:
                bar.update(record)
        finished = True
    except KeyboardInterrupt:
        player.stop.set()
        results.update(workers.drain())  # finished (and on disk) before the interrupt was seen
        out = None if player.writer is None else player.writer.path
        raise EvaluationInterrupted(len(results), plan.size, out) from None
    finally:
        player.stop.set()
        if bar is not None:
            bar.close()
        if finished:
            workers.join()
            player.close()
    return [results[key] for key in grid]
