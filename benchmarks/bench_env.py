"""Env step/reset latency on the default corpus, and world generation time at 10k/100k entities.

Usage: python benchmarks/bench_env.py [--episodes 2000] [--sizes 10000,100000]
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import gather_envs  # noqa: F401
from gather_envs.corpus.synthetic import generate_corpus
from gather_envs.world.generator import WorldConfig


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1e3
    return f"p50 {np.percentile(ms, 50):.3f} ms  p95 {np.percentile(ms, 95):.3f} ms  (n={len(ms)})"


def bench_env(episodes: int) -> None:
    env = gym.make("Gather-MultiHop-v0").unwrapped  # the env itself, not the checker wrappers
    env.reset(seed=0)
    resets, searches, answers = [], [], []
    for episode in range(episodes):
        start = time.perf_counter()
        env.reset(seed=episode)
        resets.append(time.perf_counter() - start)
        task = env.task
        assert task is not None
        for step in task.gold_path[:2]:
            start = time.perf_counter()
            env.step(f"search[{step.query}]")
            searches.append(time.perf_counter() - start)
        start = time.perf_counter()
        env.step(f"answer[{task.answer}]")
        answers.append(time.perf_counter() - start)
    print(f"reset          {percentiles(resets)}")
    print(f"step(search)   {percentiles(searches)}")
    print(f"step(answer)   {percentiles(answers)}")
    wrapped = gym.make("Gather-MultiHop-v0")
    wrapped.reset(seed=0)
    start = time.perf_counter()
    for i in range(200):
        wrapped.reset(seed=i)
    print(f"reset via gym.make wrappers: {(time.perf_counter() - start) / 200 * 1e3:.3f} ms mean")


def bench_generation(sizes: list[int]) -> None:
    for size in sizes:
        config = WorldConfig(num_entities=size, seed=1)
        start = time.perf_counter()
        corpus, stats = generate_corpus(config)
        elapsed = time.perf_counter() - start
        counts = {s.family: s.kept for s in stats}
        print(f"generate {size:>7} entities: {elapsed:6.2f} s  docs={len(corpus.documents)} tasks={counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    bench_env(args.episodes)
    bench_generation([int(s) for s in args.sizes.split(",") if s])


if __name__ == "__main__":
    main()
