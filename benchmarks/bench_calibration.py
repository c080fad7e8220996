"""Calibration of the PASS@(k,T) instrument: interval coverage, false alarms and power, against an exact truth.

Simulated agents have known per-task success probabilities, so the truth is exact: a task with
success probability p has pass@k = 1 - (1-p)^k. Tasks are drawn from a population: with
probability ``zero`` a task is out of reach (p = 0), otherwise p = 1 - (1-q)^s with q ~
Beta(a, b), where s >= 1 sharpens the agent (more of the same tasks, more often). Two agents on
one task share its q, so their runs are paired as two models on one task set are. The population
PASS@(k) is then (1 - zero) (1 - B(a, b + s k) / B(a, b)), exact (:func:`population_pass`); the
fixed task set's is the mean of 1 - (1-p)^k over its tasks.

Every number runs the package's own code: :func:`gather_envs.metrics.pass_table` for PASS@(k)
intervals, :func:`gather_envs.metrics.compare.compare_matched` (the core of ``compare``) for
differences, k*, p-values and McNemar, :meth:`Comparison.tests` for the Holm-corrected verdict.

    python benchmarks/bench_calibration.py [--reps 500] [--out docs/figures] [--quick]

Prints Markdown tables (pasted into docs/metric.md) and writes calibration_*.png into --out.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gather_envs.metrics.bootstrap import bootstrap_weights, percentile_interval, resampled_means
from gather_envs.metrics.compare import compare_matched
from gather_envs.metrics.comparison import Comparison
from gather_envs.metrics.passk import TaskCounts, default_ks, pass_table, per_task_pass_at_k
from gather_envs.metrics.significance import crossing_point, mcnemar_exact, paired_permutation_p

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
BOOTSTRAP = 1000
GRIDS = ((100, 64), (30, 16), (30, 4))
"""(tasks, episodes per task): the published grid and two small ones."""
POWER_TASKS = (30, 100, 300)
POWER_N = (4, 16, 64)
POWER_GAINS = (0.05, 0.10, 0.20)
POWER_EXPANSIONS = (3, 6, 10, 20)
EXPANSION_P = 0.3
"""Success probability of a task the expanding agent newly reaches."""
POWER_FLIPS = 2000
"""Sign flips in the power study's permutation tests (p resolved to 1/2000; enough at 0.05)."""


@dataclass(frozen=True)
class Agent:
    """A simulated agent: share of tasks out of reach, and the sharpening power s of p = 1 - (1-q)^s."""

    zero: float
    sharpen: float = 1.0


@dataclass(frozen=True)
class Population:
    """Task difficulty q ~ Beta(a, b); each task also draws u ~ U(0, 1) (u < zero: out of reach)."""

    a: float = 0.6
    b: float = 1.2


BASE = Agent(zero=0.3)
SHARP = Agent(zero=0.3, sharpen=2.0)
BROAD = Agent(zero=0.15)
POPULATION = Population()


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def population_pass(agent: Agent, k: int, population: Population = POPULATION) -> float:
    """Exact population PASS@(k): E[1 - (1-p)^k] = (1 - zero)(1 - B(a, b + s k) / B(a, b))."""
    a, b = population.a, population.b
    miss = math.exp(_log_beta(a, b + agent.sharpen * k) - _log_beta(a, b))
    return (1.0 - agent.zero) * (1.0 - miss)


