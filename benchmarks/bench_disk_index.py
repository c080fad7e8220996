"""The on-disk BM25 index at scale: build time and memory, disk size, index memory, query latency, exactness.

Run on a corpus from ``gen_wiki18_like.py`` (or Search-R1's own ``wiki-18.jsonl``); every stage runs
in a fresh process so its memory is its own:

1. ``gather-envs index build`` within ``--memory-budget``: wall time, peak RSS (ru_maxrss), disk
   size (index arrays apart from the stored ids, titles and texts);
2. the index opened memory-mapped: open time, RSS after open and after the queries (anonymous,
   i.e. the process's own memory, apart from file-backed pages, which the page cache shares with
   every process that maps the index); query latency p50/p99 for top-3 and top-100, warm, and
   cold (the first query of a fresh process, over ``--cold-runs`` processes; the page cache is
   warm from the build: a first query after a reboot also waits for the disk);
3. exactness on ``--queries`` sampled 2-6-word queries: top-100 ids and scores equal to a
   brute-force float64 scoring of the same formula (every document, dense vectors, written
   apart from the index's engine); with ``--rank-bm25`` also equal to ``rank_bm25`` itself;
4. side by side (``--rank-bm25``, ``--bm25s``): rank_bm25's memory (its index in RSS) and
   bm25s's memory-mapped index (``BM25.load(mmap=True)``: RSS after load and the same queries,
   latency). bm25s tokenizes with its own rule (``\\w\\w+``, lowercase), so its vocabulary
   differs slightly; its figures are for memory and speed, not exactness.

    python benchmarks/gen_wiki18_like.py --passages 100000 --out /tmp/wiki-100k.jsonl
    python benchmarks/bench_disk_index.py --corpus /tmp/wiki-100k.jsonl --work /tmp/bench-100k --rank-bm25 --bm25s

Figures are in benchmarks/README.md. bm25s is in the ``bench-retrieval`` extra.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
QUERY_WORDS = (2, 6)
K_VALUES = (3, 100)
EXACT_K = 100


def memory() -> dict[str, float]:
    """This process's resident memory in MB: total, anonymous (its own) and file-backed (shared)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def percentiles(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1e3
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "n": len(values),
    }


# --- stages (each runs in its own process) -------------------------------------------------------


