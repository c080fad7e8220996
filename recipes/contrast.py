"""The contrast's endpoints E1-E4 (``contrast.md``), tested from the records, with Holm's correction.

Reads the records the pilot writes (``OUT/eval/NAME.jsonl`` and ``NAME-static.jsonl``) for the warm
start ``W``, the GRPO model and the SFT model, pairs them by task, and prints one Markdown table:

- E1: Δ_seq(16) > 0, a one-sided paired sign-flip test over tasks;
- E2: Δ_seq(16) − Δ_seq(1) > 0, the same test on each task's difference of differences (the
  crossing k* of the GRPO − W curve, if any, is reported with its bootstrap interval);
- E3: |Δ_static(16)| ≤ 0.10, equivalence: the 90% paired bootstrap interval inside [−0.10, 0.10];
- E4: |B|(SFT) < |B|(W), a one-sided exact sign test on the tasks in exactly one boundary.

Holm's correction runs over E1, E2 and E4 (family-wise α = 0.05); E3 is read on its own. An
endpoint whose records are missing is "not measured"; while any is missing, the others carry
the Bonferroni bound 3p, which Holm's adjusted p never exceeds, so a "shown" read early stays
shown. Commands::

    python recipes/contrast.py --out runs/pilot --base sft-top8-e1 --grpo grpo --sft sft-top8-e2
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gather_envs.metrics import count_episodes, pass_at_k
from gather_envs.metrics.bootstrap import bootstrap_weights, percentile_interval, resampled_means
from gather_envs.metrics.significance import SIGN_FLIPS, crossing_point, holm, k_star_bootstrap_interval
from gather_envs.runs import read_records

ALPHA = 0.05
SEQUENTIAL_T = 3
STATIC_T = 0
K_HIGH, K_LOW = 16, 1
KS = (1, 2, 4, 8, 16)
EQUIVALENCE_MARGIN = 0.10
EQUIVALENCE_CONFIDENCE = 0.90  # two one-sided tests at 5%
BOOTSTRAP = 10_000
FAMILY = ("E1", "E2", "E4")


@dataclass(frozen=True)
class Endpoint:
    """One endpoint's reading: its estimate, p (None for E3 and when not measured) and verdict."""

    name: str
    claim: str
    estimate: str
    p: float | None
    verdict: str = ""
    adjusted: float | None = None


def per_task(path: Path, budget: int, ks: tuple[int, ...] = KS) -> dict[str, np.ndarray]:
    """Each task's PASS@(k, budget) for ``ks`` from a records file: task id -> array over ks."""
    counts = count_episodes(read_records(path)).get(budget)
    if counts is None:
        return {}
    return {
        task: np.array([float(pass_at_k(n, c, k)) for k in ks])
        for task, n, c in zip(counts.task_ids, counts.n, counts.c, strict=True)
        if n >= max(ks)
    }


