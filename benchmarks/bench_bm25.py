"""Benchmark BM25Index against rank_bm25.BM25Okapi: query latency, build cost, exactness.

Usage::

    PYTHONPATH=. python benchmarks/bench_bm25.py                # 1k, 10k, 100k, 1M documents
    PYTHONPATH=. python benchmarks/bench_bm25.py --sizes 1000,10000

Corpora are synthetic and seeded. Each document has 40 to 80 tokens (60 on average), drawn from a
Zipfian vocabulary. Each query takes 2 to 5 distinct tokens from one random document, as an agent
would when it searches for a name plus some context words. Every (size, implementation) pair runs
in its own subprocess. The build's peak memory is the peak RSS during the build (VmHWM, reset
just before it) minus the RSS before it, so the corpus itself is not counted.
Figures are printed and nothing is asserted: timings on a shared machine vary.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
import rank_bm25

from gather_envs.retrieval import BM25Index

DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)
VOCABULARY = 200_000
ZIPF_EXPONENT = 1.1
DOC_LENGTH_RANGE = (40, 81)
QUERY_LENGTH_RANGE = (2, 6)
TOP_K = 3
OUR_QUERIES = 2000
RANK_QUERIES = {1_000: 200, 10_000: 100, 100_000: 30, 1_000_000: 5}
"""rank_bm25 scans every document per query token, so large corpora get fewer queries."""
SCOPE_DOCS = 10
SCOPE_TRIALS = 2000
GENERATION_CHUNK = 20_000
WARMUP_QUERIES = 20


def make_corpus(n_docs: int, seed: int) -> list[list[str]]:
    """Synthetic documents: Zipfian tokens, lengths uniform in DOC_LENGTH_RANGE."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, VOCABULARY + 1) ** ZIPF_EXPONENT
    cdf = np.cumsum(weights / weights.sum())
    words = np.array([f"w{rank}" for rank in range(VOCABULARY)], dtype=object)
    corpus: list[list[str]] = []
    for lo in range(0, n_docs, GENERATION_CHUNK):
        count = min(GENERATION_CHUNK, n_docs - lo)
        lengths = rng.integers(*DOC_LENGTH_RANGE, size=count)
        ranks = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), VOCABULARY - 1)
        tokens: list[str] = words[ranks].tolist()
        ends = np.cumsum(lengths).tolist()
        starts = [0, *ends[:-1]]
        corpus.extend(tokens[a:b] for a, b in zip(starts, ends))
    return corpus


def make_queries(corpus: list[list[str]], count: int, seed: int) -> list[list[str]]:
    """Queries of 2-5 distinct tokens taken from random documents."""
    rng = np.random.default_rng(seed + 1)
    queries: list[list[str]] = []
    while len(queries) < count:
        doc = corpus[int(rng.integers(len(corpus)))]
        distinct = list(dict.fromkeys(doc))
        if not distinct:
            continue
        size = min(len(distinct), int(rng.integers(*QUERY_LENGTH_RANGE)))
        picks = rng.choice(len(distinct), size=size, replace=False)
        queries.append([distinct[i] for i in picks.tolist()])
    return queries