def stage_build(corpus: str, index: str, budget: str) -> dict[str, Any]:
    from gather_envs.cli import main

    start = time.perf_counter()
    code = main(["index", "build", corpus, "--out", index, "--memory-budget", budget])
    seconds = time.perf_counter() - start
    if code:
        raise SystemExit(code)
    return {"build_s": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def stage_queries(index_dir: str, queries_file: str, hits_file: str) -> dict[str, Any]:
    """Open the index, time the first query (cold) and then every query at each k (warm)."""
    from gather_envs.retrieval import DiskIndex

    queries = json.loads(Path(queries_file).read_text())
    before = memory()
    start = time.perf_counter()
    index = DiskIndex.open(index_dir)
    open_s = time.perf_counter() - start
    after_open = memory()
    start = time.perf_counter()
    index.search(queries[0], K_VALUES[0])
    cold_s = time.perf_counter() - start
    latency, hits = {}, []
    for k in K_VALUES:
        seconds = []
        for query in queries:
            start = time.perf_counter()
            found = index.search(query, k)
            seconds.append(time.perf_counter() - start)
            if k == EXACT_K:
                hits.append(found)
        latency[f"top{k}"] = percentiles(seconds)
    Path(hits_file).write_text(json.dumps(hits))
    return {
        "open_s": open_s,
        "cold_s": cold_s,
        "rss_before": before,
        "rss_open": after_open,
        "rss_after": memory(),
        **latency,
    }


def stage_cold(index_dir: str, query: str) -> dict[str, Any]:
    from gather_envs.retrieval import DiskIndex

    start = time.perf_counter()
    index = DiskIndex.open(index_dir)
    opened = time.perf_counter()
    index.search(query, K_VALUES[0])
    return {"open_s": opened - start, "first_query_s": time.perf_counter() - opened}


def stage_brute(index_dir: str, queries_file: str, hits_file: str) -> dict[str, Any]:
    """Score every document with dense float64 vectors, in rank_bm25's expression order; compare."""
    from gather_envs.retrieval import DiskIndex, tokenize

    manifest = DiskIndex.open(index_dir).manifest
    folder = Path(index_dir)
    blob = np.load(folder / "vocab_bytes.npy").tobytes()
    bounds = np.load(folder / "vocab_offsets.npy").tolist()
    ids = np.load(folder / "vocab_ids.npy").tolist()
    vocab = {
        blob[bounds[i] : bounds[i + 1]].decode("utf-8", "surrogatepass"): ids[i] for i in range(len(ids))
    }
    k1, b, epsilon, n_docs = manifest["k1"], manifest["b"], manifest["epsilon"], manifest["n_docs"]
    offsets = np.load(folder / "term_offsets.npy", mmap_mode="r")
    docs = np.load(folder / "postings_docs.npy", mmap_mode="r")
    tfs = np.load(folder / "postings_tf.npy", mmap_mode="r")
    doc_len = np.load(folder / "doc_lengths.npy").astype(np.float64)
    avgdl = manifest["total_tokens"] / n_docs
    df = np.diff(offsets)
    # rank_bm25's average idf: the raw idfs summed one at a time in term-id (first-seen) order.
    values, inverse = np.unique(df, return_inverse=True)
    raw = np.array([math.log(n_docs - f + 0.5) - math.log(f + 0.5) for f in values.tolist()])[inverse]
    average = float(np.add.accumulate(raw)[-1]) / len(raw)
    length_part = k1 * (1 - b + b * doc_len / avgdl)
    queries = json.loads(Path(queries_file).read_text())
    expected_hits = json.loads(Path(hits_file).read_text())
    mismatches = 0
    for query, expected in zip(queries, expected_hits):
        scores = np.zeros(n_docs)
        for token in tokenize(query):
            t = vocab.get(token)
            if t is None:
                continue
            lo, hi = int(offsets[t]), int(offsets[t + 1])
            idf = raw[t] if raw[t] >= 0 else epsilon * average
            q_freq = np.zeros(n_docs)
            q_freq[docs[lo:hi]] = tfs[lo:hi]
            scores += idf * (q_freq * (k1 + 1) / (q_freq + length_part))
        order = np.argsort(-scores, kind="stable")[:EXACT_K]
        if [[int(d), float(scores[d])] for d in order] != expected:
            mismatches += 1
    return {"queries": len(queries), "mismatches": mismatches}


def stage_rank_bm25(corpus: str, queries_file: str, hits_file: str, limit: str) -> dict[str, Any]:
    """rank_bm25 on the same tokens: its index's memory, and its hits against the disk index's."""
    import gc

    import rank_bm25

    from gather_envs.corpus.corpus import index_text
    from gather_envs.corpus.passages import iter_passages
    from gather_envs.retrieval import tokenize

    before = memory()
    start = time.perf_counter()
    # A generator: rank_bm25 reads each document once and keeps only its own tables, so the RSS
    # growth is its index (plus what CPython's allocator keeps of the freed token lists).
    reference = rank_bm25.BM25Okapi(tokenize(index_text(d)) for d in iter_passages(Path(corpus)))
    build_s = time.perf_counter() - start
    gc.collect()
    after = memory()
    queries = json.loads(Path(queries_file).read_text())[: int(limit)]
    expected_hits = json.loads(Path(hits_file).read_text())
    mismatches, seconds = 0, []
    for query, expected in zip(queries, expected_hits):
        start = time.perf_counter()
        scores = reference.get_scores(tokenize(query))
        seconds.append(time.perf_counter() - start)
        order = np.argsort(-scores, kind="stable")[:EXACT_K]
        if [[int(d), float(scores[d])] for d in order] != expected:
            mismatches += 1
    return {
        "build_s": build_s,
        "index_mb": after["VmRSS"] - before["VmRSS"],
        "mismatches": mismatches,
        "queries": len(queries),
        "get_scores": percentiles(seconds),
    }


def stage_bm25s_build(corpus: str, out: str) -> dict[str, Any]:
    import bm25s

    from gather_envs.corpus.corpus import index_text
    from gather_envs.corpus.passages import iter_passages

    start = time.perf_counter()
    texts = [index_text(d) for d in iter_passages(Path(corpus))]
    tokenized = bm25s.tokenize(texts, stopwords=None, show_progress=False)
    del texts
    retriever = bm25s.BM25(method="robertson")
    retriever.index(tokenized, show_progress=False)
    retriever.save(out)
    return {
        "build_s": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def stage_bm25s(index_dir: str, queries_file: str) -> dict[str, Any]:
    import bm25s

    queries = json.loads(Path(queries_file).read_text())
    before = memory()
    start = time.perf_counter()
    retriever = bm25s.BM25.load(index_dir, mmap=True)
    open_s = time.perf_counter() - start
    after_open = memory()
    latency = {}
    for k in K_VALUES:
        seconds = []
        for query in queries:
            tokens = bm25s.tokenize([query], stopwords=None, return_ids=False, show_progress=False)
            tokens = [[t for t in tokens[0] if t in retriever.vocab_dict]]
            start = time.perf_counter()
            if tokens[0]:
                retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
            seconds.append(time.perf_counter() - start)
        latency[f"top{k}"] = percentiles(seconds)
    return {"open_s": open_s, "rss_before": before, "rss_open": after_open, "rss_after": memory(), **latency}


STAGES = {
    "build": stage_build,
    "queries": stage_queries,
    "cold": stage_cold,
    "brute": stage_brute,
    "rank_bm25": stage_rank_bm25,
    "bm25s_build": stage_bm25s_build,
    "bm25s": stage_bm25s,
}


# --- the driver ----------------------------------------------------------------------------------


def run_stage(name: str, *args: str) -> dict[str, Any]:
    """Run one stage in a fresh process; its JSON result."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, __file__, "--stage", name, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"stage {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sample_queries(corpus: Path, count: int, seed: int) -> list[str]:
    """``count`` queries of 2-6 words, each taken from a random passage (one pass over the file)."""
    from gather_envs.corpus.passages import iter_passages
    from gather_envs.retrieval import tokenize

    rng = np.random.default_rng(seed)
    with corpus.open("rb") as handle:
        n_lines = sum(1 for _ in handle)
    wanted = sorted(rng.choice(n_lines, size=count, replace=n_lines < count).tolist())
    picked: list[str] = []
    position = 0
    for line, document in enumerate(iter_passages(corpus)):
        while position < len(wanted) and wanted[position] == line:
            words = tokenize(document.text) or ["empty"]
            size = int(rng.integers(QUERY_WORDS[0], QUERY_WORDS[1] + 1))
            picked.append(" ".join(words[i] for i in rng.integers(0, len(words), size)))
            position += 1
    order = rng.permutation(len(picked))
    return [picked[i] for i in order]


def directory_mb(path: Path, names: tuple[str, ...] | None = None) -> float:
    return sum(f.stat().st_size for f in path.iterdir() if names is None or f.name in names) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help="a wiki-18 layout JSONL file")
    parser.add_argument("--work", type=Path, help="a folder for the index, queries and results")
    parser.add_argument("--memory-budget", default="2GB")
    parser.add_argument(
        "--queries", type=int, default=200, help="sampled queries (>= 200 for the exactness figure)"
    )
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh processes timing their first query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rank-bm25", action="store_true", help="also rank_bm25 (memory; exactness against it)"
    )
    parser.add_argument(
        "--rank-bm25-queries", type=int, default=10**9, help="queries rank_bm25 answers (slow at 1M)"
    )
    parser.add_argument("--bm25s", action="store_true", help="also bm25s memory-mapped (pip install bm25s)")
    parser.add_argument("--reuse-index", action="store_true", help="skip the build if --work holds an index")
    args, rest = parser.parse_known_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](*rest)))
        return
    if args.corpus is None or args.work is None:
        parser.error("--corpus and --work are required")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    index, queries_file, hits_file = work / "index", work / "queries.json", work / "hits.json"
    results: dict[str, Any] = {"corpus": str(args.corpus), "memory_budget": args.memory_budget}
    if not (args.reuse_index and (index / "manifest.json").is_file()):
        results["build"] = run_stage("build", str(args.corpus), str(index), args.memory_budget)
        print("build", json.dumps(results["build"]), flush=True)
    manifest = json.loads((index / "manifest.json").read_text())
    documents = ("doc_ids_bytes.npy", "doc_ids_offsets.npy", "titles_bytes.npy", "titles_offsets.npy")
    documents += ("texts_bytes.npy", "texts_offsets.npy")
    total = directory_mb(index)
    results["disk"] = {
        "documents": manifest["n_docs"],
        "terms": manifest["n_terms"],
        "postings": manifest["n_postings"],
        "tokens": manifest["total_tokens"],
        "total_mb": total,
        "index_arrays_mb": total - directory_mb(index, documents),
        "documents_mb": directory_mb(index, documents),
    }
    print("disk", json.dumps(results["disk"]), flush=True)
    queries = sample_queries(args.corpus, args.queries, args.seed)
    queries_file.write_text(json.dumps(queries))
    results["queries"] = run_stage("queries", str(index), str(queries_file), str(hits_file))
    print("queries", json.dumps(results["queries"]), flush=True)
    results["cold"] = [run_stage("cold", str(index), queries[i]) for i in range(1, args.cold_runs + 1)]
    print("cold", json.dumps(results["cold"]), flush=True)
    results["brute"] = run_stage("brute", str(index), str(queries_file), str(hits_file))
    print("brute", json.dumps(results["brute"]), flush=True)
    if args.rank_bm25:
        results["rank_bm25"] = run_stage(
            "rank_bm25", str(args.corpus), str(queries_file), str(hits_file), str(args.rank_bm25_queries)
        )
        print("rank_bm25", json.dumps(results["rank_bm25"]), flush=True)
    if args.bm25s:
        bm25s_dir = work / "bm25s"
        results["bm25s_build"] = run_stage("bm25s_build", str(args.corpus), str(bm25s_dir))
        results["bm25s_build"]["disk_mb"] = directory_mb(bm25s_dir)
        print("bm25s_build", json.dumps(results["bm25s_build"]), flush=True)
        results["bm25s"] = run_stage("bm25s", str(bm25s_dir), str(queries_file))
        print("bm25s", json.dumps(results["bm25s"]), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    summarize(results)


def summarize(results: dict[str, Any]) -> None:
    """The headline figures, one per line."""
    disk, queries = results["disk"], results["queries"]
    own = queries["rss_after"]["VmRSS"] - queries["rss_before"]["VmRSS"]
    anon = queries["rss_after"]["RssAnon"] - queries["rss_before"]["RssAnon"]
    print(
        f"\n{disk['documents']} documents, {disk['tokens']} tokens, {disk['terms']} terms, {disk['postings']} postings"
    )
    if "build" in results:
        build = results["build"]
        print(
            f"build: {build['build_s']:.0f} s, peak RSS {build['peak_rss_mb']:.0f} MB (budget {results['memory_budget']})"
        )
    print(
        f"disk: {disk['total_mb']:.0f} MB ({disk['index_arrays_mb']:.0f} MB index arrays + {disk['documents_mb']:.0f} MB documents)"
    )
    print(
        f"open: {queries['open_s'] * 1e3:.1f} ms; index memory after open+queries: {own:.0f} MB RSS ({anon:.0f} MB anonymous)"
    )
    cold = sorted(run["first_query_s"] * 1e3 for run in results["cold"])
    print(
        f"cold first query: median {cold[len(cold) // 2]:.1f} ms, max {cold[-1]:.1f} ms over {len(cold)} processes"
    )
    for k in K_VALUES:
        row = queries[f"top{k}"]
        print(f"warm top-{k}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms over {row['n']} queries")
    brute = results["brute"]
    print(
        f"exact vs brute force: {brute['queries'] - brute['mismatches']}/{brute['queries']} top-{EXACT_K} equal"
    )
    if "rank_bm25" in results:
        ref = results["rank_bm25"]
        print(
            f"rank_bm25: index {ref['index_mb']:.0f} MB, get_scores p50 {ref['get_scores']['p50_ms']:.0f} ms, "
            f"{ref['queries'] - ref['mismatches']}/{ref['queries']} top-{EXACT_K} equal"
        )
    if "bm25s" in results:
        other = results["bm25s"]
        print(
            f"bm25s mmap: disk {results['bm25s_build']['disk_mb']:.0f} MB, build {results['bm25s_build']['build_s']:.0f} s "
            f"(peak {results['bm25s_build']['peak_rss_mb']:.0f} MB); memory after load+queries "
            f"{other['rss_after']['VmRSS'] - other['rss_before']['VmRSS']:.0f} MB RSS "
            f"({other['rss_after']['RssAnon'] - other['rss_before']['RssAnon']:.0f} MB anonymous); "
            f"top-3 p50 {other['top3']['p50_ms']:.2f} ms p99 {other['top3']['p99_ms']:.2f} ms; "
            f"top-100 p50 {other['top100']['p50_ms']:.2f} ms p99 {other['top100']['p99_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
