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
from pathlib import Path
from typing import Any

import gymnasium as gym

from gather_envs.envs.gather_env import GatherEnv
from gather_envs.errors import GatherError
from gather_envs.leaderboard.problems import Problems
from gather_envs.records import EpisodeRecord
from gather_envs.records.documents import Document

MAX_REPLAYED_ACTION_CHARS = 1 << 16
"""Longest action verify replays: bounds the parser's work per action on untrusted records."""


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
    turns: int
    """Replies the env took: one per action played (a reply may hold several calls)."""
    reward_kind: str
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
            searches = info.get("searches")
            if searches is None and "retrieved_doc_ids" in info:  # one search per step
                searches = [{"retrieved_doc_ids": info["retrieved_doc_ids"]}]
            retrieved.extend(tuple(search.get("retrieved_doc_ids", ())) for search in searches or ())
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
            turns=played,
            reward_kind=env.reward,
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


REPLAYED_FIELDS = (
    ("success", "replay-success"),
    ("reward", "replay-reward"),
    ("answer", "replay-answer"),
    ("termination", "replay-termination"),
    ("tool_calls", "replay-tool-calls"),
    ("turns", "replay-turns"),
    ("reward_kind", "replay-reward-kind"),
    ("invalid_actions", "replay-invalid-actions"),
    ("queries", "replay-queries"),
    ("retrieved_doc_ids", "replay-retrieved"),
    ("gold_answer", "replay-gold"),
    ("family", "replay-family"),
    ("hops", "replay-hops"),
)
"""Record fields a replay recomputes, each with the rule that refuses a difference."""


def check_replays(
    env_id: str, located: Sequence[tuple[EpisodeRecord, Path, int]], replayer: Replayer, problems: Problems
) -> None:
    """Replay every record's actions through the registered env; each field must equal the replay's."""
    kwargs = dict(gym.spec(env_id).kwargs)
    for record, file, line in located:
        where = f"task {record.task_id!r}, T={record.budget}, episode {record.episode_index}"
        actions = recorded_actions(record)
        if actions is None:
            problems.group(
                file, line, "actions",
                f"{where} has no actions to replay; run it with `gather-envs eval --actions`",
            )  # fmt: skip
            continue
        longest = max(map(len, actions), default=0)
        if longest > MAX_REPLAYED_ACTION_CHARS:
            problems.group(
                file, line, "replay",
                f"{where} has an action of {longest} characters, over the {MAX_REPLAYED_ACTION_CHARS} "
                "a submission may hold (a model's reply is far shorter)",
            )  # fmt: skip
            continue
        try:
            replay = replayer.replay(env_id, kwargs, record, actions)
        except GatherError as exc:
            problems.group(file, line, "replay", f"{where} cannot be replayed: {exc}")
            continue
        _compare(record, actions, replay, where, file, line, problems)


def _compare(
    record: EpisodeRecord,
    actions: Sequence[str],
    replay: Replay,
    where: str,
    file: Path,
    line: int,
    problems: Problems,
) -> None:
    """Refuse each field of ``record`` that differs from its ``replay``."""
    if record.is_infra_error:
        if replay.finished:
            problems.group(
                file, line, "infra-finished",
                f"{where} is an infrastructure error, but its actions end the episode "
                f"({replay.termination}, action {replay.played} of {len(actions)}); an infrastructure error "
                "is an episode cut short",
            )  # fmt: skip
            return
    elif not replay.finished:
        problems.group(
            file, line, "replay-unfinished",
            f"{where}: its {len(actions)} actions do not end the episode, yet it is not an infrastructure error",
        )  # fmt: skip
        return
    elif replay.played < len(actions):
        problems.group(
            file, line, "replay-actions",
            f"{where}: the episode ends at action {replay.played}, but {len(actions)} are recorded",
        )  # fmt: skip
    for name, rule in REPLAYED_FIELDS:
        recorded = getattr(record, name)
        expected = getattr(replay, name)
        if name == "termination" and record.is_infra_error:
            continue
        if name in ("retrieved_doc_ids", "turns") and recorded is None:  # older records
            continue
        if recorded != expected:
            problems.group(
                file, line, rule,
                f"{where}: recorded {name} {json.dumps(recorded)[:60]} but the replay gives {json.dumps(expected)[:60]}",
            )  # fmt: skip
    if record.trajectory is not None:
        shown = [str(step.get("observation")) for step in record.trajectory]
        if shown != list(replay.observations[: len(shown)]) or len(shown) != len(replay.observations):
            first = next(
                (i for i, (a, b) in enumerate(zip(shown, replay.observations)) if a != b),
                min(len(shown), len(replay.observations)),
            )
            problems.group(
                file, line, "replay-observations",
                f"{where}: recorded observation {first} differs from the replay's",
            )  # fmt: skip
        elif (
            record.actions is not None
            and tuple(str(s.get("action")) for s in record.trajectory[1:]) != record.actions
        ):
            problems.group(
                file, line, "replay-observations", f"{where}: the trajectory's actions are not the record's"
            )