def task_probabilities(agent: Agent, u: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Each task's success probability for ``agent`` from the task's draws (u, q)."""
    return np.where(u < agent.zero, 0.0, 1.0 - (1.0 - q) ** agent.sharpen)


def fixed_pass(p: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Exact PASS@(k) of a fixed task set: the mean over tasks of 1 - (1-p)^k, one per k."""
    return np.array([float(np.mean(1.0 - (1.0 - p) ** k)) for k in ks])


def draw_tasks(
    rng: np.random.Generator, tasks: int, population: Population = POPULATION
) -> tuple[np.ndarray, np.ndarray]:
    """(u, q) for ``tasks`` tasks drawn from the population."""
    return rng.random(tasks), rng.beta(population.a, population.b, size=tasks)


def gain_agent(d: float, base: Agent = BASE) -> Agent:
    """The sharpened agent whose population pass@1 is ``d`` above ``base``'s (s by bisection)."""
    target = population_pass(base, 1) + d
    low, high = base.sharpen, 64.0
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if population_pass(Agent(base.zero, mid), 1) < target else (low, mid)
    return Agent(base.zero, (low + high) / 2)


def t_quantile(df: int, z: float = 1.959963984540054) -> float:
    """Student's t quantile from the normal one z (Cornish-Fisher to 1/df^3; 0.975 by default)."""
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def alternative_intervals(
    per_task: np.ndarray, weights: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Two candidate intervals for a mean over tasks, measured beside the percentile bootstrap.

    ``t-expanded``: the percentile interval widened about the estimate by sqrt(N/(N-1)) t/z (the
    bootstrap's plug-in spread and normal tails made Student's); ``t``: mean +- t se.
    """
    tasks = per_task.shape[0]
    estimate = per_task.mean(axis=0)
    low, high = percentile_interval(resampled_means(weights, per_task), CONFIDENCE)
    factor = math.sqrt(tasks / (tasks - 1)) * t_quantile(tasks - 1) / t_quantile(10**9)
    half = t_quantile(tasks - 1) * per_task.std(axis=0, ddof=1) / math.sqrt(tasks)
    return {
        "t-expanded": (estimate + factor * (low - estimate), estimate + factor * (high - estimate)),
        "t": (estimate - half, estimate + half),
    }


def _ids(tasks: int) -> tuple[str, ...]:
    return tuple(f"t{i:04d}" for i in range(tasks))


def _within(truth: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return (low <= truth + 1e-12) & (truth <= high + 1e-12)


def _compare(
    ids: Sequence[str],
    n: int,
    c_a: np.ndarray,
    c_b: np.ndarray,
    seed: int,
    flips: int,
    bootstrap: int = BOOTSTRAP,
) -> Comparison:
    """The comparison ``compare`` would report on these matched counts at one budget."""
    weights = bootstrap_weights(len(ids), bootstrap, np.random.default_rng(seed))
    entry = compare_matched(
        1, ids, np.full(len(ids), n), (c_a, c_b), ks=None, weights=weights, seed=seed, flips=flips
    )
    return Comparison(
        agent_a="a", agent_b="b", corpus_hash="sim", budgets=(1,), per_budget=(entry,),
        restricted=False, excluded_tasks={1: 0}, bootstrap=bootstrap, seed=seed, confidence=CONFIDENCE,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Studies


def coverage_study(tasks: int, n: int, reps: int, seed: int) -> dict[str, np.ndarray]:
    """Coverage of the PASS@(k) and paired-difference intervals, and of k*, over ``reps`` replications.

    Per k: ``pass_pop``/``pass_fixed`` (the table's interval covers the population / fixed-task
    truth), ``diff_pop``/``diff_fixed`` (the paired interval of SHARP - BROAD), and the two
    :func:`alternative_intervals` on the population view. ``kstar``: the share of runs that report
    a crossing, and among those the share whose bracket / bootstrap interval holds the true k*.
    """
    ks = default_ks(n)
    ids = _ids(tasks)
    matched = np.full(tasks, n)
    rng = np.random.default_rng(seed)
    truth_pop = np.array([population_pass(BASE, k) for k in ks])
    diff_truth_pop = np.array([population_pass(SHARP, k) - population_pass(BROAD, k) for k in ks])
    true_kstar = crossing_point(ks, diff_truth_pop.tolist())[0]
    keys = ["pass_pop", "pass_fixed", "diff_pop", "diff_fixed"]
    keys += [f"{what}_{name}" for what in ("pass", "diff") for name in ("t-expanded", "t")]
    hits = {key: np.zeros(len(ks)) for key in keys}
    fixed_u, fixed_q = draw_tasks(np.random.default_rng(seed + 1), tasks)
    crossed = bracket = interval = 0
    for rep in range(reps):
        # The population view: new tasks each replication.
        u, q = draw_tasks(rng, tasks)
        c = rng.binomial(n, task_probabilities(BASE, u, q))
        rows = pass_table(
            {1: TaskCounts(ids, (n,) * tasks, tuple(c.tolist()))}, bootstrap=BOOTSTRAP, seed=rep
        ).curve(1)
        hits["pass_pop"] += _within(
            truth_pop, np.array([r.ci_low for r in rows]), np.array([r.ci_high for r in rows])
        )
        weights = bootstrap_weights(tasks, BOOTSTRAP, np.random.default_rng(rep))
        for name, (low, high) in alternative_intervals(per_task_pass_at_k(matched, c, ks), weights).items():
            hits[f"pass_{name}"] += _within(truth_pop, low, high)
        c_a = rng.binomial(n, task_probabilities(SHARP, u, q))
        c_b = rng.binomial(n, task_probabilities(BROAD, u, q))
        entry = _compare(ids, n, c_a, c_b, rep, flips=1).per_budget[0]
        hits["diff_pop"] += _within(diff_truth_pop, np.array(entry.diff_low), np.array(entry.diff_high))
        diff = per_task_pass_at_k(matched, c_a, ks) - per_task_pass_at_k(matched, c_b, ks)
        for name, (low, high) in alternative_intervals(diff, weights).items():
            hits[f"diff_{name}"] += _within(diff_truth_pop, low, high)
        if true_kstar is not None and entry.k_star is not None:
            crossed += 1
            lo, hi = entry.k_star_interval or (0, 0)
            bracket += lo <= true_kstar <= hi
            if entry.k_star_ci is not None:
                low, high = entry.k_star_ci
                interval += (low is not None and low <= true_kstar) and (high is None or true_kstar <= high)
        # The fixed view: the same tasks every replication, only the episodes redrawn.
        p = task_probabilities(BASE, fixed_u, fixed_q)
        counts = TaskCounts(ids, (n,) * tasks, tuple(rng.binomial(n, p).tolist()))
        rows = pass_table({1: counts}, bootstrap=BOOTSTRAP, seed=rep).curve(1)
        low, high = np.array([r.ci_low for r in rows]), np.array([r.ci_high for r in rows])
        hits["pass_fixed"] += _within(fixed_pass(p, ks), low, high)
        p_a, p_b = task_probabilities(SHARP, fixed_u, fixed_q), task_probabilities(BROAD, fixed_u, fixed_q)
        entry = _compare(ids, n, rng.binomial(n, p_a), rng.binomial(n, p_b), rep, flips=1).per_budget[0]
        truth = fixed_pass(p_a, ks) - fixed_pass(p_b, ks)
        hits["diff_fixed"] += _within(truth, np.array(entry.diff_low), np.array(entry.diff_high))
    out = {key: value / reps for key, value in hits.items()}
    out["ks"] = np.array(ks)
    out["kstar"] = np.array([crossed / reps, bracket / max(crossed, 1), interval / max(crossed, 1)])
    out["true_kstar"] = np.array([math.nan if true_kstar is None else true_kstar])
    return out


def null_study(tasks: int, n: int, reps: int, seed: int, flips: int) -> dict[str, np.ndarray]:
    """False alarms when two independent runs of one agent are compared (the null holds exactly).

    Per k: the paired interval excludes 0, the permutation p < alpha; McNemar p < alpha; the
    verdict claims anything (the old rule: any interval or McNemar; the new: any Holm-adjusted p).
    """
    ks = default_ks(n)
    ids = _ids(tasks)
    rng = np.random.default_rng(seed)
    interval = np.zeros(len(ks))
    perm = np.zeros(len(ks))
    mcnemar = old_verdict = new_verdict = 0.0
    for rep in range(reps):
        u, q = draw_tasks(rng, tasks)
        p = task_probabilities(BASE, u, q)
        comparison = _compare(ids, n, rng.binomial(n, p), rng.binomial(n, p), rep, flips)
        e = comparison.per_budget[0]
        excludes = (np.array(e.diff_low) > 0) | (np.array(e.diff_high) < 0)
        interval += excludes
        perm += np.array(e.diff_p) < ALPHA
        mcnemar += e.mcnemar_p < ALPHA
        old_verdict += bool(excludes.any() or e.mcnemar_p < ALPHA)
        new_verdict += any(t.decisive_p < ALPHA for t in comparison.tests())
    return {
        "ks": np.array(ks),
        "interval": interval / reps,
        "perm": perm / reps,
        "mcnemar": np.array([mcnemar / reps]),
        "old_verdict": np.array([old_verdict / reps]),
        "new_verdict": np.array([new_verdict / reps]),
    }


def _power(
    tasks: int,
    n: int,
    reps: int,
    seed: int,
    agents: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]],
) -> tuple[float, float, float]:
    """(pass@1 permutation test, pass@n permutation test, McNemar) detection rates at alpha, B ahead."""
    rng = np.random.default_rng(seed)
    detected = np.zeros(3)
    matched = np.full(tasks, n)
    for _ in range(reps):
        p_a, p_b = agents(rng)
        c_a, c_b = rng.binomial(n, p_a), rng.binomial(n, p_b)
        diff = per_task_pass_at_k(matched, c_b, [1, n]) - per_task_pass_at_k(matched, c_a, [1, n])
        p = paired_permutation_p(diff, rng, POWER_FLIPS)
        only_b, only_a = int(np.sum((c_b > 0) & (c_a == 0))), int(np.sum((c_a > 0) & (c_b == 0)))
        detected += [
            p[0] < ALPHA and diff[:, 0].mean() > 0,
            p[1] < ALPHA and diff[:, 1].mean() > 0,
            mcnemar_exact(only_a, only_b) < ALPHA and only_b > only_a,
        ]
    return tuple((detected / reps).tolist())  # type: ignore[return-value]


def gain_power(tasks: int, n: int, d: float, reps: int, seed: int) -> tuple[float, float, float]:
    """Detection rates of a pass@1 gain of ``d`` made by sharpening (same tasks in reach)."""
    better = gain_agent(d)

    def agents(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        u, q = draw_tasks(rng, tasks)
        return task_probabilities(BASE, u, q), task_probabilities(better, u, q)

    return _power(tasks, n, reps, seed, agents)


def expansion_power(tasks: int, n: int, m: int, reps: int, seed: int) -> tuple[float, float, float]:
    """Detection rates of a boundary expansion: m tasks out of A's reach that B solves with p = 0.3."""

    def agents(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        u, q = draw_tasks(rng, tasks)
        p_a = task_probabilities(BASE, u, q)
        p_a[:m] = 0.0
        p_b = p_a.copy()
        p_b[:m] = EXPANSION_P
        return p_a, p_b

    return _power(tasks, n, reps, seed, agents)


# --------------------------------------------------------------------------------------------
# Output


POWER_GOAL = 0.8


def fewest(power: dict[tuple[int, int, float], float], options: Sequence[int], key) -> str:
    """The first of ``options`` whose power (looked up by ``key(option)``) reaches 0.8, or "> last"."""
    for option in options:
        if power.get(key(option), 0.0) >= POWER_GOAL:
            return str(option)
    return f"> {options[-1]}"


def mc_error(rate: float, reps: int) -> float:
    """Two standard errors of a rate estimated from ``reps`` replications."""
    return 2.0 * math.sqrt(rate * (1.0 - rate) / reps)


def _fmt_row(values: Sequence[float]) -> str:
    return " | ".join(f"{v:.3f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=500, help="replications per setting (default 500)")
    parser.add_argument(
        "--power-reps", type=int, default=500, help="replications per power cell (default 500)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="write calibration_*.png here (needs matplotlib)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small grid only, 100 replications (a smoke run)"
    )
    args = parser.parse_args()
    reps, power_reps = (100, 100) if args.quick else (args.reps, args.power_reps)
    grids = GRIDS[1:] if args.quick else GRIDS
    started = time.perf_counter()
    print(f"# Calibration ({reps} replications, 95% intervals, {BOOTSTRAP} bootstrap resamples, "
          f"MC error at 0.95: ±{mc_error(0.95, reps):.3f}, at 0.05: ±{mc_error(0.05, reps):.3f})\n")  # fmt: skip
    coverage = {}
    for tasks, n in grids:
        result = coverage_study(tasks, n, reps, args.seed)
        coverage[(tasks, n)] = result
        ks = result["ks"].tolist()
        print(
            f"## Coverage, {tasks} tasks, n = {n} (true k* of SHARP - BROAD = {result['true_kstar'][0]:.2f})\n"
        )
        print("| interval | " + " | ".join(f"k={k}" for k in ks) + " |")
        print("|---" * (len(ks) + 1) + "|")
        for key, name in (
            ("pass_pop", "PASS@(k), tasks redrawn"),
            ("pass_fixed", "PASS@(k), tasks fixed"),
            ("pass_t-expanded", "PASS@(k), tasks redrawn, t-expanded percentile"),
            ("pass_t", "PASS@(k), tasks redrawn, t interval"),
            ("diff_pop", "A - B, tasks redrawn"),
            ("diff_fixed", "A - B, tasks fixed"),
            ("diff_t-expanded", "A - B, tasks redrawn, t-expanded percentile"),
            ("diff_t", "A - B, tasks redrawn, t interval"),
        ):
            print(f"| {name} | {_fmt_row(result[key])} |")
        reported, bracket, boot = result["kstar"].tolist()
        print(f"\nk*: a crossing reported in {reported:.3f} of runs; of those, the reported bracket "
              f"holds the true k* in {bracket:.3f}, compare's bootstrap interval of k* in {boot:.3f}\n")  # fmt: skip
    nulls = {}
    for tasks, n in grids:
        result = null_study(tasks, n, reps, args.seed + 7, flips=2000)
        nulls[(tasks, n)] = result
        ks = result["ks"].tolist()
        print(f"## False alarms under the null, {tasks} tasks, n = {n}\n")
        print("| test | " + " | ".join(f"k={k}" for k in ks) + " |")
        print("|---" * (len(ks) + 1) + "|")
        print(f"| bootstrap interval excludes 0 | {_fmt_row(result['interval'])} |")
        print(f"| permutation p < 0.05 | {_fmt_row(result['perm'])} |")
        print(f"\nMcNemar p < 0.05: {result['mcnemar'][0]:.3f}; verdict claims a difference: "
              f"{result['old_verdict'][0]:.3f} (old rule: any interval or McNemar, uncorrected), "
              f"{result['new_verdict'][0]:.3f} (new: permutation and McNemar, Holm)\n")  # fmt: skip
    gains = {}
    expansions = {}
    for tasks in POWER_TASKS:
        for n in POWER_N:
            for d in POWER_GAINS:
                gains[(tasks, n, d)] = gain_power(tasks, n, d, power_reps, args.seed + 11)
            for m in POWER_EXPANSIONS:
                if m < tasks:
                    expansions[(tasks, n, m)] = expansion_power(tasks, n, m, power_reps, args.seed + 13)
    print(f"## Power ({power_reps} replications per cell, p < 0.05, one test)\n")
    print("pass@1 gain d (sharpening): power of the permutation test at k = 1\n")
    print("| tasks | n | " + " | ".join(f"d = {d}" for d in POWER_GAINS) + " |")
    print("|---" * (len(POWER_GAINS) + 2) + "|")
    for tasks in POWER_TASKS:
        for n in POWER_N:
            print(
                f"| {tasks} | {n} | "
                + " | ".join(f"{gains[(tasks, n, d)][0]:.2f}" for d in POWER_GAINS)
                + " |"
            )
    print(f"\nboundary expansion of m tasks (B reaches them with p = {EXPANSION_P}): power of McNemar "
          "(and of the permutation test at k = n)\n")  # fmt: skip
    print("| tasks | n | " + " | ".join(f"m = {m}" for m in POWER_EXPANSIONS) + " |")
    print("|---" * (len(POWER_EXPANSIONS) + 2) + "|")
    for tasks in POWER_TASKS:
        for n in POWER_N:
            cells = []
            for m in POWER_EXPANSIONS:
                value = expansions.get((tasks, n, m))
                cells.append("" if value is None else f"{value[2]:.2f} ({value[1]:.2f})")
            print(f"| {tasks} | {n} | " + " | ".join(cells) + " |")
    gain_power_of = {key: value[0] for key, value in gains.items()}
    expansion_power_of = {key: value[2] for key, value in expansions.items()}
    print(f"\n## Tasks needed for a pass@1 gain ({POWER_GOAL:.0%} power, permutation test at k = 1)\n")
    print("| gain d | " + " | ".join(f"n = {n}" for n in POWER_N) + " |")
    print("|---" * (len(POWER_N) + 1) + "|")
    for d in POWER_GAINS:
        cells = " | ".join(fewest(gain_power_of, POWER_TASKS, lambda t, n=n, d=d: (t, n, d)) for n in POWER_N)
        print(f"| {d} | {cells} |")
    print(f"\n## Episodes per task needed to see m newly reached tasks ({POWER_GOAL:.0%} power, McNemar)\n")
    print("| m | " + " | ".join(f"{t} tasks" for t in POWER_TASKS) + " |")
    print("|---" * (len(POWER_TASKS) + 1) + "|")
    for m in POWER_EXPANSIONS:
        cells = " | ".join(
            fewest(expansion_power_of, POWER_N, lambda n, t=t, m=m: (t, n, m)) if m < t else ""
            for t in POWER_TASKS
        )
        print(f"| {m} | {cells} |")
    print(f"\n{time.perf_counter() - started:.0f} s")
    if args.out is not None:
        write_figures(args.out, coverage, nulls, gains, expansions)


def write_figures(out: Path, coverage: dict, nulls: dict, gains: dict, expansions: dict) -> None:
    """calibration_coverage.png (coverage and false alarms per k) and calibration_power.png."""
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, key, title in (
        (axes[0], "pass_pop", "PASS@(k) interval, tasks redrawn"),
        (axes[1], "diff_pop", "paired A - B interval, tasks redrawn"),
    ):
        for (tasks, n), result in coverage.items():
            ax.plot(result["ks"], result[key], marker="o", label=f"{tasks} tasks, n={n}")
        ax.axhline(CONFIDENCE, color="gray", linestyle="--", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_ylim(0.8, 1.0)
        ax.set_xlabel("k")
        ax.set_ylabel("coverage")
        ax.set_title(title, fontsize=9)
    for (tasks, n), result in nulls.items():
        line = axes[2].plot(
            result["ks"], result["interval"], marker="o", label=f"{tasks} tasks, n={n}: interval"
        )
        axes[2].plot(
            result["ks"],
            result["perm"],
            marker="x",
            linestyle=":",
            color=line[0].get_color(),
            label="permutation p",
        )
    axes[2].axhline(ALPHA, color="gray", linestyle="--", linewidth=1)
    axes[2].set_xscale("log", base=2)
    axes[2].set_ylim(0.0, 0.12)
    axes[2].set_xlabel("k")
    axes[2].set_ylabel("false-alarm rate (null: one agent twice)")
    axes[2].set_title("false alarms per k", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=6)
    fig.savefig(out / "calibration_coverage.png", dpi=110)

    fig = Figure(figsize=(10, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    styles = {n: style for n, style in zip(POWER_N, ("-", "--", ":"), strict=True)}
    for i, d in enumerate(POWER_GAINS):
        for n in POWER_N:
            values = [gains[(t, n, d)][0] for t in POWER_TASKS]
            axes[0].plot(
                POWER_TASKS, values, marker="o", color=f"C{i}", linestyle=styles[n], label=f"d={d}, n={n}"
            )
    for i, m in enumerate(POWER_EXPANSIONS):
        for n in POWER_N:
            points = [(t, expansions[(t, n, m)][2]) for t in POWER_TASKS if (t, n, m) in expansions]
            axes[1].plot(
                *zip(*points, strict=True),
                marker="o",
                color=f"C{i}",
                linestyle=styles[n],
                label=f"m={m}, n={n}",
            )
    for ax, title in (
        (axes[0], "pass@1 gain d: permutation test at k=1"),
        (axes[1], f"m tasks newly reached (p={EXPANSION_P}): McNemar"),
    ):
        ax.axhline(POWER_GOAL, color="gray", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks(POWER_TASKS, [str(t) for t in POWER_TASKS])
        ax.minorticks_off()
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("tasks")
        ax.set_ylabel("power at p < 0.05")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fig.savefig(out / "calibration_power.png", dpi=110)


if __name__ == "__main__":
    main()
