"""Benchmark loading a HotpotQA-sized file: first load (parse and build the cache) and cached load.

Usage::

    PYTHONPATH=. python benchmarks/bench_datasets.py                  # one 500 MB file
    PYTHONPATH=. python benchmarks/bench_datasets.py --size-mb 100,500 --fallback --env

The file is generated in HotpotQA's distractor layout (one JSON array; 10 paragraphs of 3 to 5
sentences per question, 2 of them supporting; 30% of the distractors come from a shared pool of
popular paragraphs, so deduplication has work to do), about 6 KB per question like
``hotpot_train_v1.1.json`` (90,447 questions in 540 MB). Each phase runs in a fresh subprocess and
reports its wall time, its peak RSS (VmHWM, reset after the imports; ``resource.getrusage``'s
ru_maxrss where /proc is missing) and the RSS after imports, so the difference is the cost of
loading. Phases: ``first`` (no cache: stream with ijson, convert, write
the cache), ``cached`` (read the cache), ``fallback`` (``--fallback``: no ijson, no cache:
``json.loads`` of the whole file) and ``env`` (``--env``: ``gym.make`` on the cached file, then a
reset and one search, which builds the BM25 index). Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SIZES_MB = (500,)
MB = 1 << 20
SEED = 0
VOCABULARY = 30_000
SENTENCE_POOL = 200_000
SENTENCE_WORDS = (8, 30)
PARAGRAPH_SENTENCES = (3, 6)
PARAGRAPHS_PER_QUESTION = 10
SUPPORTING_PER_QUESTION = 2
POPULAR_POOL = 20_000
POPULAR_SHARE = 0.3
SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ren",
    "tas",
    "vor",
    "el",
    "un",
    "bri",
    "dax",
    "ost",
    "pel",
    "qua",
    "sif",
    "tor",
)

PHASE_CODE = """
import json, resource, sys, time
from pathlib import Path
phase, path = sys.argv[1], sys.argv[2]
if phase == "fallback":
    sys.modules["ijson"] = None
import gymnasium as gym
import gather_envs
from gather_envs.corpus.datasets import load_dataset
from gather_envs.envs.dataset_registration import register_dataset_envs
register_dataset_envs()

def status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None

try:  # reset VmHWM (Linux) so the peak below is this phase's own
    Path("/proc/self/clear_refs").write_text("5")
except OSError:
    pass
before = status_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
spec = {"format": "hotpotqa", "path": path, "cache": phase != "fallback"}
if phase == "env":
    env = gym.make("Gather-HotpotQA-v0", path=path)
    made = time.perf_counter() - start
    env.reset(seed=0)
    env.step("search[" + env.unwrapped.task.gold_path[0].query + "]")
    corpus = env.unwrapped.corpus
else:
    made = None
    corpus = load_dataset(spec)
seconds = time.perf_counter() - start
peak = status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "make_seconds": made, "rss_after_imports_kb": before,
                  "peak_rss_kb": peak, "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "rss_end_kb": status_kb("VmRSS"),
                  "tasks": len(corpus.tasks("test")), "documents": len(corpus.documents)}))
