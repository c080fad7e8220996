"""Every number the text of the CPU learning result quotes, recomputed from the shipped records.

    python baselines/learning-cpu/reading.py

Uses the package's own functions (the ones ``gather-envs compare`` and ``report`` call): the three
paired comparisons, Holm's correction over their 18 tests at T in {1, 2} and k in {1, 2, 4}, a
sign-flip test of whether GRPO's gain over base shrinks from k = 1 to k = 4, retrieval per budget,
and the GRPO steps whose group of rollouts all earned one reward (no gradient).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from gather_envs.records.cells import read_located

from gather_envs.analysis.retrieval import retrieval_diagnostics
from gather_envs.metrics import compare_runs, count_episodes, per_task_pass_at_k
from gather_envs.metrics.significance import holm, paired_permutation_p

HERE = Path(__file__).resolve().parent
RUNS = ("base", "sft", "grpo")
PAIRS = (("base", "grpo"), ("base", "sft"), ("sft", "grpo"))
BUDGETS = (1, 2)


def main() -> None:
    records = {name: read_located(HERE / f"{name}.jsonl")[0] for name in RUNS}
    print("Holm over the 18 tests of the three comparisons (T in {1, 2}, k in {1, 2, 4}):")
    tests = []
    for a, b in PAIRS:
        comparison = compare_runs(records[a], records[b])
        for entry in comparison.per_budget:
            if entry.budget in BUDGETS:
                tests += [
                    (f"{b} - {a}", entry.budget, k, -d, p)
                    for k, d, p in zip(entry.ks, entry.diff, entry.diff_p, strict=True)
                ]
    adjusted = holm([p for *_, p in tests])
    for (pair, budget, k, diff, p), q in sorted(zip(tests, adjusted, strict=True), key=lambda x: x[0][4]):
        print(
            f"  {pair:11s} T={budget} k={k}  {diff:+.3f}  p = {p:.2g}  Holm = {q:.2g}{'  significant' if q < 0.05 else ''}"
        )

    print(
        "\nDoes GRPO's gain over base shrink with k? (per task gap(k=1) - gap(k=4), sign-flip test over tasks)"
    )
    for budget in BUDGETS:
        grpo, base = (count_episodes(records[name])[budget] for name in ("grpo", "base"))
        assert grpo.task_ids == base.task_ids and set(grpo.n) == set(base.n) == {4}
        mats = [per_task_pass_at_k(c.n, c.c, [1, 2, 4]) for c in (grpo, base)]
        gap = mats[0] - mats[1]
        shrink = gap[:, [0]] - gap[:, [2]]
        p = paired_permutation_p(shrink, np.random.default_rng([0, budget]))[0]
        print(f"  T={budget}: gap at k=1, 2, 4 = {', '.join(f'{g:+.3f}' for g in gap.mean(axis=0))}; "
              f"gap(1) - gap(4) = {shrink.mean():+.3f}, p = {p:.2f}")  # fmt: skip

    print("\nRetrieval per budget (episodes of 120): searches made, evidence found, successes")
    for name in RUNS:
        for budget in BUDGETS:
            d = retrieval_diagnostics([r for r in records[name] if r.budget == budget], name)
            found = d.with_full_evidence
            histogram = ", ".join(
                f"{s} search{'es' if s != 1 else ''}: {v}" for s, v in sorted(d.searches_histogram.items())
            )
            print(f"  {name:4s} T={budget}: {histogram}; evidence found {found.episodes}, "
                  f"success given evidence {found.successes}/{found.episodes} = {found.successes / found.episodes:.3f}; "
                  f"successes {sum(r.success for r in d.episodes)}")  # fmt: skip

    steps = [e for e in json.loads((HERE / "grpo_log.json").read_text()) if "frac_reward_zero_std" in e]
    flat = [e for e in steps if e["frac_reward_zero_std"] == 1.0]
    print(f"\nGRPO steps whose 8 rollouts all earned one reward (no gradient): {len(flat)} of {len(steps)} "
          f"({sum(e['reward'] == 0 for e in flat)} all 0, {sum(e['reward'] == 1 for e in flat)} all 1)")  # fmt: skip


if __name__ == "__main__":
    main()
