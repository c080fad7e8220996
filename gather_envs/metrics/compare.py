"""Comparing two agents on the same tasks: paired difference curves, crossing k*, boundary sets.

Both runs must come from one corpus and cover the same tasks at each compared budget; pass
``restrict_to_common=True`` to compare on the tasks (and budgets) both runs share instead. Runs on
different corpora are always refused: equal task ids there name different questions. Each run
must be one agent on one env, with one record per (task, T, episode) cell.

Curves, differences, boundary sets and McNemar's test all use the episodes both runs played,
matched by episode index (the first n_min indices of each (task, T) when one run is longer), so
both sides rest on the same tries: "solved at least once" depends on how many tries a task got
(64 episodes against 4 made one agent look far ahead of itself), and the runner gives episode i
the same seed in both runs, which pairs the curves episode by episode as well as task by task.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

from gather_envs.errors import ConfigError, RecordsError
from gather_envs.metrics.floor import ChanceFloor, at_ks, floor_for_families, parse_chance_floor
from gather_envs.metrics.passk import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_SEED,
    TaskCounts,
    bootstrap_weights,
    count_episodes,
    default_ks,
    per_task_pass_at_k,
    percentile_interval,
    resampled_means,
    task_columns,
    validate_bootstrap_args,
)
from gather_envs.records import EPISODE_INDEX_UNKNOWN, EpisodeRecord
from gather_envs.runs import check_unique_cells

# Differences smaller than this count as ties when looking for the crossing point.
CROSSING_TOLERANCE = 1e-12

_EXAMPLE_IDS = 5
SIGN_FLIPS = 20_000
"""Random sign assignments in the paired permutation test (p is resolved to about 1/20,000)."""


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pair counts.

    Under the null each discordant task is equally likely to favour A or B, so the smaller count
    is Binomial(only_a + only_b, 1/2); the p-value doubles its lower tail, capped at 1.

    >>> mcnemar_exact(5, 0)
    0.0625
    >>> mcnemar_exact(3, 3)
    1.0
    """
    if only_a < 0 or only_b < 0:
        raise ConfigError(f"mcnemar_exact: counts must be >= 0, got {only_a}, {only_b}")
    total = only_a + only_b
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, i) for i in range(min(only_a, only_b) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**total)))


def holm(pvalues: Sequence[float]) -> tuple[float, ...]:
    """Holm's step-down adjusted p-values, in the order given (family-wise error at most alpha).

    The i-th smallest p is multiplied by (m - i), adjusted values are made non-decreasing in that
    order and capped at 1; a test is significant at level alpha when its adjusted p is below it.

    >>> holm([0.01, 0.04, 0.03])
    (0.03, 0.06, 0.06)
    """
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        adjusted[i] = running
    return tuple(adjusted)


def paired_permutation_p(
    differences: np.ndarray, rng: np.random.Generator, flips: int = SIGN_FLIPS
) -> np.ndarray:
    """Two-sided p-values of mean(differences) = 0, one per column, by flipping task signs.

    ``differences`` is (tasks, ks): each task's PASS_A - PASS_B. Under the null that the two runs
    are exchangeable on every task, each task's difference is as likely negative as positive, so
    the observed |mean| is ranked among the |means| of ``flips`` random sign assignments (the
    same assignments for every k). Tasks are the unit, as in the bootstrap: episodes of one task
    are not independent. ``(1 + hits) / (1 + flips)`` keeps p above 0.

    >>> rng = np.random.default_rng(0)
    >>> float(paired_permutation_p(np.full((12, 1), 0.5), rng)[0]) < 0.001
    True
    >>> float(paired_permutation_p(np.zeros((12, 1)), rng)[0])
    1.0
    """
    tasks = differences.shape[0]
    observed = np.abs(differences.mean(axis=0))
    signs = rng.choice(np.array([-1.0, 1.0]), size=(flips, tasks))
    flipped = np.abs(signs @ differences / tasks)
    hits = (flipped >= observed - CROSSING_TOLERANCE).sum(axis=0)
    return (1.0 + hits) / (1.0 + flips)


