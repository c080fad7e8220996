"""A wrapper that turns every finished episode into an :class:`~gather_envs.records.EpisodeRecord`.

The record is built from what the env reports in ``info`` (at reset and at the last step), the
seed given to ``reset`` and the wrapper's own clock, so it works on any env that reports the
Gather ``info`` keys, inside ``SyncVectorEnv`` / ``AsyncVectorEnv`` sub-envs and with autoreset.

Episode index: a record's ``episode_index`` is the ``i`` of its ``(task, T, i)`` cell in an
evaluation grid. Set the attribute :attr:`RecordPassAtKT.next_episode_index` before ``reset``
(``vector_env.set_attr("next_episode_index", [...])`` for sub-envs); it applies to that one
episode and is then cleared. Left unset, records get ``EPISODE_INDEX_UNKNOWN`` (-1). Reset options
are passed through untouched: the env rejects keys it does not know, and so should stay strict.

An episode that is abandoned (``reset`` before it ended) or that raised is not recorded.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym

from gather_envs.records import (
    AGENT_SETTINGS_KEY,
    EPISODE_INDEX_UNKNOWN,
    REWARD_KIND_EM,
    TERMINATION_TRUNCATED,
    EpisodeRecord,
)
from gather_envs.runs import RecordWriter

IGNORED_CALLS_KEY = "ignored_calls"
"""Key in :attr:`EpisodeRecord.extra` of the calls the env did not take (after an answer, or after
a made-up observation), each with its turn, text and reason; absent when there were none."""
TERMINATION_TERMINATED = "terminated"
"""Termination reason of an episode that ended with ``terminated=True`` but gave no reason."""


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (lists for tuples, ``repr`` for anything JSON cannot hold)."""
    return json.loads(json.dumps(value, sort_keys=False, default=repr))


def _retriever(value: Any) -> str | None:
    """The ``retriever`` an env's info reports, as a record holds it (None: the env's own BM25)."""
    return None if value is None else str(value)


def env_identity(env: gym.Env) -> tuple[str, dict[str, Any]]:
    """The id and kwargs that rebuild ``env`` (from its spec), as recorded in every record.

    An env made without ``gym.make`` has no spec; its entry point ``module:Class`` stands in for
    the id and the kwargs are empty.
    """
    spec = env.spec
    if spec is not None:
        return spec.id, _jsonable(dict(spec.kwargs))
    cls = type(env.unwrapped)
    return f"{cls.__module__}:{cls.__qualname__}", {}


