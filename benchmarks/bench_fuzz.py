"""Fuzz every registered synthetic env with random and adversarial actions; time the parser on 1 MB.

Usage: python benchmarks/bench_fuzz.py [--steps 1000000] [--seed 0] [--repeats 3]

Part 1 plays ``--steps`` steps spread evenly over ``gather_envs.ENV_IDS`` (reset whenever an
episode ends) with actions drawn from a seeded generator: well-formed actions of every dialect,
mutated tool calls, soups of brackets, tags, quotes and braces, random Unicode (controls, zero-width
and bidi characters included) and inputs of up to 64 KiB. It prints the exceptions ``step`` raised
(goal 0) and the p50 / p99 / max step latency. Part 2 parses each adversarial 1 MB input (nested
and unclosed brackets, braces and tags, the old quadratic cases) ``--repeats`` times, prints the
best wall and CPU time of each (CPU time is steadier on a shared machine) and the worst (goal 50 ms), and steps each once in every env.
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter

import gymnasium as gym
import numpy as np

import gather_envs
from gather_envs.envs.actions import parse_action, parse_calls

MEGABYTE = 1 << 20
LATENCY_GOAL_MS = 50.0
LARGE_INPUT_CHANCE = 0.002  # share of fuzz steps whose action is 4-64 KiB long
LARGE_INPUT_BYTES = (4096, 65536)
FRAGMENTS = (
    "{", "}", "[", "]", ",", ":", '"', "\\", "\\\"", "\\u0061", " ", "\n", "1", "null", "NaN", "true",
    '"name"', '"search"', '"answer"', '"finish"', '"arguments"', '"parameters"', '"query"', '"q"',
    '"text"', '"final_answer"', "search[", "answer[", "finish[", "Search [", "<search>", "</search>",
    "<answer>", "</answer >", "<tool_call>", "Thought:", "Action:", "Observation:", "\u200b", "\u202e",
    "\x00", "\ufeff", "Ｂ", "ﬁ",
)  # fmt: skip
UNICODE_POOL = "".join(chr(c) for c in (*range(0, 0x250), *range(0x2000, 0x2070), 0xFEFF, 0x1F600))


def vocabulary(env_ids: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Words of the documents and the gold answers of every env, to build plausible actions."""
    words: set[str] = set()
    answers: set[str] = set()
    for env_id in env_ids:
        env = gym.make(env_id).unwrapped
        for document in env.corpus.documents[:2000]:
            words.update(document.title.split())
        answers.update(task.answer for task in env.tasks)
        env.close()
    return sorted(words), sorted(answers)


