"""Measure the embedded model: parseable first replies with and without the grammar, and speed.

For each LLM agent style it asks for the first reply on tasks 0..N-1 of ``Gather-MultiHop-v0``
at T = 2, temperature 1.0, max_tokens 128, and counts the replies in which the env's parser
finds an action. Usage: ``python baselines/measure_llm.py [--tries 10] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import gymnasium as gym

import gather_envs.agents.llm  # noqa: F401  (registers the LLM agents)
from gather_envs.agents import make_agent
from gather_envs.envs.actions import INVALID, parse_action

STYLES = {"react": "react", "search-r1": "tags"}
BUDGET = 2
TEMPERATURE = 1.0
MAX_TOKENS = 128


def measure(style: str, dialect: str, grammar: bool, tries: int) -> dict[str, float]:
    """Parse rate and throughput (completion tokens per second of call time, prompt included)."""
    env = gym.make("Gather-MultiHop-v0", dialect=dialect)
    agent = make_agent(style, env, temperature=TEMPERATURE, max_tokens=MAX_TOKENS, grammar=grammar)
    parsed = tokens = 0
    seconds = 0.0
    for index in range(tries):
        observation, info = env.reset(seed=index, options={"task_index": index, "max_tool_calls": BUDGET})
        policy = agent.start(index)
        started = time.perf_counter()
        reply = policy.act(observation, info)
        seconds += time.perf_counter() - started
        tokens += policy.usage()["completion_tokens"]
        parsed += parse_action(reply).kind != INVALID
    return {
        "parsed": parsed,
        "tries": tries,
        "seconds": round(seconds, 1),
        "tokens_per_s": round(tokens / seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    figures = {}
    for style, dialect in STYLES.items():
        for grammar in (False, True):
            key = f"{style} grammar={str(grammar).lower()}"
            figures[key] = measure(style, dialect, grammar, args.tries)
            print(key, figures[key], flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
