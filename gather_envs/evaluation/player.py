"""Playing one episode: the player (its env per thread, retries, infrastructure errors) and the group commit.

A :class:`Player` plays a cell in the calling thread and, with a writer, puts its record on disk
before returning; records of episodes that end together share one fsync (:class:`GroupCommit`).
No record holds a secret: :func:`scrubbed` hides API keys wherever they appear.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym

from gather_envs.agents.backends.base import redact
from gather_envs.agents.base import Agent, EpisodePolicy
from gather_envs.errors import BackendError
from gather_envs.evaluation.plan import RunPlan
from gather_envs.records import AGENT_SETTINGS_KEY, REWARD_KIND_EM, TERMINATION_INFRA_ERROR, EpisodeRecord
from gather_envs.runs import Cell, RecordWriter, RunIdentity
from gather_envs.wrappers.record import RecordPassAtKT

USAGE_KEY = "usage"
"""Key in ``EpisodeRecord.extra`` for the policy's resource use (tokens, requests)."""
ATTEMPTS_KEY = "attempts"
"""Key in ``EpisodeRecord.extra`` of an infrastructure-error record: how many tries it got."""


class Abandoned(Exception):
    """The run is stopping; the episode in this thread is dropped unfinished."""


class GroupCommit:
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


@dataclass(frozen=True)
class PlayerSettings:
    """What every player of a run shares, in this process or in a Ray worker (picklable)."""

    env_id: str
    env_kwargs: dict[str, Any]
    plan: RunPlan
    run: RunIdentity
    record_trajectory: bool
    retries: int
    backoff: float
    max_backoff: float
    secrets: tuple[str, ...] = ()
    """API keys (agent options, environment) that no record may hold; see :func:`scrubbed`."""
    record_actions: bool = False
    """Keep each episode's raw actions (``EpisodeRecord.actions``), so a replay can check it."""


@dataclass
class Player:
    """Plays one cell in the calling thread, with that thread's own env; retries backend errors."""

    settings: PlayerSettings
    agent: Agent
    tasks: Mapping[str, Any]
    writer: RecordWriter | None
    stop: threading.Event
    _local: threading.local = field(default_factory=threading.local)
    _envs: list[RecordPassAtKT] = field(default_factory=list)
    _envs_lock: threading.Lock = field(default_factory=threading.Lock)
    _commit: GroupCommit | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.writer is not None:
            self._commit = GroupCommit(self.writer)

    def env(self) -> RecordPassAtKT:
        """This thread's env, made on first use."""
        env = getattr(self._local, "env", None)
        if env is None:
            env = RecordPassAtKT(
                # Gymnasium's passive checker would re-check every thread's first reset and step
                # character by character (0.9 ms of CPU per env, 0.23 s at 256 threads); the ids
                # pass check_env in tests/envs/test_env_api.py.
                gym.make(self.settings.env_id, disable_env_checker=True, **self.settings.env_kwargs),
                agent_id=self.settings.run.agent_id,
                record_trajectory=self.settings.record_trajectory,
                agent_settings=self.settings.run.agent_settings,
                record_actions=self.settings.record_actions,
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

    def play(self, key: Cell) -> EpisodeRecord:
        """The finished record of a cell, on disk when this returns."""
        started = time.perf_counter()
        attempt = 0
        while True:
            try:
                record = self._episode(key)
                break
            except BackendError as exc:
                if attempt >= self.settings.retries:
                    record = self._infra_record(key, exc, attempt + 1, time.perf_counter() - started)
                    break
                delay = min(self.settings.backoff * 2**attempt, self.settings.max_backoff)
                attempt += 1
                if self.stop.wait(delay):
                    raise Abandoned from exc
        record = scrubbed(record, self.settings.secrets)
        if self._commit is not None:
            self._commit.write(record)
        return record

    def _episode(self, key: Cell) -> EpisodeRecord:
        env = self.env()
        seed = self.settings.plan.seed_of(key)
        env.next_episode_index = key.index
        observation, info = env.reset(
            seed=seed, options={"task_id": key.task_id, "max_tool_calls": key.budget}
        )
        policy: EpisodePolicy = self.agent.start(seed)
        while True:
            if self.stop.is_set():
                raise Abandoned
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
        self, key: Cell, error: BackendError, attempts: int, wall: float
    ) -> EpisodeRecord:
        task = self.tasks[key.task_id]
        extra: dict[str, Any] = {ATTEMPTS_KEY: attempts}
        if self.settings.run.agent_settings:
            extra[AGENT_SETTINGS_KEY] = dict(self.settings.run.agent_settings)
        infra_error = redact(f"{type(error).__name__}: {error} (after {attempts} attempts)", self.settings.secrets)
        # The last attempt's episode as far as it went: a replay of its actions shows it unfinished.
        partial = self.env().unfinished_record()
        if partial is not None and partial.task_id == key.task_id and partial.budget == key.budget:
            return replace(
                partial,
                seed=self.settings.plan.seed_of(key),
                episode_index=key.index,
                termination=TERMINATION_INFRA_ERROR,
                wall_time=wall,
                infra_error=infra_error,
                extra=extra,
            )
        return EpisodeRecord(
            env_id=self.settings.run.env_id,
            env_kwargs=dict(self.settings.run.env_kwargs),
            corpus_hash=self.settings.run.corpus_hash,
            retriever=self.settings.run.retriever,
            task_id=key.task_id,
            family=task.family,
            hops=task.hops,
            seed=self.settings.plan.seed_of(key),
            budget=key.budget,
            episode_index=key.index,
            success=False,
            reward_kind=str(self.settings.run.env_kwargs.get("reward") or REWARD_KIND_EM),
            gold_answer=task.answer,
            termination=TERMINATION_INFRA_ERROR,
            wall_time=wall,
            agent_id=self.settings.run.agent_id,
            infra_error=infra_error,
            actions=() if self.settings.record_actions else None,
            extra=extra,
        )


def scrubbed(record: EpisodeRecord, secrets: Sequence[str]) -> EpisodeRecord:
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