def rss_mb() -> float:
    """Current resident set size in MB, after handing free heap memory back to the OS.

    Also resets the kernel's peak (VmHWM) to it where Linux allows, so a later
    :func:`peak_rss_mb` measures from here. Trimming matters: memory the corpus generation freed
    would otherwise be reused by the build without raising the RSS.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: measure without trimming
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # Linux >= 4.0: reset the high-water mark to the current RSS
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size since the last reset (VmHWM), else since start (ru_maxrss), in MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    """p50 and p95 of durations, in milliseconds."""
    values = np.array(seconds) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def stable_top(scores: np.ndarray, k: int) -> list[int]:
    """Reference top k: a stable sort by descending score."""
    return np.argsort(-scores, kind="stable")[:k].tolist()


def worker_ours(n_docs: int, seed: int) -> dict[str, Any]:
    """Build BM25Index, time top_k, and time distractor-scope subsets against rank_bm25."""
    corpus = make_corpus(n_docs, seed)
    queries = make_queries(corpus, OUR_QUERIES, seed)
    before = rss_mb()
    start = time.perf_counter()
    index = BM25Index(corpus)
    build_s = time.perf_counter() - start
    peak = peak_rss_mb() - before
    for query in queries[:WARMUP_QUERIES]:
        index.top_k(query, TOP_K)
    latencies, cpu_times = [], []
    for query in queries:
        start, cpu_start = time.perf_counter(), time.thread_time()
        index.top_k(query, TOP_K)
        cpu_times.append(time.thread_time() - cpu_start)
        latencies.append(time.perf_counter() - start)
    p50, p95 = percentiles_ms(latencies)
    cpu_p50, _ = percentiles_ms(cpu_times)
    return {
        "build_s": build_s,
        "peak_mb": peak,
        "index_mb": index.nbytes / 2**20,
        "terms": index.num_terms,
        "p50_ms": p50,
        "p95_ms": p95,
        "cpu_p50_ms": cpu_p50,
        **scope_figures(index, corpus, seed),
    }


def scope_figures(index: BM25Index, corpus: list[list[str]], seed: int) -> dict[str, Any]:
    """Build a 10-document index and query it: BM25Index.subset versus a fresh BM25Okapi."""
    rng = np.random.default_rng(seed + 2)
    ours, theirs = [], []
    identical = 0
    for _ in range(SCOPE_TRIALS):
        picks = rng.choice(len(corpus), size=min(SCOPE_DOCS, len(corpus)), replace=False).tolist()
        query = make_queries([corpus[picks[0]]], 1, int(rng.integers(1 << 30)))[0]
        start = time.perf_counter()
        hits = index.subset(picks).top_k(query, TOP_K)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = rank_bm25.BM25Okapi([corpus[i] for i in picks])
        scores = reference.get_scores(query)
        expected = stable_top(scores, TOP_K)
        theirs.append(time.perf_counter() - start)
        scores_ours = index.subset(picks).get_scores(query)
        same = np.array_equal(scores_ours, scores) and [doc for doc, _ in hits] == expected
        identical += int(same)
    ours_p50, _ = percentiles_ms(ours)
    theirs_p50, _ = percentiles_ms(theirs)
    return {
        "scope_ours_ms": ours_p50,
        "scope_rank_ms": theirs_p50,
        "scope_identical": identical,
        "scope_trials": SCOPE_TRIALS,
    }


def worker_rank(n_docs: int, seed: int, n_queries: int) -> dict[str, Any]:
    """Build BM25Okapi, time get_scores plus a top-3 sort, and compare with BM25Index."""
    corpus = make_corpus(n_docs, seed)
    queries = make_queries(corpus, OUR_QUERIES, seed)[:n_queries]
    before = rss_mb()
    start = time.perf_counter()
    reference = rank_bm25.BM25Okapi(corpus)
    build_s = time.perf_counter() - start
    peak = peak_rss_mb() - before
    latencies, expected = [], []
    for query in queries:
        start = time.perf_counter()
        scores = reference.get_scores(query)
        top = stable_top(scores, TOP_K)
        latencies.append(time.perf_counter() - start)
        expected.append((scores, top))
    del reference
    index = BM25Index(corpus)
    max_rel = 0.0
    identical = top_equal = 0
    for query, (scores, top) in zip(queries, expected):
        ours = index.get_scores(query)
        scale = np.maximum(np.abs(scores), np.finfo(np.float64).tiny)
        max_rel = max(max_rel, float(np.max(np.abs(ours - scores) / scale)))
        identical += int(np.array_equal(ours, scores))
        hits = index.top_k(query, TOP_K)
        top_equal += int(hits == [(doc, float(scores[doc])) for doc in top])
    p50, p95 = percentiles_ms(latencies)
    return {
        "build_s": build_s,
        "peak_mb": peak,
        "p50_ms": p50,
        "p95_ms": p95,
        "queries": len(queries),
        "max_rel_diff": max_rel,
        "identical": identical,
        "top_equal": top_equal,
    }


def run_worker(args: list[str]) -> dict[str, Any]:
    """Run this script as a worker subprocess and parse its JSON line."""
    command = [sys.executable, __file__, *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Parse flags; either run one worker or drive all of them and print the tables."""
    parser = argparse.ArgumentParser(description="Benchmark BM25Index against rank_bm25.BM25Okapi.")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rank-max-docs",
        type=int,
        default=max(DEFAULT_SIZES),
        help="skip rank_bm25 on corpora larger than this (its build needs minutes and GBs)",
    )
    parser.add_argument("--worker", choices=["ours", "rank"], help=argparse.SUPPRESS)
    parser.add_argument("--docs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rank-queries", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "ours":
        print(json.dumps(worker_ours(args.docs, args.seed)))
        return
    if args.worker == "rank":
        print(json.dumps(worker_rank(args.docs, args.seed, args.rank_queries)))
        return

    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(
        f"Zipf(s={ZIPF_EXPONENT}) over {VOCABULARY} words, {DOC_LENGTH_RANGE[0]}-"
        f"{DOC_LENGTH_RANGE[1] - 1} tokens/doc, queries of 2-5 tokens from a random doc, "
        f"top_k(k={TOP_K}); rank_bm25 latency = get_scores + stable argsort; "
        "p50/p95 are wall-clock, cpu p50 is this thread's CPU time (robust to a busy machine)"
    )
    header = (
        f"{'docs':>9} {'terms':>7} | {'build s':>7} {'peak MB':>7} {'index MB':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'cpu p50':>8} | {'rank build s':>12} {'rank peak MB':>12} "
        f"{'rank p50':>9} {'rank p95':>9} {'n_q':>4} | {'speedup':>8} {'max rel':>8} "
        f"{'identical':>9} {'top3 eq':>7}"
    )
    print(header)
    print("-" * len(header))
    scope_rows = []
    for size in sizes:
        ours = run_worker(["--worker", "ours", "--docs", str(size), "--seed", str(args.seed)])
        line = (
            f"{size:>9} {ours['terms']:>7} | {ours['build_s']:>7.2f} {ours['peak_mb']:>7.0f} "
            f"{ours['index_mb']:>8.0f} {ours['p50_ms']:>8.3f} {ours['p95_ms']:>8.3f} "
            f"{ours['cpu_p50_ms']:>8.3f} | "
        )
        if size <= args.rank_max_docs:
            queries = RANK_QUERIES.get(size, 20)
            rank = run_worker(
                ["--worker", "rank", "--docs", str(size), "--seed", str(args.seed)]
                + ["--rank-queries", str(queries)]
            )
            line += (
                f"{rank['build_s']:>12.2f} {rank['peak_mb']:>12.0f} {rank['p50_ms']:>9.2f} "
                f"{rank['p95_ms']:>9.2f} {rank['queries']:>4} | "
                f"{rank['p50_ms'] / ours['p50_ms']:>7.0f}x {rank['max_rel_diff']:>8.1e} "
                f"{rank['identical']:>4}/{rank['queries']:<4} "
                f"{rank['top_equal']:>3}/{rank['queries']:<3}"
            )
        else:
            line += "rank_bm25 skipped (--rank-max-docs)"
        print(line, flush=True)
        scope_rows.append((size, ours))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print()
    print(f"Distractor scope: build an index over {SCOPE_DOCS} random docs and take the top {TOP_K}")
    print(
        f"{'parent docs':>11} | {'subset()+top_k p50 ms':>21} | {'BM25Okapi+get_scores p50 ms':>27} "
        f"| {'speedup':>7} | {'identical':>9}"
    )
    for size, ours in scope_rows:
        print(
            f"{size:>11} | {ours['scope_ours_ms']:>21.3f} | {ours['scope_rank_ms']:>27.3f} | "
            f"{ours['scope_rank_ms'] / ours['scope_ours_ms']:>6.1f}x | "
            f"{ours['scope_identical']:>4}/{ours['scope_trials']}"
        )


if __name__ == "__main__":
    main()
