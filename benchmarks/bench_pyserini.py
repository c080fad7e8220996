"""Pyserini (Lucene BM25) beside the on-disk index: build, disk, memory and latency on the same queries.

Run after ``bench_disk_index.py`` on the same corpus and ``--work`` folder: it reads the queries
that run sampled (``WORK/queries.json``) and its top-100 hits (``WORK/hits.json``), so both
engines answer the same queries. Each stage runs in a fresh process:

1. ``python -m pyserini.index.lucene`` (``JsonCollection``: wiki-18's ``id`` / ``contents`` rows
   as they are) with ``--threads``: wall time, the indexer's peak RSS, disk size;
2. ``LuceneSearcher`` with BM25 at rank_bm25's ``k1 = 1.5, b = 0.75``: open time, RSS after
   open and after the queries (the JVM runs inside the process, so its heap counts), the first
   query (cold) and every query at top-3 and top-100 (warm), p50/p99;
3. overlap of Pyserini's top-100 with ours, per query. Lucene's analyzer (stemming, stopwords)
   and its BM25 (no idf floor, document lengths rounded to one byte) are not rank_bm25's, so this
   is a figure of agreement, not of exactness.

Pyserini is not a dependency of gather-envs: give it its own virtual environment. Pyserini 0.23.0
is the last release on Java 11 (0.24 and later need Java 21; Debian 12 offers OpenJDK 17). Its
search module imports its dense-retrieval stack, so the environment needs more than BM25 uses::

    python3 -m venv venv-pyserini
    venv-pyserini/bin/pip install --no-deps pyserini==0.23.0
    venv-pyserini/bin/pip install pyjnius numpy pandas scipy scikit-learn tqdm faiss-cpu \\
        torch==2.13.0 transformers onnxruntime openai tiktoken
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 OPENAI_API_KEY=unused \\
        venv-pyserini/bin/python benchmarks/bench_pyserini.py --corpus wiki-1m.jsonl --work bench-1m

(``OPENAI_API_KEY``: Pyserini 0.23 builds an OpenAI client at import; nothing is sent.) Prints
one summary; asserts nothing. Figures are in benchmarks/README.md. The script stands alone (its
own ``memory``, ``percentiles`` and stage runner, the same shape as ``bench_disk_index.py``'s):
Pyserini's environment has no gather-envs to import them from.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

K_VALUES = (3, 100)
K1, B = 1.5, 0.75  # rank_bm25's defaults, which the on-disk index uses


def memory() -> dict[str, float]:
    """This process's VmRSS and RssAnon in MB."""
    found: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            found[key] = int(value.split()[0]) / 1024
    return found


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(s * 1e3 for s in seconds)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "n": len(ordered)}


def directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def stage_build(corpus: str, index: str, threads: str) -> dict[str, Any]:
    """Index the corpus with Pyserini's Lucene indexer (a child process); time, peak RSS, disk."""
    source = Path(index).parent / "lucene-input"
    source.mkdir(parents=True, exist_ok=True)
    link = source / Path(corpus).name
    if not link.exists():
        link.symlink_to(Path(corpus).resolve())  # JsonCollection reads a folder of .jsonl files
    command = [
        sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection",
        "--input", str(source), "--index", index, "--generator", "DefaultLuceneDocumentGenerator",
        "--threads", threads,
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"build_s": seconds, "peak_rss_mb": peak, "disk_mb": directory_mb(Path(index))}


def stage_queries(index: str, queries_file: str, hits_file: str) -> dict[str, Any]:
    """Open the index, time the first query (cold), then every query at each k (warm); overlap with ours."""
    before = memory()
    start = time.perf_counter()
    from pyserini.search.lucene import LuceneSearcher

    imported = time.perf_counter()
    searcher = LuceneSearcher(index)
    searcher.set_bm25(K1, B)
    open_s = time.perf_counter() - imported
    after_open = memory()
    queries = json.loads(Path(queries_file).read_text())
    first = time.perf_counter()
    searcher.search(queries[0], K_VALUES[0])
    cold_s = time.perf_counter() - first
    latency: dict[str, Any] = {}
    found: list[list[str]] = []
    for k in K_VALUES:
        seconds = []
        for query in queries:
            began = time.perf_counter()
            hits = searcher.search(query, k)
            seconds.append(time.perf_counter() - began)
            if k == max(K_VALUES):
                found.append([hit.docid for hit in hits])
        latency[f"top{k}"] = percentiles(seconds)
    ours = json.loads(Path(hits_file).read_text()) if Path(hits_file).exists() else []
    overlaps = [
        len(set(theirs) & {str(row[0] + 1) for row in mine}) / max(1, len(mine))  # our row ids are 0-based lines; wiki-18 ids 1-based
        for theirs, mine in zip(found, ours)
    ]
    return {
        "import_s": imported - start,
        "open_s": open_s,
        "cold_s": cold_s,
        "rss_before": before,
        "rss_open": after_open,
        "rss_after": memory(),
        "top100_overlap": sum(overlaps) / len(overlaps) if overlaps else None,
        **latency,
    }


STAGES = {"build": stage_build, "queries": stage_queries}


def run_stage(name: str, *args: str) -> dict[str, Any]:
    """One stage in a fresh process (its memory is its own); its JSON result."""
    out = subprocess.run(
        [sys.executable, __file__, "--stage", name, *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help="the wiki-18 layout JSONL file bench_disk_index.py indexed")
    parser.add_argument("--work", type=Path, help="bench_disk_index.py's --work folder (its queries and hits)")
    parser.add_argument("--threads", default="1", help="indexing threads (default 1)")
    parser.add_argument("--reuse-index", action="store_true", help="skip the build if WORK/lucene exists")
    args, rest = parser.parse_known_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](*rest)))
        return
    if args.corpus is None or args.work is None:
        parser.error("--corpus and --work are required")
    os.environ.setdefault("OPENAI_API_KEY", "unused")  # Pyserini 0.23 builds an OpenAI client at import
    index = args.work / "lucene"
    results: dict[str, Any] = {}
    if not (args.reuse_index and index.is_dir()):
        results["build"] = run_stage("build", str(args.corpus), str(index), args.threads)
        print("build", json.dumps(results["build"]), flush=True)
    results["queries"] = run_stage(
        "queries", str(index), str(args.work / "queries.json"), str(args.work / "hits.json")
    )
    (args.work / "pyserini.json").write_text(json.dumps(results, indent=1))
    q = results["queries"]
    if "build" in results:
        b = results["build"]
        print(f"build: {b['build_s']:.0f} s with {args.threads} thread(s), peak RSS {b['peak_rss_mb']:.0f} MB, disk {b['disk_mb']:.0f} MB")
    print(
        f"open {q['open_s'] * 1e3:.0f} ms (import {q['import_s']:.1f} s); memory after open+queries "
        f"{q['rss_after']['VmRSS'] - q['rss_before']['VmRSS']:.0f} MB RSS "
        f"({q['rss_after']['RssAnon'] - q['rss_before']['RssAnon']:.0f} MB anonymous); cold first query {q['cold_s'] * 1e3:.1f} ms"
    )
    for k in K_VALUES:
        row = q[f"top{k}"]
        print(f"warm top-{k}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms over {row['n']} queries")
    if q["top100_overlap"] is not None:
        print(f"top-100 overlap with the on-disk index: {q['top100_overlap']:.3f} (different analyzers and BM25 variants)")


if __name__ == "__main__":
    main()
