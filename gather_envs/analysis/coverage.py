"""Coverage: does run A, given more tries, already solve what run B solves?

At each budget T, B's boundary B_B is the set of tasks B solved at least once in all its
episodes. For n = 1..n_max (A's fewest episodes on those tasks) the coverage curve is the share
of B_B that A solves within n tries: the mean over B_B of A's unbiased pass@n, which is the
expected |B_B ∩ B_A(n)| / |B_B| over which n of A's episodes are drawn (so it does not depend on
episode order). A curve that reaches 1 says A's boundary contains B's at that many tries: B
learned nothing A could not already do by sampling. The tasks only one run ever solves are
listed with their hop counts. Intervals are a percentile bootstrap over the tasks of B_B.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gather_envs.errors import RecordsError
from gather_envs.metrics.bootstrap import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_SEED,
    bootstrap_weights,
    percentile_interval,
    resampled_means,
    validate_bootstrap_args,
)
from gather_envs.metrics.passk import TaskCounts, count_episodes, per_task_pass_at_k
from gather_envs.records import IN_PROCESS_RETRIEVER, EpisodeRecord


def single(values: Iterable[str], what: str, run: str) -> str:
    """The one value of ``what`` in a run's records; RecordsError when the run mixes several."""
    distinct = sorted(set(values))
    if len(distinct) != 1:
        raise RecordsError(
            f"run {run} mixes {len(distinct)} values of {what} ({distinct[:3]}); give one run per file"
        )
    return distinct[0]


@dataclass(frozen=True)
class BudgetCoverage:
    """Coverage of B's boundary by A at one budget: the curve over n and the one-sided tasks."""

    budget: int
    boundary_b: int
    """|B_B|: tasks B solved at least once."""
    boundary_a: int
    """|B_A(n_max)| as played: tasks A solved at least once in all its episodes."""
    ns: tuple[int, ...]
    coverage: tuple[float, ...]
    ci_low: tuple[float | None, ...]
    ci_high: tuple[float | None, ...]
    only_a: tuple[tuple[str, int], ...]
    """(task id, hops) of the tasks A solved and B never did."""
    only_b: tuple[tuple[str, int], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "T": self.budget,
            "boundary_b": self.boundary_b,
            "boundary_a": self.boundary_a,
            "n": list(self.ns),
            "coverage": list(self.coverage),
            "ci_low": list(self.ci_low),
            "ci_high": list(self.ci_high),
            "only_a": [{"task_id": t, "hops": h} for t, h in self.only_a],
            "only_b": [{"task_id": t, "hops": h} for t, h in self.only_b],
        }


@dataclass(frozen=True)
class Coverage:
    """How much of run B's boundary lies inside run A's, per budget (see the module docstring)."""

    agent_a: str
    agent_b: str
    per_budget: tuple[BudgetCoverage, ...]
    bootstrap: int
    seed: int
    confidence: float

    def at(self, budget: int) -> BudgetCoverage:
        for entry in self.per_budget:
            if entry.budget == budget:
                return entry
        raise KeyError(f"no coverage at T={budget}; budgets: {[e.budget for e in self.per_budget]}")

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_a": self.agent_a,
            "agent_b": self.agent_b,
            "bootstrap": self.bootstrap,
            "seed": self.seed,
            "confidence": self.confidence,
            "per_budget": [entry.to_json() for entry in self.per_budget],
        }


def coverage(
    records_a: Sequence[EpisodeRecord],
    records_b: Sequence[EpisodeRecord],
    *,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Coverage:
    """The coverage of B's boundary by A at every budget both runs played on the same tasks."""
    validate_bootstrap_args(bootstrap, confidence)
    if not records_a or not records_b:
        raise RecordsError("coverage needs records for both runs; one of them is empty")
    corpus_a = single((r.corpus_hash for r in records_a), "corpus hash", "A")
    corpus_b = single((r.corpus_hash for r in records_b), "corpus hash", "B")
    if corpus_a != corpus_b:
        raise RecordsError(
            f"refusing coverage of runs on different corpora (A: {corpus_a!r}, B: {corpus_b!r}); "
            "the same task id names different questions there"
        )
    retriever_a = single((r.retriever or IN_PROCESS_RETRIEVER for r in records_a), "retriever", "A")
    retriever_b = single((r.retriever or IN_PROCESS_RETRIEVER for r in records_b), "retriever", "B")
    if retriever_a != retriever_b:
        raise RecordsError(
            f"refusing coverage of runs searched by different retrievers (A: {retriever_a!r}, B: {retriever_b!r})"
        )
    counts_a, counts_b = count_episodes(records_a), count_episodes(records_b)
    budgets = sorted(set(counts_a) & set(counts_b))
    if not budgets:
        raise RecordsError(f"the runs share no budget (A: {sorted(counts_a)}, B: {sorted(counts_b)})")
    hops = {r.task_id: r.hops for r in (*records_a, *records_b)}
    rng = np.random.default_rng(seed)
    entries = []
    for budget in budgets:
        a, b = counts_a[budget], counts_b[budget]
        if set(a.task_ids) != set(b.task_ids):
            only = sorted(set(a.task_ids) ^ set(b.task_ids))
            raise RecordsError(
                f"the runs cover different tasks at T={budget} ({len(only)} in one run only, e.g. "
                f"{only[0]!r}); coverage needs both runs on the same tasks"
            )
        entries.append(_budget_coverage(budget, a, b, hops, bootstrap, confidence, rng))
    return Coverage(
        agent_a=single((r.agent_id for r in records_a), "agent id", "A"),
        agent_b=single((r.agent_id for r in records_b), "agent id", "B"),
        per_budget=tuple(entries),
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
    )


def _budget_coverage(
    budget: int,
    a: TaskCounts,
    b: TaskCounts,
    hops: dict[str, int],
    bootstrap: int,
    confidence: float,
    rng: np.random.Generator,
) -> BudgetCoverage:
    """The coverage entry of one budget from the two runs' per-task counts there."""
    solved_a = {t for t, c in zip(a.task_ids, a.c, strict=True) if c > 0}
    solved_b = [t for t, c in zip(b.task_ids, b.c, strict=True) if c > 0]
    where = {t: i for i, t in enumerate(a.task_ids)}
    rows = [where[t] for t in solved_b]
    n_a, c_a = np.asarray(a.n)[rows], np.asarray(a.c)[rows]
    ns = tuple(range(1, int(n_a.min()) + 1)) if rows else ()
    per_task = per_task_pass_at_k(n_a, c_a, ns) if rows else np.zeros((0, 0))
    values = tuple(float(v) for v in per_task.mean(axis=0)) if rows else ()
    low: tuple[float | None, ...] = (None,) * len(ns)
    high: tuple[float | None, ...] = (None,) * len(ns)
    if bootstrap and rows:
        samples = resampled_means(bootstrap_weights(len(rows), bootstrap, rng), per_task)
        lo, hi = percentile_interval(samples, confidence)
        low, high = tuple(float(v) for v in lo), tuple(float(v) for v in hi)
    return BudgetCoverage(
        budget=budget,
        boundary_b=len(solved_b),
        boundary_a=len(solved_a),
        ns=ns,
        coverage=values,
        ci_low=low,
        ci_high=high,
        only_a=tuple((t, hops[t]) for t in sorted(solved_a - set(solved_b))),
        only_b=tuple((t, hops[t]) for t in solved_b if t not in solved_a),
    )