@dataclass
class _Episode:
    """What the wrapper tracks while an episode runs."""

    seed: int | None
    index: int
    info: dict[str, Any]
    started: float
    reward: float = 0.0
    queries: list[str] = field(default_factory=list)
    retrieved: list[list[str]] = field(default_factory=list)
    trajectory: list[dict[str, Any]] | None = None
    turns: int = 0
    ignored: list[dict[str, Any]] = field(default_factory=list)
    actions: list[str] | None = None
    last_info: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class RecordPassAtKT(gym.Wrapper[str, str, str, str], gym.utils.RecordConstructorArgs):
    """Record each finished episode as an EpisodeRecord in ``records`` and, given ``path``, on disk.

    With ``path`` every record is appended (locked, flushed, fsynced unless ``fsync=False``) in the
    ``step`` that ends its episode, so it is on disk before the next episode starts, and several
    processes (``AsyncVectorEnv`` workers) may share one file. ``record_trajectory=True`` adds the
    full trajectory: the first entry holds the reset observation (``action`` None), then one entry
    per step with the action, the observation and the reward. ``record_actions=True`` keeps the
    raw actions alone, in ``EpisodeRecord.actions``: enough to replay the episode, at a fraction of
    the size of a trajectory (which holds them too). ``agent_settings`` go into
    ``extra["agent_settings"]`` of every record. The constructor arguments are recorded, so the
    wrapper survives ``EnvSpec`` round-trips and ``gym.make(env.spec)`` rebuilds it.

    >>> import gymnasium as gym, gather_envs
    >>> env = RecordPassAtKT(gym.make("Gather-SingleHop-v0"), agent_id="doc")
    >>> _ = env.reset(seed=3)
    >>> _ = env.step("answer[no idea]")
    >>> record = env.records[-1]
    >>> record.agent_id, record.seed, record.success, record.termination
    ('doc', 3, False, 'answered')
    """

    def __init__(
        self,
        env: gym.Env[str, str],
        agent_id: str = "",
        path: str | os.PathLike[str] | None = None,
        record_trajectory: bool = False,
        agent_settings: dict[str, Any] | None = None,
        fsync: bool = True,
        record_actions: bool = False,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            agent_id=agent_id,
            path=None if path is None else os.fspath(path),
            record_trajectory=record_trajectory,
            agent_settings=None if agent_settings is None else _jsonable(agent_settings),
            fsync=fsync,
            record_actions=record_actions,
        )
        gym.Wrapper.__init__(self, env)
        self.agent_id = agent_id
        self.path: Path | None = None if path is None else Path(path)
        self.record_trajectory = record_trajectory
        self.record_actions = record_actions
        self.agent_settings: dict[str, Any] = {} if agent_settings is None else _jsonable(agent_settings)
        self.fsync = fsync
        self.records: list[EpisodeRecord] = []
        """Every episode recorded so far, oldest first (callers may pop or clear it)."""
        self.next_episode_index: int | None = None
        """The ``episode_index`` of the next episode only; cleared by ``reset``."""
        self.episode_count = 0
        """Episodes started through this wrapper."""
        self._identity: tuple[str, dict[str, Any]] | None = None
        self._writer: RecordWriter | None = None
        self._episode: _Episode | None = None

    @property
    def identity(self) -> tuple[str, dict[str, Any]]:
        """The env id and spec kwargs written into every record (see :func:`env_identity`)."""
        if self._identity is None:
            self._identity = env_identity(self.env)
        return self._identity

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Reset the env and start tracking an episode (an unfinished one is dropped)."""
        self._episode = None
        index = self.next_episode_index
        self.next_episode_index = None
        observation, info = self.env.reset(seed=seed, options=options)
        self.episode_count += 1
        self._episode = _Episode(
            seed=None if seed is None else int(seed),
            index=EPISODE_INDEX_UNKNOWN if index is None else int(index),
            info=dict(info),
            started=time.perf_counter(),
            trajectory=(
                [{"action": None, "observation": observation, "reward": 0.0}]
                if self.record_trajectory
                else None
            ),
            actions=[] if self.record_actions else None,
        )
        return observation, info

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; the step that ends an episode records it (and writes it, given a path)."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        episode = self._episode
        if episode is None:  # the env accepted a step outside an episode we saw start
            return observation, reward, terminated, truncated, info
        episode.reward += float(reward)
        episode.turns += 1
        # The env's final info lists every query; this covers an outer truncation. Only a search
        # step's keys count: a wrapper that copies an earlier info must not add a search.
        searches = info.get("searches")
        if searches is None and "query" in info:  # an env that reports one search per step
            searches = [{"query": info["query"], "retrieved_doc_ids": info.get("retrieved_doc_ids", ())}]
        for search in searches or ():
            episode.queries.append(str(search["query"]))
            episode.retrieved.append([str(d) for d in search.get("retrieved_doc_ids", ())])
        for ignored in info.get("ignored_calls", ()):
            episode.ignored.append({"turn": episode.turns, **ignored})
        episode.last_info = info
        if episode.actions is not None:
            episode.actions.append(action if isinstance(action, str) else str(action))
        if episode.trajectory is not None:
            episode.trajectory.append({"action": action, "observation": observation, "reward": float(reward)})
        if terminated or truncated:
            self._episode = None
            record = self._record(episode, info, truncated)
            self.records.append(record)
            if self.path is not None:
                self._open_writer().write(record)
        return observation, reward, terminated, truncated, info

    def _record(self, episode: _Episode, final: dict[str, Any], truncated: bool) -> EpisodeRecord:
        start = episode.info
        env_id, env_kwargs = self.identity
        termination = final.get("termination") or (
            TERMINATION_TRUNCATED if truncated else TERMINATION_TERMINATED
        )
        gold = final.get("gold_answer")
        if gold is None:  # ended by an outer wrapper (e.g. TimeLimit) before the env reported it
            task = getattr(self.env.unwrapped, "task", None)
            gold = getattr(task, "answer", "")
        answer = final.get("answer")
        supporting = final.get("supporting_doc_ids")
        if supporting is None:  # as for the gold answer: read the task when the env did not report
            supporting = getattr(getattr(self.env.unwrapped, "task", None), "supporting_doc_ids", None)
        extra = dict(episode.extra)
        if episode.ignored:
            extra[IGNORED_CALLS_KEY] = list(episode.ignored)
        if self.agent_settings:
            extra[AGENT_SETTINGS_KEY] = dict(self.agent_settings)
        return EpisodeRecord(
            env_id=env_id,
            env_kwargs=env_kwargs,
            corpus_hash=str(final.get("corpus_hash", start.get("corpus_hash", ""))),
            task_id=str(final.get("task_id", start.get("task_id", ""))),
            family=str(final.get("family", start.get("family", ""))),
            hops=int(final.get("hops", start.get("hops", 0))),
            seed=episode.seed,
            budget=int(start.get("max_tool_calls", final.get("max_tool_calls", 0))),
            episode_index=episode.index,
            tool_calls=int(final.get("tool_calls_used", 0)),
            turns=int(final.get("turns", episode.turns)),
            invalid_actions=int(final.get("invalid_actions", 0)),
            success=bool(final.get("success", False)),
            reward=episode.reward,
            reward_kind=str(final.get("reward_kind", start.get("reward_kind", REWARD_KIND_EM))),
            answer=None if answer is None else str(answer),
            gold_answer=str(gold),
            termination=str(termination),
            wall_time=time.perf_counter() - episode.started,
            agent_id=self.agent_id,
            queries=tuple(str(q) for q in final.get("queries", episode.queries)),
            trajectory=None if episode.trajectory is None else tuple(episode.trajectory),
            actions=None if episode.actions is None else tuple(episode.actions),
            retrieved_doc_ids=tuple(tuple(ids) for ids in episode.retrieved),
            supporting_doc_ids=None if supporting is None else tuple(str(d) for d in supporting),
            retriever=_retriever(final.get("retriever", start.get("retriever"))),
            extra=extra,
        )

    def unfinished_record(self) -> EpisodeRecord | None:
        """The episode in progress as a record of what it did so far (None when none is in progress).

        For a runner whose agent failed mid-episode: with its actions, counters, queries and
        retrieved ids as of the last step, a replay can show that the episode was cut short.
        """
        episode = self._episode
        if episode is None:
            return None
        partial = {key: value for key, value in episode.last_info.items() if key != "queries"}
        return self._record(episode, {**episode.info, **partial}, truncated=False)

    def _open_writer(self) -> RecordWriter:
        if self._writer is None:
            assert self.path is not None
            self._writer = RecordWriter(self.path, fsync=self.fsync)
        return self._writer

    def close(self) -> None:
        """Close the records file (if any) and the env."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        super().close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_writer"] = None  # an open descriptor does not travel; the copy reopens on demand
        return state