def crossing_point(
    ks: Sequence[int], diff: Sequence[float], tolerance: float = CROSSING_TOLERANCE
) -> tuple[float | None, tuple[int, int] | None]:
    """Where the difference curve A - B first changes sign along k.

    Returns ``(k_star, (k_before, k_after))``: ``k_before`` is the last k of the grid with the
    sign the curve starts with, ``k_after`` the first with the opposite sign, and ``k_star`` the
    zero of the straight line through those two points on a log2 k axis. Differences within
    ``tolerance`` of 0 are ties and carry no sign. ``(None, None)`` when the sign never flips.

    >>> crossing_point([1, 2, 4, 8], [-0.1, -0.05, 0.05, 0.1])
    (2.8284271247461903, (2, 4))
    """
    values = [0.0 if abs(d) <= tolerance else float(d) for d in diff]
    start_sign = 0.0
    last_same = -1
    for j, value in enumerate(values):
        if value == 0.0:
            continue
        sign = math.copysign(1.0, value)
        if start_sign == 0.0:
            start_sign, last_same = sign, j
        elif sign == start_sign:
            last_same = j
        else:
            k_lo, k_hi = ks[last_same], ks[j]
            d_lo, d_hi = values[last_same], value
            x_lo, x_hi = math.log2(k_lo), math.log2(k_hi)
            x = x_lo + (0.0 - d_lo) * (x_hi - x_lo) / (d_hi - d_lo)
            return 2.0**x, (int(k_lo), int(k_hi))
    return None, None


def k_star_bootstrap_interval(
    diff_samples: np.ndarray, ks: Sequence[int], confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float | None, float | None]:
    """Percentile interval of k* over bootstrap resamples of the difference curve [resamples x k].

    A resample whose curves never cross counts as k* beyond the grid; an end beyond the grid is
    None (the curves may not cross within it). The bracket of :func:`crossing_point` is not a
    confidence interval: on simulated agents it held the true k* in 17-46% of runs, this interval
    in 94-96% (``benchmarks/bench_calibration.py``).
    """
    values = np.array([crossing_point(ks, row.tolist())[0] or math.inf for row in diff_samples])
    tail = (1.0 - confidence) / 2.0
    low = float(np.quantile(values, tail, method="lower"))
    high = float(np.quantile(values, 1.0 - tail, method="higher"))
    return (None if math.isinf(low) else low), (None if math.isinf(high) else high)


