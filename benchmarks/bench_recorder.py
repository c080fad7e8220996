"""Time the RecordPassAtKT recorder per episode next to a bare env, and the runner's cost per episode.

Episodes follow each task's gold path on ``Gather-MultiHop-v0`` (the default frozen corpus), so every
episode makes 2-4 searches and one answer. Prints figures; asserts nothing.

    python benchmarks/bench_recorder.py [--episodes 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym

import gather_envs  # noqa: F401  (registers the ids)
from gather_envs.agents.base import Agent, EpisodePolicy
from gather_envs.evaluation import evaluate
from gather_envs.wrappers import RecordPassAtKT

ENV_ID = "Gather-MultiHop-v0"
BUDGET = 5
REPEATS = 3
RUNNER_TASKS = 50
RUNNER_N = 8


def gold_action(env: Any, info: dict[str, Any]) -> str:
    task = env.corpus.task(info["task_id"])
    used = info["tool_calls_used"]
    if used < len(task.gold_path) and info["tool_calls_left"] > 0:
        return f"search[{task.gold_path[used].query}]"
    return f"answer[{task.answer}]"


def episodes(env: gym.Env, count: int) -> int:
    """Play ``count`` gold-path episodes over the split's tasks; returns the steps taken."""
    inner: Any = env.unwrapped
    tasks = inner.tasks
    steps = 0
    for i in range(count):
        _, info = env.reset(
            seed=i, options={"task_id": tasks[i % len(tasks)].task_id, "max_tool_calls": BUDGET}
        )
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(gold_action(inner, info))
            steps += 1
            done = terminated or truncated
    return steps


def best_of(fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class GoldPolicy(EpisodePolicy):
    def __init__(self, env: Any) -> None:
        self.env = env

    def act(self, observation: str, info: dict[str, Any]) -> str:
        return gold_action(self.env, info)


class GoldAgent(Agent):
    agent_id = "bench-gold"

    def __init__(self, env: Any) -> None:
        self.env = env

    def start(self, seed: int) -> EpisodePolicy:
        return GoldPolicy(self.env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=2000)
    args = parser.parse_args()
    count = args.episodes

    bare = gym.make(ENV_ID)
    episodes(bare, 50)  # warm the corpus, index and env checker
    steps = episodes(bare, count)
    base = best_of(lambda: episodes(bare, count))
    print(f"{count} gold-path episodes on {ENV_ID} ({steps / count:.2f} steps each)")
    print(
        f"  bare env                         {base / count * 1e6:9.1f} us/episode  {base / steps * 1e6:7.1f} us/step"
    )

    with tempfile.TemporaryDirectory() as tmp:
        variants: list[tuple[str, dict[str, Any]]] = [
            ("recorder, in memory", {}),
            ("recorder + trajectory", {"record_trajectory": True}),
            ("recorder -> file, no fsync", {"path": Path(tmp) / "nofsync.jsonl", "fsync": False}),
            ("recorder -> file, fsync", {"path": Path(tmp) / "fsync.jsonl"}),
        ]
        for label, kwargs in variants:
            env = RecordPassAtKT(gym.make(ENV_ID), agent_id="bench", **kwargs)
            episodes(env, 50)
            elapsed = best_of(lambda env=env: (env.records.clear(), episodes(env, count)))
            overhead = (elapsed - base) / count * 1e6
            print(
                f"  {label:<32} {elapsed / count * 1e6:9.1f} us/episode  overhead {overhead:8.1f} us/episode"
            )
            env.close()

        total = RUNNER_TASKS * RUNNER_N
        for concurrency in (1, 4):
            out = Path(tmp) / f"runner{concurrency}.jsonl"
            start = time.perf_counter()
            evaluate(ENV_ID, GoldAgent, n=RUNNER_N, budgets=(BUDGET,), tasks=RUNNER_TASKS,
                     concurrency=concurrency, out=out, progress=False)  # fmt: skip
            elapsed = time.perf_counter() - start
            print(
                f"  evaluate(), concurrency {concurrency}, fsync  {elapsed / total * 1e6:9.1f} us/episode  "
                f"({total} episodes incl. setup)"
            )


if __name__ == "__main__":
    main()
