"""Time the PASS@(k,T) table and the record append.

Synthetic, seeded counts for 10,000 tasks x n = 1024 episodes x 5 budgets, every k of the grid
(1, 2, 4, ..., 1024). Goals: <= 1 s for the point estimates, <= 10 s with 1,000 bootstrap resamples.

    python benchmarks/bench_metrics.py [--tasks 10000] [--n 1024] [--bootstrap 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from gather_envs.metrics.passk import TaskCounts, pass_table
from gather_envs.records import EpisodeRecord
from gather_envs.runs import RecordWriter, append_records

BUDGETS = (0, 1, 2, 3, 5)
APPEND_RECORDS = 500
POINT_GOAL_S = 1.0
BOOTSTRAP_GOAL_S = 10.0


def synthetic_counts(num_tasks: int, n: int, seed: int = 0) -> dict[int, TaskCounts]:
    """Per-task success counts: a Beta-distributed difficulty that more budget makes easier."""
    rng = np.random.default_rng(seed)
    ids = tuple(f"task-{i:06d}" for i in range(num_tasks))
    base = rng.beta(0.5, 1.5, size=num_tasks)
    counts = {}
    for step, budget in enumerate(BUDGETS):
        p = np.clip(base * (1.0 + 0.25 * step), 0.0, 1.0)
        c = rng.binomial(n, p)
        counts[budget] = TaskCounts(ids, (n,) * num_tasks, tuple(c.tolist()))
    return counts


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def sample_record(i: int) -> EpisodeRecord:
    return EpisodeRecord(
        env_id="Gather-MultiHop-v0",
        env_kwargs={"family": "bridge", "max_tool_calls": 5},
        corpus_hash="sha256:" + "0" * 64,
        task_id=f"task-{i:06d}",
        family="bridge",
        hops=2,
        seed=i,
        budget=5,
        episode_index=i,
        tool_calls=3,
        success=bool(i % 2),
        reward=float(i % 2),
        answer="Paris",
        gold_answer="Paris",
        termination="answered",
        wall_time=1.5,
        agent_id="react",
        queries=("capital of France", "Paris population"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the PASS@(k,T) table and the record append.")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    counts = synthetic_counts(args.tasks, args.n)
    table = pass_table(counts, bootstrap=0)
    print(
        f"PASS@(k,T) table: {args.tasks} tasks x n={args.n} x {len(table.ks)} k "
        f"({table.ks[0]}..{table.ks[-1]}) x {len(BUDGETS)} budgets"
    )
    point = best_of(args.repeats, lambda: pass_table(counts, bootstrap=0))
    print(f"  point estimates:             {point:7.3f} s  (goal <= {POINT_GOAL_S:g} s)")
    boot = best_of(args.repeats, lambda: pass_table(counts, bootstrap=args.bootstrap, seed=0))
    print(
        f"  with {args.bootstrap} bootstrap resamples: {boot:7.3f} s  "
        f"(goal <= {BOOTSTRAP_GOAL_S:g} s; includes T*)"
    )

    records = [sample_record(i) for i in range(APPEND_RECORDS)]
    line_bytes = len(records[0].to_line())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.jsonl"
        start = time.perf_counter()
        for rec in records:
            append_records(path, [rec])
        per_call = (time.perf_counter() - start) / APPEND_RECORDS
        with RecordWriter(path) as writer:
            start = time.perf_counter()
            for rec in records:
                writer.write(rec)
            per_write = (time.perf_counter() - start) / APPEND_RECORDS
        with RecordWriter(path, fsync=False) as writer:
            start = time.perf_counter()
            for rec in records:
                writer.write(rec)
            no_sync = (time.perf_counter() - start) / APPEND_RECORDS
    print(f"record append (~{line_bytes} B per line, temp dir {tempfile.gettempdir()}):")
    print(f"  append_records, open+lock+write+fsync+close: {per_call * 1e6:8.1f} us per record")
    print(f"  RecordWriter.write (fd kept open, fsync):    {per_write * 1e6:8.1f} us per record")
    print(f"  RecordWriter.write without fsync:            {no_sync * 1e6:8.1f} us per record")


if __name__ == "__main__":
    main()