@dataclass(frozen=True)
class BudgetComparison:
    """A against B at one budget T, on ``num_tasks`` shared tasks.

    Curves are over ``ks``; ``diff`` = PASS_A - PASS_B with a paired bootstrap interval (the same
    resampled tasks for both). Interval entries are None without bootstrap. ``n_a`` and ``n_b``
    are (min, max) episodes per task of each run; ``boundary_n`` the (min, max) episodes per task
    both runs played, on which the curves and the boundary sets are computed.
    """

    budget: int
    num_tasks: int
    ks: tuple[int, ...]
    pass_a: tuple[float, ...]
    pass_a_low: tuple[float | None, ...]
    pass_a_high: tuple[float | None, ...]
    pass_b: tuple[float, ...]
    pass_b_low: tuple[float | None, ...]
    pass_b_high: tuple[float | None, ...]
    diff: tuple[float, ...]
    diff_low: tuple[float | None, ...]
    diff_high: tuple[float | None, ...]
    k_star: float | None
    k_star_interval: tuple[int, int] | None
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    both: tuple[str, ...]
    neither: int
    mcnemar_p: float
    n_a: tuple[int, int] | None = None
    n_b: tuple[int, int] | None = None
    boundary_n: tuple[int, int] | None = None
    diff_p: tuple[float | None, ...] = ()  # paired permutation p of each diff (empty: not computed)
    k_star_ci: tuple[float | None, float | None] | None = (
        None  # bootstrap interval of k*; None high: beyond the grid
    )

    @property
    def boundary_is_matched(self) -> bool:
        """Whether the comparison left out episodes of a run (one run had more per task)."""
        if self.boundary_n is None or self.n_a is None or self.n_b is None:
            return False
        return self.boundary_n[0] < max(self.n_a[1], self.n_b[1])

    def to_json(self) -> dict[str, Any]:
        return {
            "T": self.budget,
            "num_tasks": self.num_tasks,
            "ks": list(self.ks),
            "pass_a": list(self.pass_a),
            "pass_a_low": list(self.pass_a_low),
            "pass_a_high": list(self.pass_a_high),
            "pass_b": list(self.pass_b),
            "pass_b_low": list(self.pass_b_low),
            "pass_b_high": list(self.pass_b_high),
            "diff": list(self.diff),
            "diff_low": list(self.diff_low),
            "diff_high": list(self.diff_high),
            "diff_p": list(self.diff_p),
            "k_star": self.k_star,
            "k_star_interval": None if self.k_star_interval is None else list(self.k_star_interval),
            "k_star_ci": None if self.k_star_ci is None else list(self.k_star_ci),
            "boundary": {
                "only_a": list(self.only_a),
                "only_b": list(self.only_b),
                "both": list(self.both),
                "neither": self.neither,
                "mcnemar_p": self.mcnemar_p,
                "episodes_per_task": _pair_json(self.boundary_n),
            },
            "n_a": _pair_json(self.n_a),
            "n_b": _pair_json(self.n_b),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BudgetComparison:
        try:
            bnd = data["boundary"]
            interval = data["k_star_interval"]
            return cls(
                budget=int(data["T"]),
                num_tasks=int(data["num_tasks"]),
                ks=tuple(int(k) for k in data["ks"]),
                pass_a=_floats(data["pass_a"]),
                pass_a_low=_maybe_floats(data["pass_a_low"]),
                pass_a_high=_maybe_floats(data["pass_a_high"]),
                pass_b=_floats(data["pass_b"]),
                pass_b_low=_maybe_floats(data["pass_b_low"]),
                pass_b_high=_maybe_floats(data["pass_b_high"]),
                diff=_floats(data["diff"]),
                diff_low=_maybe_floats(data["diff_low"]),
                diff_high=_maybe_floats(data["diff_high"]),
                diff_p=_maybe_floats(data.get("diff_p", ())),
                k_star=None if data["k_star"] is None else float(data["k_star"]),
                k_star_interval=None if interval is None else (int(interval[0]), int(interval[1])),
                k_star_ci=_k_star_ci(data.get("k_star_ci")),
                only_a=tuple(str(i) for i in bnd["only_a"]),
                only_b=tuple(str(i) for i in bnd["only_b"]),
                both=tuple(str(i) for i in bnd["both"]),
                neither=int(bnd["neither"]),
                mcnemar_p=float(bnd["mcnemar_p"]),
                n_a=_pair(data.get("n_a")),
                n_b=_pair(data.get("n_b")),
                boundary_n=_pair(bnd.get("episodes_per_task")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RecordsError(f"malformed comparison entry: missing or bad {exc!r}") from exc


def _k_star_ci(data: Any) -> tuple[float | None, float | None] | None:
    return None if data is None else tuple(None if v is None else float(v) for v in data[:2])  # type: ignore[return-value]


def _floats(values: Iterable[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _maybe_floats(values: Iterable[Any]) -> tuple[float | None, ...]:
    return tuple(None if v is None else float(v) for v in values)


def _pair_json(pair: tuple[int, int] | None) -> dict[str, int] | None:
    return None if pair is None else {"min": pair[0], "max": pair[1]}


def _pair(data: Any) -> tuple[int, int] | None:
    return None if data is None else (int(data["min"]), int(data["max"]))


def _span(values: Iterable[int]) -> tuple[int, int]:
    items = list(values)
    return (min(items), max(items))


@dataclass(frozen=True)
class ComparisonTest:
    """One test a comparison reports: the curves at (T, k) (permutation p) or the boundary at T (McNemar).

    ``direction`` is +1 when run A is ahead, -1 when B is, 0 on a tie. ``p_holm`` is the Holm-adjusted
    p over the comparison's family of tests; None for the primary endpoint, which is tested alone.
    """

    budget: int
    k: int | None
    p: float
    p_holm: float | None
    direction: int

    @property
    def primary(self) -> bool:
        return self.p_holm is None

    @property
    def decisive_p(self) -> float:
        """The p the verdict compares with alpha: raw for the primary endpoint, Holm's otherwise."""
        return self.p if self.p_holm is None else self.p_holm


def _sign(value: float) -> int:
    return 0 if abs(value) <= CROSSING_TOLERANCE else (1 if value > 0 else -1)


COMPARISON_SCHEMA_VERSION = 2
"""2: boundary sets on matched episodes; labels, env ids, families, n per run and the chance floor."""


@dataclass(frozen=True)
class Comparison:
    """Agent A against agent B, budget by budget.

    ``excluded_tasks`` counts, per budget, the tasks left out because only one run had them
    (always 0 unless ``restricted``). ``label_a``/``label_b`` name the runs in reports (the agent
    ids, or agent and file when both runs are of one agent); ``chance_floor`` is PASS@(k,0) of a
    question-only guesser on the compared tasks (empty when the corpus has none). ``primary`` is
    the (T, k) named up front as the primary endpoint: tested alone, outside the Holm family.
    """

    agent_a: str
    agent_b: str
    corpus_hash: str
    budgets: tuple[int, ...]
    per_budget: tuple[BudgetComparison, ...]
    restricted: bool
    excluded_tasks: dict[int, int]
    bootstrap: int
    seed: int
    confidence: float
    schema_version: int = COMPARISON_SCHEMA_VERSION
    label_a: str = ""
    label_b: str = ""
    env_a: str = ""
    env_b: str = ""
    families: tuple[str, ...] = ()
    chance_floor: dict[int, float] = field(default_factory=dict)
    primary: tuple[int, int] | None = None

    def at(self, budget: int) -> BudgetComparison:
        """The comparison at budget T."""
        for entry in self.per_budget:
            if entry.budget == budget:
                return entry
        raise ConfigError(f"no comparison at T={budget}; compared budgets: {self.budgets}")

    def tests(self) -> tuple[ComparisonTest, ...]:
        """Every test the report makes: the primary endpoint first, then the rest, Holm-adjusted together.

        The family is the curves' permutation tests at each (T, k) (absent in files older than
        them) and the boundary's McNemar test at each T, in report order.
        """
        family: list[ComparisonTest] = []
        first: list[ComparisonTest] = []
        for e in self.per_budget:
            if len(e.diff_p) == len(e.ks):
                for k, d, p in zip(e.ks, e.diff, e.diff_p, strict=True):
                    if p is None:
                        continue
                    test = ComparisonTest(e.budget, k, p, None, _sign(d))
                    (first if self.primary == (e.budget, k) else family).append(test)
            family.append(
                ComparisonTest(e.budget, None, e.mcnemar_p, None, _sign(len(e.only_a) - len(e.only_b)))
            )
        adjusted = holm([t.p for t in family])
        return (*first, *(replace(t, p_holm=q) for t, q in zip(family, adjusted, strict=True)))

    def to_json(self) -> dict[str, Any]:
        """The comparison JSON; Holm-adjusted p beside each raw p (recomputed, not read, by :meth:`from_json`)."""
        holm_of = {(t.budget, t.k): t.p_holm for t in self.tests()}
        entries = []
        for e in self.per_budget:
            entry = e.to_json()
            if len(e.diff_p) == len(e.ks):
                entry["diff_p_holm"] = [holm_of.get((e.budget, k)) for k in e.ks]
            entry["boundary"]["mcnemar_p_holm"] = holm_of[(e.budget, None)]
            entries.append(entry)
        return {
            "schema_version": self.schema_version,
            "agent_a": self.agent_a,
            "agent_b": self.agent_b,
            "label_a": self.label_a,
            "label_b": self.label_b,
            "env_a": self.env_a,
            "env_b": self.env_b,
            "families": list(self.families),
            "chance_floor": {str(k): v for k, v in self.chance_floor.items()},
            "corpus_hash": self.corpus_hash,
            "budgets": list(self.budgets),
            "restricted": self.restricted,
            "excluded_tasks": {str(t): v for t, v in self.excluded_tasks.items()},
            "bootstrap": self.bootstrap,
            "seed": self.seed,
            "confidence": self.confidence,
            "primary": None if self.primary is None else {"T": self.primary[0], "k": self.primary[1]},
            "correction": "holm",
            "per_budget": entries,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Comparison:
        """Inverse of :meth:`to_json`; reads schema 1 too (its boundary sets used every episode)."""
        try:
            version = int(data["schema_version"])
            if version > COMPARISON_SCHEMA_VERSION:
                raise RecordsError(
                    f"comparison schema_version {version} is newer than this gather-envs supports "
                    f"({COMPARISON_SCHEMA_VERSION}); upgrade gather-envs to read it"
                )
            return cls(
                schema_version=version,
                agent_a=str(data["agent_a"]),
                agent_b=str(data["agent_b"]),
                label_a=str(data.get("label_a", data["agent_a"])),
                label_b=str(data.get("label_b", data["agent_b"])),
                env_a=str(data.get("env_a", "")),
                env_b=str(data.get("env_b", "")),
                families=tuple(str(f) for f in data.get("families", ())),
                chance_floor={int(k): float(v) for k, v in data.get("chance_floor", {}).items()},
                corpus_hash=str(data["corpus_hash"]),
                budgets=tuple(int(t) for t in data["budgets"]),
                restricted=bool(data["restricted"]),
                excluded_tasks={int(t): int(v) for t, v in data["excluded_tasks"].items()},
                bootstrap=int(data["bootstrap"]),
                seed=int(data["seed"]),
                confidence=float(data["confidence"]),
                per_budget=tuple(BudgetComparison.from_json(e) for e in data["per_budget"]),
                primary=_primary(data.get("primary")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RecordsError(f"malformed comparison JSON: missing or bad {exc!r}") from exc


def _primary(data: Any) -> tuple[int, int] | None:
    return None if data is None else (int(data["T"]), int(data["k"]))


def _describe_ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_EXAMPLE_IDS])
    return f"{len(ids)} ({shown}{', ...' if len(ids) > _EXAMPLE_IDS else ''})"


def _single(values: Iterable[str], what: str, run: str) -> str:
    distinct = sorted(set(values))
    if len(distinct) > 1:
        raise RecordsError(
            f"run {run} mixes {len(distinct)} {what}s ({', '.join(distinct)}); compare one run of "
            f"one agent on one env per side (split the file by {what})"
        )
    return distinct[0] if distinct else ""


def run_labels(
    agent_a: str, agent_b: str, source_a: str | None = None, source_b: str | None = None
) -> tuple[str, str]:
    """Names for the two runs in reports: the agent ids, or agent plus file when they are equal.

    >>> run_labels("rl", "base")
    ('rl', 'base')
    >>> run_labels("heuristic", "heuristic", "runs/n64.jsonl", "runs/n4.jsonl")
    ('heuristic (n64.jsonl)', 'heuristic (n4.jsonl)')
    """
    if agent_a != agent_b:
        return agent_a, agent_b
    names = ("A", "B")
    if source_a is not None and source_b is not None:
        base_a, base_b = os.path.basename(source_a), os.path.basename(source_b)
        if base_a != base_b:
            names = (base_a, base_b)
        elif source_a != source_b:
            names = (source_a, source_b)
        else:
            names = (f"A: {source_a}", f"B: {source_b}")
    return f"{agent_a} ({names[0]})", f"{agent_b} ({names[1]})"


Outcomes = dict[int, dict[str, dict[int, bool]]]
"""budget -> task -> episode key -> success, infrastructure errors left out."""


def _outcomes(records: Sequence[EpisodeRecord]) -> Outcomes:
    """Each played episode's success by (T, task, episode key).

    The key is the episode index; a (task, T) whose records lack one is keyed by file order.
    """
    grouped: dict[int, dict[str, list[EpisodeRecord]]] = {}
    for record in records:
        if not record.is_infra_error:
            grouped.setdefault(record.budget, {}).setdefault(record.task_id, []).append(record)
    outcomes: Outcomes = {}
    for budget, tasks in grouped.items():
        for task, group in tasks.items():
            if any(r.episode_index == EPISODE_INDEX_UNKNOWN for r in group):
                keys = list(range(len(group)))
            else:
                keys = [r.episode_index for r in group]
            outcomes.setdefault(budget, {})[task] = {
                key: r.success for key, r in zip(keys, group, strict=True)
            }
    return outcomes


def compare_runs(
    records_a: Sequence[EpisodeRecord],
    records_b: Sequence[EpisodeRecord],
    *,
    ks: Sequence[int] | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    restrict_to_common: bool = False,
    sources: tuple[str, str] | None = None,
    chance_floor: ChanceFloor | None = None,
    primary: tuple[int, int] | None = None,
    common_hint: str = "pass restrict_to_common=True",
) -> Comparison:
    """Compare run A with run B per budget on their shared tasks (see the module docstring).

    Infrastructure errors are excluded from n, as in the table. Only the episodes both runs
    played enter (see the module docstring); the k grid at T stops at their smallest number. Bootstrap resamples are drawn once over all compared tasks from
    ``numpy.random.default_rng(seed)`` and shared by both agents and all budgets. ``sources``
    (the runs' file names) appear in errors and label two runs of one agent (:func:`run_labels`);
    ``chance_floor`` (family -> k -> PASS@(k,0)) adds the floor of the compared tasks;
    ``primary`` (T, k) names the primary endpoint (see :meth:`Comparison.tests`).
    ``common_hint`` is what errors tell the caller to do to compare on the shared tasks (the CLI
    names its flag).
    """
    validate_bootstrap_args(bootstrap, confidence)
    if not records_a or not records_b:
        raise RecordsError("compare_runs needs records for both runs; one of them is empty")
    run_a, run_b = ("A", "B") if sources is None else (f"A ({sources[0]})", f"B ({sources[1]})")
    corpus_a = _single((r.corpus_hash for r in records_a), "corpus hash", run_a)
    corpus_b = _single((r.corpus_hash for r in records_b), "corpus hash", run_b)
    if corpus_a != corpus_b:
        raise RecordsError(
            f"refusing to compare runs on different corpora (A: {corpus_a!r}, B: {corpus_b!r}); "
            "the same task id names different questions there. Rerun both on one corpus"
        )
    agent_a = _single((r.agent_id for r in records_a), "agent id", run_a)
    agent_b = _single((r.agent_id for r in records_b), "agent id", run_b)
    env_a = _single((r.env_id for r in records_a), "env id", run_a)
    env_b = _single((r.env_id for r in records_b), "env id", run_b)
    for run, records in ((run_a, records_a), (run_b, records_b)):
        try:
            check_unique_cells(records)
        except RecordsError as exc:
            raise RecordsError(f"run {run}: {exc}") from None
    label_a, label_b = run_labels(agent_a, agent_b, *(sources or (None, None)))
    counts_a, counts_b = count_episodes(records_a), count_episodes(records_b)
    outcomes_a, outcomes_b = _outcomes(records_a), _outcomes(records_b)

    budgets = sorted(set(counts_a) & set(counts_b))
    if set(counts_a) != set(counts_b) and not restrict_to_common:
        raise RecordsError(
            f"the runs cover different budgets (A: {sorted(counts_a)}, B: {sorted(counts_b)}); "
            f"{common_hint} to compare on the shared budgets "
            f"{budgets}"
        )
    shared: dict[int, list[str]] = {}
    excluded: dict[int, int] = {}
    for budget in budgets:
        ids_a, ids_b = set(counts_a[budget].task_ids), set(counts_b[budget].task_ids)
        shared[budget] = sorted(ids_a & ids_b)
        excluded[budget] = len(ids_a ^ ids_b)
        if ids_a != ids_b and not restrict_to_common:
            raise RecordsError(
                f"the runs cover different tasks at T={budget}: only in A "
                f"{_describe_ids(sorted(ids_a - ids_b))}, only in B "
                f"{_describe_ids(sorted(ids_b - ids_a))}; {common_hint} to "
                f"compare on the {len(shared[budget])} shared tasks"
            )
    budgets = [t for t in budgets if shared[t]]
    if not budgets:
        raise RecordsError("the runs share no task at any common budget; nothing to compare")

    union = sorted({task for t in budgets for task in shared[t]})
    position = {task: i for i, task in enumerate(union)}
    weights = bootstrap_weights(len(union), bootstrap, np.random.default_rng(seed))
    entries = [
        _compare_budget(
            budget,
            shared[budget],
            (counts_a[budget], counts_b[budget]),
            (outcomes_a[budget], outcomes_b[budget]),
            ks,
            task_columns(weights, np.array([position[t] for t in shared[budget]]), len(union)),
            confidence,
            seed,
        )
        for budget in budgets
    ]
    family_of = {r.task_id: r.family for r in records_a}
    tasks_per_family: dict[str, int] = {}
    for task in union:
        tasks_per_family[family_of[task]] = tasks_per_family.get(family_of[task], 0) + 1
    floor = {} if chance_floor is None else parse_chance_floor(chance_floor, "compare_runs", ConfigError)
    all_ks = tuple(sorted({k for entry in entries for k in entry.ks}))
    if primary is not None and not any(e.budget == primary[0] and primary[1] in e.ks for e in entries):
        raise ConfigError(
            f"primary endpoint T={primary[0]}, k={primary[1]} is not in the comparison (budgets "
            f"{list(budgets)}, k {', '.join(f'T={e.budget}: {list(e.ks)}' for e in entries)})"
        )
    return Comparison(
        agent_a=agent_a,
        agent_b=agent_b,
        label_a=label_a,
        label_b=label_b,
        env_a=env_a,
        env_b=env_b,
        families=tuple(sorted(tasks_per_family)),
        chance_floor=at_ks(floor_for_families(floor, tasks_per_family), all_ks),
        corpus_hash=corpus_a,
        budgets=tuple(budgets),
        per_budget=tuple(entries),
        restricted=restrict_to_common,
        excluded_tasks={t: excluded[t] for t in budgets},
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
        primary=primary,
    )


def _aligned(counts: TaskCounts, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, c) of ``counts`` in the order of ``ids``."""
    where = {task: i for i, task in enumerate(counts.task_ids)}
    rows = [where[task] for task in ids]
    return np.asarray(counts.n)[rows], np.asarray(counts.c)[rows]


def _matched_successes(
    budget: int,
    ids: Sequence[str],
    outcomes_a: Mapping[str, Mapping[int, bool]],
    outcomes_b: Mapping[str, Mapping[int, bool]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per task: episodes both runs played (same episode key), and each run's successes among them."""
    matched, c_a, c_b = [], [], []
    for task in ids:
        episodes_a, episodes_b = outcomes_a[task], outcomes_b[task]
        common = sorted(set(episodes_a) & set(episodes_b))
        if not common:
            raise RecordsError(
                f"task {task!r} at T={budget}: the runs share no episode index (A: "
                f"{_span(episodes_a)}, B: {_span(episodes_b)} as (min, max)); boundary sets need "
                "the same episodes from both runs"
            )
        matched.append(len(common))
        c_a.append(sum(episodes_a[key] for key in common))
        c_b.append(sum(episodes_b[key] for key in common))
    return np.asarray(matched), np.asarray(c_a), np.asarray(c_b)


def _compare_budget(
    budget: int,
    ids: Sequence[str],
    counts: tuple[TaskCounts, TaskCounts],
    outcomes: tuple[Mapping[str, Mapping[int, bool]], Mapping[str, Mapping[int, bool]]],
    ks: Sequence[int] | None,
    weights: np.ndarray,
    confidence: float,
    seed: int,
) -> BudgetComparison:
    n_a, _ = _aligned(counts[0], ids)
    n_b, _ = _aligned(counts[1], ids)
    # Everything below uses the episodes both runs played, so both sides rest on the same tries.
    matched, c_a, c_b = _matched_successes(budget, ids, *outcomes)
    return compare_matched(
        budget,
        ids,
        matched,
        (c_a, c_b),
        ks=ks,
        weights=weights,
        confidence=confidence,
        seed=seed,
        n_runs=(_span(n_a.tolist()), _span(n_b.tolist())),
    )


def compare_matched(
    budget: int,
    ids: Sequence[str],
    matched: np.ndarray,
    successes: tuple[np.ndarray, np.ndarray],
    *,
    ks: Sequence[int] | None,
    weights: np.ndarray,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
    n_runs: tuple[tuple[int, int], tuple[int, int]] | None = None,
    flips: int = SIGN_FLIPS,
) -> BudgetComparison:
    """A against B at one budget from matched counts: per task, episodes both played and each run's successes.

    The arrays-in core of :func:`compare_runs` (``weights``: its bootstrap weight columns of these
    tasks, [resamples x tasks]); the calibration study (``benchmarks/bench_calibration.py``) calls
    it on simulated counts, so what it measures is what ``compare`` reports.
    """
    c_a, c_b = successes
    n_min = int(matched.min())
    grid = default_ks(n_min) if ks is None else tuple(sorted({k for k in ks if 1 <= k <= n_min}))
    if not grid:
        raise ConfigError(f"compare_runs: no k in {list(ks or [])} fits n = {n_min} at T={budget}")
    mat_a = per_task_pass_at_k(matched, c_a, grid)
    mat_b = per_task_pass_at_k(matched, c_b, grid)
    est_a, est_b = mat_a.mean(axis=0), mat_b.mean(axis=0)
    diff = est_a - est_b

    def interval(matrix: np.ndarray) -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
        if weights.shape[0] == 0:
            none: tuple[float | None, ...] = (None,) * len(grid)
            return none, none
        low, high = percentile_interval(resampled_means(weights, matrix), confidence)
        return tuple(low.tolist()), tuple(high.tolist())

    a_low, a_high = interval(mat_a)
    b_low, b_high = interval(mat_b)
    d_low, d_high = interval(mat_a - mat_b)
    diff_p = paired_permutation_p(mat_a - mat_b, np.random.default_rng([seed, budget]), flips)
    k_star, k_interval = crossing_point(grid, diff.tolist())
    k_star_ci = None
    if k_star is not None and weights.shape[0]:
        k_star_ci = k_star_bootstrap_interval(resampled_means(weights, mat_a - mat_b), grid, confidence)

    solved_a, solved_b = c_a > 0, c_b > 0
    only_a = tuple(t for t, a, b in zip(ids, solved_a, solved_b, strict=True) if a and not b)
    only_b = tuple(t for t, a, b in zip(ids, solved_a, solved_b, strict=True) if b and not a)
    both = tuple(t for t, a, b in zip(ids, solved_a, solved_b, strict=True) if a and b)
    return BudgetComparison(
        budget=budget,
        num_tasks=len(ids),
        ks=grid,
        pass_a=tuple(est_a.tolist()),
        pass_a_low=a_low,
        pass_a_high=a_high,
        pass_b=tuple(est_b.tolist()),
        pass_b_low=b_low,
        pass_b_high=b_high,
        diff=tuple(diff.tolist()),
        diff_low=d_low,
        diff_high=d_high,
        diff_p=tuple(diff_p.tolist()),
        k_star=k_star,
        k_star_interval=k_interval,
        k_star_ci=k_star_ci,
        only_a=only_a,
        only_b=only_b,
        both=both,
        neither=len(ids) - len(only_a) - len(only_b) - len(both),
        mcnemar_p=mcnemar_exact(len(only_a), len(only_b)),
        n_a=None if n_runs is None else n_runs[0],
        n_b=None if n_runs is None else n_runs[1],
        boundary_n=_span(matched.tolist()),
    )
