"""The episode record: one finished episode, the unit every metric and report reads.

One episode becomes one :class:`EpisodeRecord`, serialized as one JSON object on one line
(:meth:`EpisodeRecord.to_line`). The file that holds them (writing, reading, repair, locking) is
:mod:`gather_envs.runs`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gather_envs.errors import RecordsError

RECORD_SCHEMA_VERSION = 4
"""2 added ``retrieved_doc_ids`` and ``supporting_doc_ids`` (version 1 records read with them None);
3 added ``turns`` and ``reward_kind`` (older records read with turns None and reward_kind "em");
4 added ``retriever`` (older records read with it None: the env's own BM25 searched)."""
IN_PROCESS_RETRIEVER = "the env's own BM25"
"""How messages name the retriever of a record whose ``retriever`` is None."""

REWARD_KIND_EM = "em"
"""The reward of every record before ``reward_kind`` existed: 1 for an exact-match answer."""

TERMINATION_ANSWERED = "answered"
TERMINATION_INVALID_ACTIONS = "invalid_actions"
TERMINATION_INFRA_ERROR = "infra_error"
TERMINATION_TRUNCATED = "truncated"

AGENT_SETTINGS_KEY = "agent_settings"
"""Key in :attr:`EpisodeRecord.extra` under which agents store their settings (model, sampling...)."""

EPISODE_INDEX_UNKNOWN = -1


@dataclass(frozen=True, kw_only=True)
class EpisodeRecord:
    """One finished episode: what ran (env, corpus, task, budget, seed) and how it went.

    ``infra_error`` holds a message when the episode failed for reasons outside the agent's
    control (server refused, timed out...): such records are excluded from n and counted apart.
    ``retrieved_doc_ids`` holds, per search in order, the ids of the documents it returned, and
    ``supporting_doc_ids`` the task's evidence; both are None where unknown (version 1 records).
    ``tool_calls`` counts the searches the budget T paid for and ``turns`` the replies the env
    took (a reply may hold several calls; None where unknown: records before version 3).
    ``reward_kind`` is the env's declared training reward (``em``, ``f1``, ``cover_em``) that
    ``reward`` was paid in; ``success`` is exact match whatever it is.
    ``actions`` holds the raw reply of every step, in order (what the env parsed), so the episode
    can be replayed; None where not recorded. ``retriever`` is the identity of the remote
    retriever that answered the searches (``scheme:index hash``, see
    :mod:`gather_envs.retrieval.remote`), None when the env searched with its own BM25: with
    ``corpus_hash`` it is what was searched (:attr:`searched`), which comparisons never mix.
    """

    schema_version: int = RECORD_SCHEMA_VERSION
    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    corpus_hash: str
    task_id: str
    family: str = ""
    hops: int = 0
    seed: int | None = None
    budget: int
    episode_index: int = EPISODE_INDEX_UNKNOWN
    tool_calls: int = 0
    turns: int | None = None
    invalid_actions: int = 0
    success: bool
    reward: float = 0.0
    reward_kind: str = REWARD_KIND_EM
    answer: str | None = None
    gold_answer: str = ""
    termination: str = ""
    wall_time: float = 0.0
    agent_id: str = ""
    queries: tuple[str, ...] = ()
    infra_error: str | None = None
    trajectory: tuple[dict[str, Any], ...] | None = None
    actions: tuple[str, ...] | None = None
    retrieved_doc_ids: tuple[tuple[str, ...], ...] | None = None
    supporting_doc_ids: tuple[str, ...] | None = None
    retriever: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Callers often pass lists; store tuples so records stay immutable and compare equal.
        if not isinstance(self.queries, tuple):
            object.__setattr__(self, "queries", tuple(self.queries))
        if self.retrieved_doc_ids is not None:
            object.__setattr__(self, "retrieved_doc_ids", tuple(tuple(ids) for ids in self.retrieved_doc_ids))
        if self.supporting_doc_ids is not None and not isinstance(self.supporting_doc_ids, tuple):
            object.__setattr__(self, "supporting_doc_ids", tuple(self.supporting_doc_ids))
        if self.trajectory is not None and not isinstance(self.trajectory, tuple):
            object.__setattr__(self, "trajectory", tuple(self.trajectory))
        if self.actions is not None and not isinstance(self.actions, tuple):
            object.__setattr__(self, "actions", tuple(self.actions))

    @property
    def searched(self) -> tuple[str, str | None]:
        """What the searches ran over: ``(corpus_hash, retriever)``; runs that differ here are not compared."""
        return self.corpus_hash, self.retriever

    @property
    def is_infra_error(self) -> bool:
        """Whether the episode failed for infrastructure reasons (excluded from n)."""
        return self.infra_error is not None or self.termination == TERMINATION_INFRA_ERROR

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-serializable dict (field order is the schema's)."""
        return {
            "schema_version": self.schema_version,
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "corpus_hash": self.corpus_hash,
            "task_id": self.task_id,
            "family": self.family,
            "hops": self.hops,
            "seed": self.seed,
            "budget": self.budget,
            "episode_index": self.episode_index,
            "tool_calls": self.tool_calls,
            "turns": self.turns,
            "invalid_actions": self.invalid_actions,
            "success": self.success,
            "reward": self.reward,
            "reward_kind": self.reward_kind,
            "answer": self.answer,
            "gold_answer": self.gold_answer,
            "termination": self.termination,
            "wall_time": self.wall_time,
            "agent_id": self.agent_id,
            "queries": list(self.queries),
            "infra_error": self.infra_error,
            "trajectory": None if self.trajectory is None else [dict(s) for s in self.trajectory],
            "actions": None if self.actions is None else list(self.actions),
            "retrieved_doc_ids": (
                None if self.retrieved_doc_ids is None else [list(ids) for ids in self.retrieved_doc_ids]
            ),
            "supporting_doc_ids": None if self.supporting_doc_ids is None else list(self.supporting_doc_ids),
            "retriever": self.retriever,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EpisodeRecord:
        """Rebuild a record; missing optional fields take defaults, missing required ones raise."""
        if not isinstance(data, Mapping):
            raise RecordsError(f"an episode record must be a JSON object, got {type(data).__name__}")
        version = _get(data, "schema_version", int, required=True)
        if version > RECORD_SCHEMA_VERSION:
            raise RecordsError(
                f"record schema_version {version} is newer than this gather-envs supports "
                f"({RECORD_SCHEMA_VERSION}); upgrade gather-envs to read it"
            )
        queries = _get(data, "queries", list, default=[])
        trajectory = _get(data, "trajectory", list, default=None, nullable=True)
        actions = _get(data, "actions", list, default=None, nullable=True)
        retrieved = _get(data, "retrieved_doc_ids", list, default=None, nullable=True)
        supporting = _get(data, "supporting_doc_ids", list, default=None, nullable=True)
        return cls(
            schema_version=version,
            env_id=_get(data, "env_id", str, required=True),
            env_kwargs=_get(data, "env_kwargs", dict, default={}),
            corpus_hash=_get(data, "corpus_hash", str, required=True),
            task_id=_get(data, "task_id", str, required=True),
            family=_get(data, "family", str, default=""),
            hops=_get(data, "hops", int, default=0),
            seed=_get(data, "seed", int, default=None, nullable=True),
            budget=_get(data, "budget", int, required=True),
            episode_index=_get(data, "episode_index", int, default=EPISODE_INDEX_UNKNOWN),
            tool_calls=_get(data, "tool_calls", int, default=0),
            turns=_get(data, "turns", int, default=None, nullable=True),
            invalid_actions=_get(data, "invalid_actions", int, default=0),
            success=_get(data, "success", bool, required=True),
            reward=float(_get(data, "reward", float, default=0.0)),
            reward_kind=_get(data, "reward_kind", str, default=REWARD_KIND_EM),
            answer=_get(data, "answer", str, default=None, nullable=True),
            gold_answer=_get(data, "gold_answer", str, default=""),
            termination=_get(data, "termination", str, default=""),
            wall_time=float(_get(data, "wall_time", float, default=0.0)),
            agent_id=_get(data, "agent_id", str, default=""),
            queries=tuple(_check_items(queries, str, "queries")),
            infra_error=_get(data, "infra_error", str, default=None, nullable=True),
            trajectory=None if trajectory is None else tuple(_check_items(trajectory, dict, "trajectory")),
            actions=None if actions is None else tuple(_check_items(actions, str, "actions")),
            retrieved_doc_ids=None if retrieved is None else _retrieved(retrieved),
            supporting_doc_ids=None
            if supporting is None
            else tuple(_check_items(supporting, str, "supporting_doc_ids")),
            retriever=_get(data, "retriever", str, default=None, nullable=True),
            extra=_get(data, "extra", dict, default={}),
        )

    def to_line(self) -> bytes:
        """The record as one UTF-8 JSON line, newline included."""
        return (json.dumps(self.to_json(), ensure_ascii=False) + "\n").encode("utf-8")


def _get(
    data: Mapping[str, Any],
    name: str,
    kind: type,
    *,
    required: bool = False,
    default: Any = None,
    nullable: bool = False,
) -> Any:
    """Field ``name`` of ``data`` checked against ``kind``; RecordsError naming the field if wrong."""
    if name not in data:
        if required:
            raise RecordsError(f"episode record is missing required field {name!r}")
        return default
    value = data[name]
    if value is None and nullable:
        return None
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise RecordsError(
            f"episode record field {name!r} must be {kind.__name__}"
            f"{' or null' if nullable else ''}, got {type(value).__name__} {value!r:.60}"
        )
    return value


def _check_items(items: list[Any], kind: type, name: str) -> list[Any]:
    """``items`` unchanged if every element is a ``kind``; RecordsError naming the field if not."""
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            raise RecordsError(
                f"episode record field {name!r}[{i}] must be {kind.__name__}, got {type(item).__name__}"
            )
    return items


def _retrieved(searches: list[Any]) -> tuple[tuple[str, ...], ...]:
    """The ``retrieved_doc_ids`` field checked: a list (one per search) of lists of doc ids."""
    for i, ids in enumerate(_check_items(searches, list, "retrieved_doc_ids")):
        _check_items(ids, str, f"retrieved_doc_ids[{i}]")
    return tuple(tuple(ids) for ids in searches)
