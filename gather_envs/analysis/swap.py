"""Cross-policy swap tables: which turns carry the gain of one policy over another?

A swap run (agent ``swap``, see :mod:`gather_envs.agents.swap`) plays the first J turns of each
episode with policy A and the rest with policy B. Played on the same cells as the pure runs of A
and B (same tasks, budgets, n and seed, so episode i has the same seed in all of them), each swap
run is compared with both pure runs by :func:`~gather_envs.metrics.compare_runs`: PASS@(k,T) of
the swap with its interval, its paired difference from pure A and from pure B with intervals,
and McNemar's exact test on the boundary sets. If swapping in B after J turns keeps A's success,
the turns after J do not carry A's advantage; where it falls to B's, they do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gather_envs.agents.swap import SWAP_KEY
from gather_envs.errors import RecordsError
from gather_envs.metrics.bootstrap import DEFAULT_BOOTSTRAP, DEFAULT_SEED
from gather_envs.metrics.compare import BudgetComparison, compare_runs
from gather_envs.records import AGENT_SETTINGS_KEY, EpisodeRecord

DEFAULT_K = 1


@dataclass(frozen=True)
class SwapRow:
    """One swap run (first → then after J turns) at one budget and k, against both pure runs."""

    first: str
    then: str
    after: int
    budget: int
    k: int
    pass_at_k: float
    ci_low: float | None
    ci_high: float | None
    vs_first: float
    vs_first_low: float | None
    vs_first_high: float | None
    vs_first_p: float
    vs_then: float
    vs_then_low: float | None
    vs_then_high: float | None
    vs_then_p: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def swap_of(record: EpisodeRecord) -> tuple[str, str, int] | None:
    """(first, then, J) of a swap run's record; None for a record of a pure run."""
    settings = record.extra.get(AGENT_SETTINGS_KEY, {})
    swap = settings.get(SWAP_KEY) if isinstance(settings, dict) else None
    if not isinstance(swap, dict):
        return None
    return str(swap["first"]), str(swap["then"]), int(swap["after"])


def _row(swap: tuple[str, str, int], k: int, vs_a: BudgetComparison, vs_b: BudgetComparison) -> SwapRow:
    if k not in vs_a.ks:
        raise RecordsError(
            f"k={k} is not in the compared grid {list(vs_a.ks)} at T={vs_a.budget}; pick a smaller --k"
        )
    i, j = vs_a.ks.index(k), vs_b.ks.index(k)
    return SwapRow(
        first=swap[0],
        then=swap[1],
        after=swap[2],
        budget=vs_a.budget,
        k=k,
        pass_at_k=vs_a.pass_a[i],
        ci_low=vs_a.pass_a_low[i],
        ci_high=vs_a.pass_a_high[i],
        vs_first=vs_a.diff[i],
        vs_first_low=vs_a.diff_low[i],
        vs_first_high=vs_a.diff_high[i],
        vs_first_p=vs_a.mcnemar_p,
        vs_then=vs_b.diff[j],
        vs_then_low=vs_b.diff_low[j],
        vs_then_high=vs_b.diff_high[j],
        vs_then_p=vs_b.mcnemar_p,
    )


def swap_table(
    runs: Sequence[Sequence[EpisodeRecord]],
    *,
    ks: Sequence[int] = (DEFAULT_K,),
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> list[SwapRow]:
    """Every swap run among ``runs`` against the pure runs of its two policies, per (T, k).

    ``runs`` holds the pure runs and the swap runs, one list of records each; rows are sorted by
    (first, then, J, T, k). A swap run whose pure runs are missing is a RecordsError naming them.
    """
    pure: dict[str, Sequence[EpisodeRecord]] = {}
    swaps: dict[tuple[str, str, int], list[EpisodeRecord]] = defaultdict(list)
    for records in runs:
        if not records:
            continue
        kind = swap_of(records[0])
        if kind is None:
            pure[records[0].agent_id] = records
        else:
            swaps[kind].extend(records)
    if not swaps:
        raise RecordsError("no swap run among the records; make one with `gather-envs eval ... --agent swap`")
    rows = []
    for key in sorted(swaps):
        first, then, _ = key
        missing = [name for name in (first, then) if name not in pure]
        if missing:
            raise RecordsError(
                f"swap run {first}>{then}@{key[2]} needs the pure run(s) of {', '.join(missing)} on the "
                f"same cells; run `gather-envs eval ... --agent {missing[0]}` with the same --n, --budgets, "
                "--tasks and --seed"
            )
        vs_a = compare_runs(swaps[key], pure[first], bootstrap=bootstrap, seed=seed)
        vs_b = compare_runs(swaps[key], pure[then], bootstrap=bootstrap, seed=seed)
        for entry_a, entry_b in zip(vs_a.per_budget, vs_b.per_budget, strict=True):
            rows.extend(_row(key, k, entry_a, entry_b) for k in ks)
    return rows


def swap_curves(rows: Sequence[SwapRow]) -> Mapping[tuple[str, str, int, int], list[SwapRow]]:
    """Rows grouped by (first, then, T, k), each group in J order: the curves of the swap plot."""
    curves: dict[tuple[str, str, int, int], list[SwapRow]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r.first, r.then, r.budget, r.k, r.after)):
        curves[(row.first, row.then, row.budget, row.k)].append(row)
    return dict(curves)
