"""Retrieval diagnostics: did the agent find the evidence, and did it use what it found?

Per episode: which of the task's supporting documents any search returned (evidence recall),
how many searches repeated an earlier one, and how many searches were used. Per run: success by
hop count, success given full evidence vs not (so "never found it" reads apart from "found it
and failed to use it"), and the distribution of searches used. Records written before schema
version 2 hold no retrieved doc ids: they count as "not recorded", never as zero recall.
Infrastructure-error episodes are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gather_envs.metrics.diversity import normalize_query
from gather_envs.records import EpisodeRecord


@dataclass(frozen=True)
class EpisodeRetrieval:
    """One episode's retrieval: evidence recall (None when not recorded), repeats and searches."""

    task_id: str
    hops: int
    success: bool
    searches: int
    repeated_queries: int
    found: tuple[str, ...] | None
    """The supporting doc ids that some search returned, in the task's order (None: not recorded)."""
    supporting: tuple[str, ...] | None

    @property
    def recall(self) -> float | None:
        """Fraction of the supporting documents retrieved (None when not recorded or no evidence)."""
        if self.found is None or not self.supporting:
            return None
        return len(self.found) / len(self.supporting)

    @property
    def full_evidence(self) -> bool | None:
        """Whether every supporting document was retrieved (None when not recorded)."""
        if self.found is None or not self.supporting:
            return None
        return len(self.found) == len(self.supporting)


def repeated_queries(queries: Iterable[str]) -> int:
    """How many queries repeat an earlier one of the same episode (case and spaces ignored).

    >>> repeated_queries(["Paris", "paris ", "Rome", "PARIS"])
    2
    """
    seen: set[str] = set()
    repeats = 0
    for query in queries:
        key = normalize_query(query)
        repeats += key in seen
        seen.add(key)
    return repeats


def episode_retrieval(record: EpisodeRecord) -> EpisodeRetrieval:
    """The retrieval diagnostics of one record."""
    found: tuple[str, ...] | None = None
    if record.retrieved_doc_ids is not None and record.supporting_doc_ids is not None:
        returned = {doc_id for ids in record.retrieved_doc_ids for doc_id in ids}
        found = tuple(doc_id for doc_id in record.supporting_doc_ids if doc_id in returned)
    return EpisodeRetrieval(
        task_id=record.task_id,
        hops=record.hops,
        success=record.success,
        searches=len(record.queries),
        repeated_queries=repeated_queries(record.queries),
        found=found,
        supporting=record.supporting_doc_ids,
    )


@dataclass(frozen=True)
class Rate:
    """Successes out of episodes; ``rate`` is None for no episodes."""

    successes: int
    episodes: int

    @property
    def rate(self) -> float | None:
        return self.successes / self.episodes if self.episodes else None

    def to_json(self) -> dict[str, Any]:
        return {"successes": self.successes, "episodes": self.episodes, "rate": self.rate}


@dataclass(frozen=True)
class RetrievalDiagnostics:
    """One run's retrieval diagnostics (see the module docstring), with every episode's row.

    ``searches_histogram`` maps a number of searches used to how many episodes used it;
    ``with_full_evidence`` / ``without_full_evidence`` are success rates over the episodes that
    did / did not retrieve every supporting document; ``not_recorded`` counts the rest.
    """

    agent_id: str
    episodes: tuple[EpisodeRetrieval, ...]
    mean_recall: float | None
    by_hops: dict[int, Rate]
    with_full_evidence: Rate
    without_full_evidence: Rate
    not_recorded: int
    searches_histogram: dict[int, int]
    episodes_with_repeats: int
    repeated_queries: int

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "episodes": len(self.episodes),
            "mean_recall": self.mean_recall,
            "by_hops": {str(h): r.to_json() for h, r in self.by_hops.items()},
            "with_full_evidence": self.with_full_evidence.to_json(),
            "without_full_evidence": self.without_full_evidence.to_json(),
            "not_recorded": self.not_recorded,
            "searches_histogram": {str(s): c for s, c in self.searches_histogram.items()},
            "episodes_with_repeats": self.episodes_with_repeats,
            "repeated_queries": self.repeated_queries,
        }


def _rate(rows: Iterable[EpisodeRetrieval]) -> Rate:
    rows = list(rows)
    return Rate(sum(row.success for row in rows), len(rows))


def retrieval_diagnostics(records: Iterable[EpisodeRecord], agent_id: str = "") -> RetrievalDiagnostics:
    """The retrieval diagnostics of one run's records (infrastructure errors left out)."""
    rows = tuple(episode_retrieval(r) for r in records if not r.is_infra_error)
    hops: dict[int, list[EpisodeRetrieval]] = defaultdict(list)
    searches: dict[int, int] = defaultdict(int)
    for row in rows:
        hops[row.hops].append(row)
        searches[row.searches] += 1
    recalls = [row.recall for row in rows if row.recall is not None]
    return RetrievalDiagnostics(
        agent_id=agent_id,
        episodes=rows,
        mean_recall=sum(recalls) / len(recalls) if recalls else None,
        by_hops={h: _rate(hops[h]) for h in sorted(hops)},
        with_full_evidence=_rate(row for row in rows if row.full_evidence is True),
        without_full_evidence=_rate(row for row in rows if row.full_evidence is False),
        not_recorded=sum(row.full_evidence is None for row in rows),
        searches_histogram={s: searches[s] for s in sorted(searches)},
        episodes_with_repeats=sum(row.repeated_queries > 0 for row in rows),
        repeated_queries=sum(row.repeated_queries for row in rows),
    )


def retrieval_by_agent(records: Iterable[EpisodeRecord]) -> dict[str, RetrievalDiagnostics]:
    """Retrieval diagnostics per agent id, agents in sorted order."""
    groups: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        groups[record.agent_id].append(record)
    return {agent: retrieval_diagnostics(groups[agent], agent) for agent in sorted(groups)}