class ActionSource:
    """Random actions of every kind, all drawn from one seeded generator."""

    def __init__(self, seed: int, words: list[str], answers: list[str]) -> None:
        self.rng = random.Random(seed)
        self.words = words
        self.answers = answers
        self.makers = (self.well_formed, self.mutated_call, self.soup, self.unicode, self.well_formed)

    def text(self) -> str:
        if self.rng.random() < LARGE_INPUT_CHANCE:
            return self.large()
        return self.rng.choice(self.makers)()

    def phrase(self) -> str:
        return " ".join(self.rng.choices(self.words, k=self.rng.randint(0, 4)))

    def well_formed(self) -> str:
        argument = self.rng.choice(self.answers) if self.rng.random() < 0.3 else self.phrase()
        kind = self.rng.choice(("search", "answer", "finish"))
        forms = (
            f"Thought: go. Action: {kind}[{argument}]",
            f"<think>x</think><{kind}>{argument}</{kind}>",
            json.dumps({"name": kind, "arguments": {"query": argument, "answer": argument}}),
            json.dumps({"name": kind, "arguments": json.dumps({"answer": argument, "q": argument})}),
        )
        return self.rng.choice(forms)

    def mutated_call(self) -> str:
        text = self.well_formed()
        for _ in range(self.rng.randint(1, 4)):
            at = self.rng.randrange(len(text) + 1)
            cut = self.rng.randint(0, 3)
            text = text[:at] + self.rng.choice(FRAGMENTS) * self.rng.randint(1, 3) + text[at + cut :]
        return text

    def soup(self) -> str:
        return "".join(self.rng.choices(FRAGMENTS, k=self.rng.randint(0, 60)))

    def unicode(self) -> str:
        noise = "".join(self.rng.choices(UNICODE_POOL, k=self.rng.randint(0, 40)))
        return (
            self.rng.choice(("", "search[", "answer[", "<answer>"))
            + noise
            + self.rng.choice(("", "]", "</answer>"))
        )

    def large(self) -> str:
        size = self.rng.randint(*LARGE_INPUT_BYTES)
        unit = self.rng.choice((*FRAGMENTS, '{"name":', '{"a":[', "search[x] "))
        return (unit * (size // len(unit) + 1))[:size]


def adversarial_inputs() -> dict[str, str]:
    """1 MB inputs aimed at the parser: every shape that was quadratic or recursive before."""
    tool_call = '{"name": "search", "arguments": {"query": "x"}}'
    return {
        "search[ x 1 MB": "search[" * (MEGABYTE // 7),
        "{ x 1 MB": "{" * MEGABYTE,
        "[ x 1 MB": "[" * MEGABYTE,
        '{"name": + [ x 1 MB': '{"name":' + "[" * MEGABYTE,
        '{"name": + { x 1 MB': '{"name":' + "{" * MEGABYTE,
        '{"name": x 1 MB (open objects)': '{"name":' * (MEGABYTE // 8),
        '{"a": x 1 MB + "name"': '{"a":' * (MEGABYTE // 5) + '"name"',
        '{" x 1 MB + "name"': '{"' * (MEGABYTE // 2) + '"name"',
        '{"a":[ x 1 MB + "name"': '{"a":[' * (MEGABYTE // 6) + '"name"',
        '[[..]] balanced 1 MB in a call': '{"name": "x", "arguments": ' + "[" * (MEGABYTE // 2) + "]" * (MEGABYTE // 2) + "}",
        '{"name":"\\" x 1 MB': '{"name":"' + '\\"' * (MEGABYTE // 2),
        "<search> x 1 MB": "<search>" * (MEGABYTE // 8),
        "<answer></search> x 1 MB": "<answer></search>" * (MEGABYTE // 17),
        "search + 1 MB spaces": "search" + " " * MEGABYTE,
        "] x 1 MB": "]" * MEGABYTE,
        "1 MB of { then a call": "{" * MEGABYTE + tool_call,
        "1 MB of open objects then a call": '{"a":' * (MEGABYTE // 5) + tool_call,
        "arguments string nested 1 MB": '{"name": "search", "arguments": "' + '{\\"a\\":' * (MEGABYTE // 7) + '"}',
    }  # fmt: skip


def fuzz(steps: int, seed: int) -> None:
    env_ids = tuple(gather_envs.ENV_IDS)
    words, answers = vocabulary(env_ids)
    source = ActionSource(seed, words, answers)
    envs = [gym.make(env_id) for env_id in env_ids]
    for number, env in enumerate(envs):
        env.reset(seed=seed + number)
    latencies = np.empty(steps)
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}
    kinds: Counter[str] = Counter()
    started = time.perf_counter()
    for step in range(steps):
        env = envs[step % len(envs)]
        action = source.text()
        begin = time.perf_counter()
        try:
            _, _, terminated, truncated, info = env.step(action)
        except Exception as error:  # the figure this benchmark exists for: goal 0
            latencies[step] = time.perf_counter() - begin
            name = f"{type(error).__name__} in {env.spec.id if env.spec else '?'}"
            errors[name] += 1
            examples.setdefault(name, f"{action[:80]!r}: {error}")
            env.reset(seed=step)
            continue
        latencies[step] = time.perf_counter() - begin
        kinds[info.get("action_type", "?")] += 1
        if terminated or truncated:
            env.reset(seed=step)
    wall = time.perf_counter() - started
    ms = latencies * 1e3
    print(f"fuzz: {steps:,} steps over {', '.join(env_ids)} in {wall:.1f} s (seed {seed})")
    print(f"  action types: {dict(sorted(kinds.items()))}")
    print(f"  exceptions: {sum(errors.values())} (goal 0)")
    for name, count in errors.most_common():
        print(f"    {count:>7} {name}: {examples[name]}")
    print(
        f"  step latency: p50 {np.percentile(ms, 50):.3f} ms  p99 {np.percentile(ms, 99):.3f} ms  "
        f"max {ms.max():.1f} ms"
    )


def adversarial(repeats: int) -> None:
    inputs = adversarial_inputs()
    envs = [gym.make(env_id) for env_id in gather_envs.ENV_IDS]
    print(f"parse_action and parse_calls on adversarial inputs (best of {repeats}; goal <= {LATENCY_GOAL_MS:g} ms each):")
    worst = ("", 0.0)
    step_worst = 0.0
    raised = 0
    for name, text in inputs.items():
        action = parse_action(text)
        bests = []  # the first call, and every call (what step reads): the slower one counts
        for parse in (parse_action, parse_calls):
            best = cpu = float("inf")
            for _ in range(repeats):
                begin, begin_cpu = time.perf_counter(), time.process_time()
                parse(text)
                best = min(best, time.perf_counter() - begin)
                cpu = min(cpu, time.process_time() - begin_cpu)
            bests.append((best, cpu))
        best, cpu = max(bests)
        for env in envs:
            env.reset(seed=0)
            begin = time.perf_counter()
            try:
                env.step(text)
            except Exception:
                raised += 1
            step_worst = max(step_worst, time.perf_counter() - begin)
        if best > worst[1]:
            worst = (name, best)
        print(
            f"  {name:<36} {len(text):>9,} chars  {best * 1e3:8.1f} ms (CPU {cpu * 1e3:6.1f} ms)  -> {action.kind}"
        )
    print(f"  worst: {worst[0]} {worst[1] * 1e3:.1f} ms (goal {LATENCY_GOAL_MS:g} ms)")
    print(f"  env.step on each in every env: max {step_worst * 1e3:.1f} ms, exceptions {raised} (goal 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    adversarial(args.repeats)
    fuzz(args.steps, args.seed)


if __name__ == "__main__":
    main()
