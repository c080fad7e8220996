"""Replay a recorded episode's actions through the env it names, to recompute what it must show.

The env is deterministic given the task, the budget, the env kwargs and the actions, so a record
that carries its actions can be checked field by field without rerunning the agent. One env is made
per (env id, kwargs) and reused for every episode; every env of a process shares one BM25 index per
corpus (:mod:`gather_envs.retrieval.cache`), and the searches of one replayer are memoized by
(env, query), since the episodes of one task repeat most of their queries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from gather_envs.envs.gather_env import GatherEnv
from gather_envs.records import EpisodeRecord
from gather_envs.records.documents import Document


@dataclass(frozen=True)
class Replay:
    """What the env shows when a record's actions are played again from its task and budget."""

    finished: bool
    """Whether an action ended the episode."""
    played: int
    """How many actions were played: all of them, or up to the one that ended the episode."""
    success: bool
    reward: float
    answer: str | None
    termination: str
    tool_calls: int
    invalid_actions: int
    queries: tuple[str, ...]
    retrieved_doc_ids: tuple[tuple[str, ...], ...]
    gold_answer: str
    family: str
    hops: int
    observations: tuple[str, ...]
    """The reset observation, then one per action played."""


class _MemoEnv(GatherEnv):
    """A GatherEnv whose BM25 retrievals are memoized per query (world scope: the same every task)."""

    def _retrieve(self, query: str) -> list[Document]:
        if self.scope != "world":
            return super()._retrieve(query)
        memo: dict[str, list[Document]] = self.__dict__.setdefault("_memo", {})
        hit = memo.get(query)
        if hit is None:
            hit = memo[query] = super()._retrieve(query)
        return hit


class Replayer:
    """Replays records through one env per (env id, kwargs), made on first use and kept."""

    def __init__(self) -> None:
        self._envs: dict[str, GatherEnv] = {}

    def env(self, env_id: str, env_kwargs: dict[str, Any]) -> GatherEnv:
        """The env that ``env_id`` with ``env_kwargs`` makes, memoizing its retrievals."""
        key = json.dumps([env_id, env_kwargs], sort_keys=True)
        env = self._envs.get(key)
        if env is None:
            made: Any = gym.make(env_id, disable_env_checker=True, **env_kwargs).unwrapped
            if not isinstance(made, GatherEnv):
                raise TypeError(f"{env_id} is not a GatherEnv; only Gather envs can be replayed")
            made.__class__ = _MemoEnv  # same state, memoized retrieval: no second corpus load
            env = self._envs[key] = made
        return env

    def replay(
        self, env_id: str, env_kwargs: dict[str, Any], record: EpisodeRecord, actions: Sequence[str]
    ) -> Replay:
        """Play ``actions`` on the record's task and budget through ``env_id`` made with ``env_kwargs``.

        The seed is not passed: the task is named, so the episode does not depend on it (and
        seeding a generator per reset would cost a tenth of the replay).
        """
        env = self.env(env_id, env_kwargs)
        observation, info = env.reset(options={"task_id": record.task_id, "max_tool_calls": record.budget})
        observations = [observation]
        reward = 0.0
        retrieved: list[tuple[str, ...]] = []
        finished = False
        played = 0
        for action in actions:
            observation, step_reward, terminated, truncated, info = env.step(action)
            played += 1
            observations.append(observation)
            reward += float(step_reward)
            if "retrieved_doc_ids" in info:
                retrieved.append(tuple(info["retrieved_doc_ids"]))
            if terminated or truncated:
                finished = True
                break
        task = env.task
        assert task is not None
        return Replay(
            finished=finished,
            played=played,
            success=bool(info.get("success", False)),
            reward=reward,
            answer=info.get("answer"),
            termination=str(info.get("termination", "")),
            tool_calls=env.tool_calls_used,
            invalid_actions=env.invalid_actions,
            queries=tuple(env.queries),
            retrieved_doc_ids=tuple(retrieved),
            gold_answer=task.answer,
            family=task.family,
            hops=task.hops,
            observations=tuple(observations),
        )

    def close(self) -> None:
        """Close every env."""
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def recorded_actions(record: EpisodeRecord) -> tuple[str, ...] | None:
    """The record's actions: its ``actions``, else those of its trajectory; None if it has neither."""
    if record.actions is not None:
        return record.actions
    if record.trajectory is not None:
        return tuple(str(step.get("action")) for step in record.trajectory[1:])
    return None
