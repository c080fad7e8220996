"""The result of comparing two runs: per-budget curves, differences, boundary sets and their tests.

:class:`Comparison` (with its JSON form) is what ``compare_runs`` returns and what the reports and
``gather-envs compare --format json`` show; older comparison JSON still reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gather_envs.errors import ConfigError, RecordsError
from gather_envs.metrics.significance import CROSSING_TOLERANCE, holm


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


def min_max(values: Iterable[int]) -> tuple[int, int]:
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
    retriever: str | None = None
    """The remote retriever both runs searched with; None for the env's own BM25."""

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
            **({"retriever": self.retriever} if self.retriever is not None else {}),
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
                retriever=None if data.get("retriever") is None else str(data["retriever"]),
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
