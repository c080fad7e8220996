"""PASS@(k,T): the unbiased estimator, bootstrap intervals over tasks, the boundary B_T and T*.

From n episodes of a task of which c succeeded, ``1 - C(n-c, k) / C(n, k)`` estimates without bias
the probability that at least one of k episodes succeeds; PASS@(k,T) is its mean over tasks at
budget T. Intervals come from a seeded percentile bootstrap over tasks: each resample draws tasks
with replacement and averages their per-task estimates, so an interval speaks for the population of
tasks the task set was drawn from (episode noise included, since each task's estimate carries it).
For the fixed task set alone such an interval is conservative (wider than the episode noise needs).

All budgets of one table share the resampled tasks (a resample draws from the tasks seen at any
budget; at budget T it averages those of its tasks that ran at T), which makes differences between
budgets paired. That is what :func:`gather_envs.metrics.boundary.t_star` needs. The bootstrap lives in
:mod:`gather_envs.metrics.bootstrap`, the boundary and T* in :mod:`gather_envs.metrics.boundary`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike

from gather_envs.errors import ConfigError, RecordsError
from gather_envs.metrics.bootstrap import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_SEED,
    FloatArray,
    IntArray,
    bootstrap_weights,
    percentile_interval,
    resampled_means,
    task_columns,
    validate_bootstrap_args,
)
from gather_envs.metrics.boundary import Boundary, boundary, t_star_from_samples
from gather_envs.records import EpisodeRecord
from gather_envs.runs import check_unique_cells

# --------------------------------------------------------------------------------------------
# The estimator


def _as_counts(value: ArrayLike, name: str) -> IntArray:
    """``value`` as an int64 array of whole, non-negative numbers; ConfigError otherwise."""
    arr = np.asarray(value)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.floor(arr)):
            raise ConfigError(f"pass_at_k: {name} must hold whole numbers, got {value!r:.80}")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise ConfigError(f"pass_at_k: {name} must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ConfigError(f"pass_at_k: {name} must be >= 0, got {int(arr.min())}")
    return arr


def _fail_ratio_table(n: int, ks: IntArray, max_c: int) -> FloatArray:
    """[max_c+1 × len(ks)]: entry [c, j] = C(n-c, k_j) / C(n, k_j), built as a running product.

    Row c is prod_{i=n-c+1}^{n} (i - k_j) / i; the factor is 0 at i = k_j, so every row with
    n - c < k_j is exactly 0. Each factor carries one rounding, the product about c of them.
    """
    i = np.arange(n, n - max_c, -1, dtype=np.float64)[:, None]
    factors = np.maximum(i - ks[None, :].astype(np.float64), 0.0) / i
    table = np.empty((max_c + 1, ks.size), dtype=np.float64)
    table[0] = 1.0
    np.cumprod(factors, axis=0, out=table[1:])
    return table


@overload
def pass_at_k(n: int, c: int, k: int) -> float: ...
@overload
def pass_at_k(n: ArrayLike, c: ArrayLike, k: ArrayLike) -> float | FloatArray: ...
def pass_at_k(n: ArrayLike, c: ArrayLike, k: ArrayLike) -> float | FloatArray:
    """Unbiased pass@k from n episodes with c successes: 1 - C(n-c, k) / C(n, k).

    Computed in product form (no large binomials) and broadcast over all three arguments; returns
    a float when all are scalars. k = 0 gives 0.

    >>> pass_at_k(4, 1, 2)
    0.5
    >>> pass_at_k(10, [0, 10], 3).tolist()
    [0.0, 1.0]
    """
    n_arr, c_arr, k_arr = _as_counts(n, "n"), _as_counts(c, "c"), _as_counts(k, "k")
    try:
        n_b, c_b, k_b = np.broadcast_arrays(n_arr, c_arr, k_arr)
    except ValueError as exc:
        raise ConfigError(
            f"pass_at_k: shapes of n {n_arr.shape}, c {c_arr.shape} and k {k_arr.shape} do not broadcast"
        ) from exc
    if np.any(c_b > n_b):
        where = np.argmax(c_b > n_b)
        raise ConfigError(
            f"pass_at_k: c = {int(c_b.flat[where])} successes exceed n = {int(n_b.flat[where])} episodes"
        )
    if np.any(k_b > n_b):
        where = np.argmax(k_b > n_b)
        raise ConfigError(
            f"pass_at_k: k = {int(k_b.flat[where])} exceeds n = {int(n_b.flat[where])} episodes; "
            "the unbiased estimator needs n >= k (run more episodes or lower k)"
        )
    n_flat, c_flat, k_flat = n_b.ravel(), c_b.ravel(), k_b.ravel()
    out = np.empty(n_flat.size, dtype=np.float64)
    if n_flat.size:
        # One running-product table per distinct n, then a lookup for every (c, k).
        order = np.argsort(n_flat, kind="stable")
        n_sorted = n_flat[order]
        values, starts = np.unique(n_sorted, return_index=True)
        stops = np.append(starts[1:], n_sorted.size)
        for n_value, start, stop in zip(values.tolist(), starts.tolist(), stops.tolist(), strict=True):
            idx = order[start:stop]
            uniq_k, k_pos = np.unique(k_flat[idx], return_inverse=True)
            c_group = c_flat[idx]
            table = _fail_ratio_table(n_value, uniq_k, int(c_group.max()))
            out[idx] = 1.0 - table[c_group, k_pos.ravel()]
    if n_b.ndim == 0:
        return float(out[0])
    return out.reshape(n_b.shape)


def default_ks(n: int) -> tuple[int, ...]:
    """The k grid for n episodes: 1, 2, 4, ... up to n, plus n itself if not a power of two.

    >>> default_ks(64)
    (1, 2, 4, 8, 16, 32, 64)
    >>> default_ks(48)
    (1, 2, 4, 8, 16, 32, 48)
    """
    if n < 1:
        return ()
    ks = [1 << e for e in range(n.bit_length()) if (1 << e) <= n]
    if ks[-1] != n:
        ks.append(n)
    return tuple(ks)


def per_task_pass_at_k(n: ArrayLike, c: ArrayLike, ks: Sequence[int] | ArrayLike) -> FloatArray:
    """[tasks × len(ks)] matrix of per-task pass@k estimates (each task with its own n)."""
    n_arr = np.asarray(n).reshape(-1, 1)
    c_arr = np.asarray(c).reshape(-1, 1)
    k_arr = np.asarray(ks).reshape(1, -1)
    return np.asarray(pass_at_k(n_arr, c_arr, k_arr), dtype=np.float64).reshape(
        n_arr.shape[0], k_arr.shape[1]
    )




# --------------------------------------------------------------------------------------------
# From records to counts


@dataclass(frozen=True)
class TaskCounts:
    """Per-task episodes n and successes c at one budget, infrastructure errors excluded.

    ``task_ids`` is sorted; ``infra_errors`` counts the excluded records and ``infra_only_tasks``
    the tasks left with no episode at all (they are absent from ``task_ids``).
    """

    task_ids: tuple[str, ...]
    n: tuple[int, ...]
    c: tuple[int, ...]
    infra_errors: int = 0
    infra_only_tasks: int = 0

    def __post_init__(self) -> None:
        if not len(self.task_ids) == len(self.n) == len(self.c):
            raise ConfigError(
                f"TaskCounts: {len(self.task_ids)} task ids, {len(self.n)} n and {len(self.c)} c"
            )
        if len(set(self.task_ids)) != len(self.task_ids):
            raise ConfigError("TaskCounts: task ids must be distinct (one entry per task)")


def count_episodes(records: Iterable[EpisodeRecord]) -> dict[int, TaskCounts]:
    """Per budget T (sorted): each task's (n, c), infrastructure errors excluded and counted.

    A (task, T, episode) cell with two records is refused (RecordsError naming both), since it
    would silently inflate n (see :func:`gather_envs.runs.check_unique_cells`).
    """
    records = list(records)
    check_unique_cells(records)
    n: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    c: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    infra: dict[int, int] = defaultdict(int)
    infra_tasks: dict[int, set[str]] = defaultdict(set)
    for record in records:
        if record.is_infra_error:
            infra[record.budget] += 1
            infra_tasks[record.budget].add(record.task_id)
            continue
        n[record.budget][record.task_id] += 1
        c[record.budget][record.task_id] += int(record.success)
    counts: dict[int, TaskCounts] = {}
    for budget in sorted(set(n) | set(infra)):
        ids = tuple(sorted(n[budget]))
        counts[budget] = TaskCounts(
            task_ids=ids,
            n=tuple(n[budget][t] for t in ids),
            c=tuple(c[budget][t] for t in ids),
            infra_errors=infra[budget],
            infra_only_tasks=len(infra_tasks[budget] - set(ids)),
        )
    return counts


def split_by_family(records: Iterable[EpisodeRecord]) -> dict[str, list[EpisodeRecord]]:
    """Records grouped by task family, families in sorted order."""
    groups: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        groups[record.family].append(record)
    return {family: groups[family] for family in sorted(groups)}


# --------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class PassRow:
    """One cell of the table: PASS@(k,T) and its interval (None without bootstrap)."""

    budget: int
    k: int
    pass_at_k: float
    ci_low: float | None
    ci_high: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "T": self.budget,
            "k": self.k,
            "pass": self.pass_at_k,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PassRow:
        try:
            return cls(
                budget=int(data["T"]),
                k=int(data["k"]),
                pass_at_k=float(data["pass"]),
                ci_low=None if data.get("ci_low") is None else float(data["ci_low"]),
                ci_high=None if data.get("ci_high") is None else float(data["ci_high"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordsError(f"malformed table row {dict(data)!r:.120}: {exc!r}") from exc


@dataclass(frozen=True)
class PassTable:
    """PASS@(k,T) for a grid of budgets and k, with intervals, boundaries and T*.

    ``rows`` holds one :class:`PassRow` per (T, k) with k <= the smallest n among T's tasks.
    ``t_star`` is computed on the tasks present at every budget and the k valid at every budget
    (None without bootstrap or without such tasks); ``t_star_by_k`` maps those k to T*(k).
    ``floor`` is the chance floor PASS@(k,0) of these tasks at the table's k (see
    :mod:`gather_envs.metrics.floor`), empty when the corpus has none.
    """

    budgets: tuple[int, ...]
    ks: tuple[int, ...]
    rows: tuple[PassRow, ...]
    num_tasks: dict[int, int]
    n_min: dict[int, int]
    n_max: dict[int, int]
    boundary: dict[int, Boundary]
    infra_errors: dict[int, int]
    infra_only_tasks: dict[int, int]
    t_star: int | None
    t_star_by_k: dict[int, int]
    bootstrap: int
    seed: int
    confidence: float
    floor: dict[int, float] = field(default_factory=dict)

    def row(self, budget: int, k: int) -> PassRow:
        """The cell (T, k); ConfigError if the table has none."""
        for row in self.rows:
            if row.budget == budget and row.k == k:
                return row
        raise ConfigError(f"the table has no PASS@(k={k}, T={budget}) (budgets {self.budgets})")

    def curve(self, budget: int) -> tuple[PassRow, ...]:
        """The rows of budget T in increasing k."""
        return tuple(row for row in self.rows if row.budget == budget)

    def to_json(self) -> dict[str, Any]:
        """The table section of the results JSON (budgets as string keys)."""
        return {
            "budgets": list(self.budgets),
            "ks": list(self.ks),
            "table": [row.to_json() for row in self.rows],
            "boundary": {str(t): b.size for t, b in self.boundary.items()},
            "boundary_ids": {str(t): list(b.ids) for t, b in self.boundary.items()},
            "t_star": self.t_star,
            "t_star_by_k": {str(k): t for k, t in self.t_star_by_k.items()},
            "tasks_per_budget": {str(t): v for t, v in self.num_tasks.items()},
            "n_min": {str(t): v for t, v in self.n_min.items()},
            "n_max": {str(t): v for t, v in self.n_max.items()},
            "infra_errors": {str(t): v for t, v in self.infra_errors.items()},
            "infra_only_tasks": {str(t): v for t, v in self.infra_only_tasks.items()},
            "chance_floor": {str(k): v for k, v in self.floor.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, bootstrap: int, seed: int, confidence: float) -> PassTable:
        """Inverse of :meth:`to_json`; the bootstrap settings live beside the section."""
        try:
            ids = {int(t): tuple(str(i) for i in v) for t, v in data["boundary_ids"].items()}
            sizes = {int(t): int(v) for t, v in data["boundary"].items()}
            return cls(
                budgets=tuple(int(t) for t in data["budgets"]),
                ks=tuple(int(k) for k in data["ks"]),
                rows=tuple(PassRow.from_json(r) for r in data["table"]),
                num_tasks=_int_map(data["tasks_per_budget"]),
                n_min=_int_map(data["n_min"]),
                n_max=_int_map(data["n_max"]),
                boundary={t: Boundary(size=sizes[t], ids=ids.get(t, ())) for t in sizes},
                infra_errors=_int_map(data["infra_errors"]),
                infra_only_tasks=_int_map(data.get("infra_only_tasks", {})),
                t_star=None if data["t_star"] is None else int(data["t_star"]),
                t_star_by_k=_int_map(data["t_star_by_k"]),
                bootstrap=bootstrap,
                seed=seed,
                confidence=confidence,
                floor={int(k): float(v) for k, v in data.get("chance_floor", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RecordsError(f"malformed PASS@(k,T) table section: missing or bad {exc!r}") from exc


def _int_map(data: Mapping[str, Any]) -> dict[int, int]:
    return {int(key): int(value) for key, value in data.items()}


def pass_table(
    counts: Mapping[int, TaskCounts],
    *,
    ks: Sequence[int] | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PassTable:
    """The PASS@(k,T) table from per-budget task counts.

    Each task uses its own n; at budget T the k grid stops at the smallest n among T's tasks
    (default grid :func:`default_ks`; an explicit ``ks`` is cut the same way). Intervals: a
    percentile bootstrap over tasks with ``bootstrap`` resamples from
    ``numpy.random.default_rng(seed)``, shared by all budgets (see the module docstring).
    """
    validate_bootstrap_args(bootstrap, confidence)
    budgets = tuple(sorted(counts))
    if not budgets:
        raise ConfigError("pass_table: no budgets (no episode records?)")
    wanted: list[int] = []
    if ks is not None:
        wanted = sorted({int(k) for k in ks})
        if not wanted or wanted[0] < 1:
            raise ConfigError(f"pass_table: ks must be positive integers, got {list(ks)}")

    union = sorted({t for tc in counts.values() for t in tc.task_ids})
    position = {task: i for i, task in enumerate(union)}
    weights = bootstrap_weights(len(union), bootstrap, np.random.default_rng(seed))

    rows: list[PassRow] = []
    all_ks: set[int] = set()
    per_budget: dict[int, tuple[IntArray, tuple[int, ...], FloatArray]] = {}
    num_tasks, n_min, n_max, bounds, infra, infra_only = {}, {}, {}, {}, {}, {}
    for budget in budgets:
        tc = counts[budget]
        n = np.asarray(tc.n, dtype=np.int64)
        c = np.asarray(tc.c, dtype=np.int64)
        num_tasks[budget] = len(tc.task_ids)
        infra[budget] = tc.infra_errors
        infra_only[budget] = tc.infra_only_tasks
        bounds[budget] = boundary(tc.task_ids, c)
        if n.size and n.min() < 1:
            raise ConfigError(f"pass_table: a task at T={budget} has n = 0 episodes")
        n_min[budget] = int(n.min()) if n.size else 0
        n_max[budget] = int(n.max()) if n.size else 0
        budget_ks = default_ks(n_min[budget])
        if ks is not None:
            budget_ks = tuple(k for k in wanted if k <= n_min[budget])
        if not budget_ks:
            continue
        all_ks.update(budget_ks)
        matrix = per_task_pass_at_k(n, c, budget_ks)
        index = np.fromiter((position[t] for t in tc.task_ids), dtype=np.int64, count=n.size)
        per_budget[budget] = (index, budget_ks, matrix)
        estimate = matrix.mean(axis=0)
        if bootstrap:
            low, high = percentile_interval(
                resampled_means(task_columns(weights, index, len(union)), matrix), confidence
            )
            lows, highs = low.tolist(), high.tolist()
        else:
            lows = highs = [None] * len(budget_ks)
        rows.extend(
            PassRow(budget, k, float(p), lo, hi)
            for k, p, lo, hi in zip(budget_ks, estimate.tolist(), lows, highs, strict=True)
        )
    if ks is not None and not all_ks:
        raise ConfigError(f"pass_table: every k in {wanted} exceeds the episodes per task")

    t_star_value, t_star_by_k = _table_t_star(per_budget, budgets, weights, confidence)
    return PassTable(
        budgets=budgets,
        ks=tuple(sorted(all_ks)),
        rows=tuple(rows),
        num_tasks=num_tasks,
        n_min=n_min,
        n_max=n_max,
        boundary=bounds,
        infra_errors=infra,
        infra_only_tasks=infra_only,
        t_star=t_star_value,
        t_star_by_k=t_star_by_k,
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
    )



def _table_t_star(
    per_budget: Mapping[int, tuple[IntArray, tuple[int, ...], FloatArray]],
    budgets: tuple[int, ...],
    weights: FloatArray,
    confidence: float,
) -> tuple[int | None, dict[int, int]]:
    """T* on the tasks present at every budget and the k valid at every budget."""
    if weights.shape[0] == 0 or len(per_budget) != len(budgets):
        return None, {}
    common = None
    for index, _, _ in per_budget.values():
        common = index if common is None else np.intersect1d(common, index)
    common_ks = sorted(set.intersection(*(set(ks) for _, ks, _ in per_budget.values())))
    if common is None or common.size == 0 or not common_ks:
        return None, {}
    common_weights = task_columns(weights, common, weights.shape[1])
    samples: dict[int, FloatArray] = {}
    for budget, (index, budget_ks, matrix) in per_budget.items():
        where = np.full(weights.shape[1], -1, dtype=np.int64)
        where[index] = np.arange(index.size)
        rows = where[common]
        cols = np.array([budget_ks.index(k) for k in common_ks], dtype=np.int64)
        samples[budget] = resampled_means(common_weights, matrix[np.ix_(rows, cols)])
    result = t_star_from_samples(samples, confidence)
    return result.overall, dict(zip(common_ks, result.per_column, strict=True))


def pass_table_from_records(
    records: Iterable[EpisodeRecord],
    *,
    ks: Sequence[int] | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PassTable:
    """:func:`pass_table` of :func:`count_episodes` of the records."""
    return pass_table(count_episodes(records), ks=ks, bootstrap=bootstrap, seed=seed, confidence=confidence)