"""


def make_words(rng: np.random.Generator) -> np.ndarray:
    """A vocabulary of invented words built from syllables."""
    counts = rng.integers(2, 5, size=VOCABULARY)
    picks = rng.integers(len(SYLLABLES), size=(VOCABULARY, 4))
    return np.array(["".join(SYLLABLES[j] for j in row[:n]) for row, n in zip(picks, counts, strict=True)])


def make_sentences(rng: np.random.Generator, words: np.ndarray) -> list[str]:
    """A pool of sentences (Zipf-like word frequencies), each ending with a full stop."""
    ranks = np.minimum(rng.zipf(1.3, size=SENTENCE_POOL * SENTENCE_WORDS[1]), VOCABULARY) - 1
    lengths = rng.integers(*SENTENCE_WORDS, size=SENTENCE_POOL)
    sentences, offset = [], 0
    for length in lengths.tolist():
        chunk = words[ranks[offset : offset + length]]
        offset += length
        sentences.append(" ".join(chunk).capitalize() + ".")
    return sentences


class Generator:
    """Questions in HotpotQA's distractor layout, drawn from seeded pools."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.words = make_words(self.rng)
        self.sentences = make_sentences(self.rng, self.words)
        self.serial = 0
        self.popular = [self.paragraph() for _ in range(POPULAR_POOL)]

    def paragraph(self) -> list[Any]:
        self.serial += 1
        a, b = self.rng.integers(VOCABULARY, size=2).tolist()
        title = f"{self.words[a].capitalize()} {self.words[b].capitalize()} {self.serial}"
        count = int(self.rng.integers(*PARAGRAPH_SENTENCES))
        picks = self.rng.integers(len(self.sentences), size=count).tolist()
        body = [self.sentences[i] if j == 0 else " " + self.sentences[i] for j, i in enumerate(picks)]
        return [title, body]

    def item(self, number: int) -> dict[str, Any]:
        gold = [self.paragraph() for _ in range(SUPPORTING_PER_QUESTION)]
        distractors = [
            self.popular[int(self.rng.integers(POPULAR_POOL))]
            if self.rng.random() < POPULAR_SHARE
            else self.paragraph()
            for _ in range(PARAGRAPHS_PER_QUESTION - SUPPORTING_PER_QUESTION)
        ]
        context = gold + distractors
        order = self.rng.permutation(len(context)).tolist()
        kind = "comparison" if number % 5 == 0 else "bridge"
        return {
            "_id": f"{number:024x}",
            "answer": "yes" if kind == "comparison" else gold[1][0],
            "question": f"What is the link between {gold[0][0]} and {gold[1][0]}?",
            "supporting_facts": [[gold[0][0], 0], [gold[1][0], 1]],
            "context": [context[i] for i in order],
            "type": kind,
            "level": ("easy", "medium", "hard")[number % 3],
        }


def generate(path: Path, size_mb: int, seed: int = SEED) -> tuple[int, float]:
    """Write a HotpotQA-layout file of about ``size_mb`` MB; returns (questions, seconds)."""
    start = time.perf_counter()
    generator = Generator(seed)
    target = size_mb * MB
    written = count = 0
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[")
        while written < target:
            text = ("" if count == 0 else ", ") + json.dumps(generator.item(count), ensure_ascii=False)
            handle.write(text)
            written += len(text)
            count += 1
        handle.write("]")
    return count, time.perf_counter() - start


def run_phase(phase: str, path: Path) -> dict[str, Any]:
    """One phase in a fresh interpreter; its JSON report."""
    result = subprocess.run(
        [sys.executable, "-c", PHASE_CODE, phase, str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(phase: str, figures: dict[str, Any]) -> None:
    load_mb = (figures["peak_rss_kb"] - figures["rss_after_imports_kb"]) / 1024
    held_mb = (figures["rss_end_kb"] - figures["rss_after_imports_kb"]) / 1024
    made = "" if figures["make_seconds"] is None else f"  (gym.make {figures['make_seconds']:.1f} s)"
    print(
        f"  {phase:<9} {figures['seconds']:7.1f} s  peak RSS {figures['peak_rss_kb'] / 1024:6.0f} MB "
        f"(+{load_mb:.0f} MB over imports; +{held_mb:.0f} MB held after){made}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", default=",".join(map(str, DEFAULT_SIZES_MB)), help="e.g. 100,500")
    parser.add_argument("--dir", help="where to write the files (default: a temporary folder)")
    parser.add_argument("--fallback", action="store_true", help="also load without ijson (json.loads)")
    parser.add_argument("--env", action="store_true", help="also time gym.make, reset and one search")
    args = parser.parse_args()
    sizes = [int(s) for s in args.size_mb.split(",")]
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for size in sizes:
            path = Path(folder) / f"hotpot_{size}mb.json"
            questions, seconds = generate(path, size)
            print(
                f"{path.name}: {path.stat().st_size / MB:.0f} MB, {questions} questions (generated in {seconds:.0f} s)"
            )
            phases = (
                ["first", "cached"] + (["fallback"] if args.fallback else []) + (["env"] if args.env else [])
            )
            for phase in phases:
                figures = run_phase(phase, path)
                report(phase, figures)
            cache = path.with_name(path.name + ".gather-cache.jsonl")
            print(
                f"  cache {cache.stat().st_size / MB:.0f} MB; {figures['documents']} documents, "
                f"{figures['tasks']} tasks"
            )
            path.unlink()
            cache.unlink()


if __name__ == "__main__":
    main()