def paired(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The two runs' rows on the tasks both measured, in one task order."""
    tasks = sorted(set(a) & set(b))
    return np.array([a[t] for t in tasks]), np.array([b[t] for t in tasks])


def one_sided_sign_flip_p(
    differences: np.ndarray, rng: np.random.Generator, flips: int = SIGN_FLIPS
) -> float:
    """p of mean(differences) > 0 against sign flips of whole tasks: (1 + hits) / (1 + flips)."""
    observed = differences.mean()
    signs = rng.choice(np.array([-1.0, 1.0]), size=(flips, differences.size))
    hits = int((signs @ differences / differences.size >= observed - 1e-12).sum())
    return (1.0 + hits) / (1.0 + flips)


def sign_test_p(only_a: int, only_b: int) -> float:
    """One-sided exact sign test: P(at least ``only_a`` of the discordant tasks favour A | p = 1/2)."""
    total = only_a + only_b
    if total == 0:
        return 1.0
    return sum(math.comb(total, i) for i in range(only_a, total + 1)) / 2**total


def e1_e2(base: Path, grpo: Path, rng: np.random.Generator) -> tuple[Endpoint, Endpoint]:
    w, g = paired(per_task(base, SEQUENTIAL_T), per_task(grpo, SEQUENTIAL_T))
    hi, lo = KS.index(K_HIGH), KS.index(K_LOW)
    delta = g - w
    gap = delta[:, hi]
    e1 = Endpoint(
        "E1", "Δ_seq(16) > 0", f"{gap.mean():+.3f} over {len(gap)} tasks",
        one_sided_sign_flip_p(gap, rng), "",
    )  # fmt: skip
    widening = delta[:, hi] - delta[:, lo]
    weights = bootstrap_weights(len(delta), BOOTSTRAP, rng)
    curves = resampled_means(weights, delta)  # [resamples x ks]
    k_star, _ = crossing_point(KS, delta.mean(axis=0).tolist())
    low, high = k_star_bootstrap_interval(curves, KS)
    crossing = "no crossing" if k_star is None else f"k* = {k_star:.1f} [{low or '<1'}, {high or '>16'}]"
    e2 = Endpoint(
        "E2", "Δ_seq(16) > Δ_seq(1) (or a crossing k*)",
        f"{delta[:, hi].mean():+.3f} − {delta[:, lo].mean():+.3f} = {widening.mean():+.3f}; {crossing}",
        one_sided_sign_flip_p(widening, rng), "",
    )  # fmt: skip
    return e1, e2


def e3(base_static: Path, grpo_static: Path, rng: np.random.Generator) -> Endpoint:
    w, g = paired(per_task(base_static, STATIC_T), per_task(grpo_static, STATIC_T))
    delta = (g - w)[:, KS.index(K_HIGH)]
    samples = resampled_means(bootstrap_weights(len(delta), BOOTSTRAP, rng), delta[:, None])
    lows, highs = percentile_interval(samples, EQUIVALENCE_CONFIDENCE)
    low, high = float(lows[0]), float(highs[0])
    inside = low >= -EQUIVALENCE_MARGIN and high <= EQUIVALENCE_MARGIN
    return Endpoint(
        "E3", "|Δ_static(16)| ≤ 0.10", f"{delta.mean():+.3f}, 90% interval [{low:+.3f}, {high:+.3f}]",
        None, "shown (equivalent)" if inside else "not shown (interval leaves ±0.10)",
    )  # fmt: skip


def e4(base: Path, sft: Path) -> Endpoint:
    w, s = paired(per_task(base, SEQUENTIAL_T, (K_HIGH,)), per_task(sft, SEQUENTIAL_T, (K_HIGH,)))
    in_w, in_s = w[:, 0] > 0, s[:, 0] > 0
    only_w, only_s = int((in_w & ~in_s).sum()), int((in_s & ~in_w).sum())
    return Endpoint(
        "E4", "|B|(SFT) < |B|(W)",
        f"|B| {int(in_s.sum())} vs {int(in_w.sum())} of {len(w)}; only W {only_w}, only SFT {only_s}",
        sign_test_p(only_w, only_s), "",
    )  # fmt: skip


def not_measured(name: str, claim: str, missing: list[Path]) -> Endpoint:
    return Endpoint(name, claim, "–", None, "not measured: no " + ", ".join(p.name for p in missing))


def endpoints(folder: Path, base: str, grpo: str, sft: str, seed: int = 0) -> list[Endpoint]:
    """E1-E4 from ``folder``'s records, the family's verdicts by Holm (or its 3p bound while incomplete)."""
    rng = np.random.default_rng(seed)
    files = {name: folder / f"{name}.jsonl" for name in (base, grpo, sft)}
    statics = {name: folder / f"{name}-static.jsonl" for name in (base, grpo)}
    found: list[Endpoint] = []
    if files[base].exists() and files[grpo].exists():
        found.extend(e1_e2(files[base], files[grpo], rng))
    else:
        missing = [p for p in (files[base], files[grpo]) if not p.exists()]
        found += [
            not_measured("E1", "Δ_seq(16) > 0", missing),
            not_measured("E2", "Δ_seq(16) > Δ_seq(1)", missing),
        ]
    if all(p.exists() for p in statics.values()):
        found.append(e3(statics[base], statics[grpo], rng))
    else:
        found.append(
            not_measured("E3", "|Δ_static(16)| ≤ 0.10", [p for p in statics.values() if not p.exists()])
        )
    if files[base].exists() and files[sft].exists():
        found.append(e4(files[base], files[sft]))
    else:
        found.append(
            not_measured("E4", "|B|(SFT) < |B|(W)", [p for p in (files[base], files[sft]) if not p.exists()])
        )
    family = [e for e in found if e.name in FAMILY]
    complete = all(e.p is not None for e in family)
    if complete:
        adjusted: list[float | None] = list(holm([float(e.p) for e in family if e.p is not None]))
    else:
        adjusted = [None if e.p is None else min(1.0, len(FAMILY) * e.p) for e in family]
    by_name = {e.name: q for e, q in zip(family, adjusted, strict=True)}
    return [
        replace(e, adjusted=by_name.get(e.name), verdict=_verdict(e, by_name.get(e.name), complete))
        for e in found
    ]


def _verdict(endpoint: Endpoint, adjusted: float | None, complete: bool) -> str:
    if endpoint.verdict or adjusted is None:
        return endpoint.verdict
    verdict = "shown" if adjusted < ALPHA else "not shown"
    return verdict if complete else f"{verdict} (on the bound 3p: the family is incomplete)"


def table(found: list[Endpoint]) -> str:
    """The endpoints as a Markdown table."""
    lines = ["| # | endpoint | estimate | p | adjusted p | verdict |", "|---|---|---|---|---|---|"]
    for e in found:
        p_cell = "–" if e.p is None else f"{e.p:.4f}"
        q_cell = "–" if e.adjusted is None else f"{e.adjusted:.4f}"
        cells = [e.name, e.claim, e.estimate, p_cell, q_cell, e.verdict]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("runs/pilot"), help="the pilot's folder (records in OUT/eval)"
    )
    parser.add_argument("--base", default="sft-top8-e1")
    parser.add_argument("--grpo", default="grpo")
    parser.add_argument("--sft", default="sft-top8-e2")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sign flips and bootstrap")
    args = parser.parse_args(argv)
    print(table(endpoints(args.out / "eval", args.base, args.grpo, args.sft, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
