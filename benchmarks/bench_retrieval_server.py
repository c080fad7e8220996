"""Benchmark `gather-envs serve-retrieval`: queries/s over HTTP and the share of time that is BM25.

Usage::

    PYTHONPATH=. python benchmarks/bench_retrieval_server.py                 # 100k documents
    PYTHONPATH=. python benchmarks/bench_retrieval_server.py --docs 10000 --queries 512

The corpus and queries are bench_bm25's (seeded Zipfian documents of 40 to 80 tokens, queries of
2 to 5 tokens from one document). The server runs in its own process (this script with --serve),
on loopback, with the package's Retriever and service (uvicorn, one worker). One client sends every query in
batches of 1, 64 and 512 on one keep-alive connection, as Search-R1's client does
(``return_scores: true``, ``topk`` 3). "BM25" is the search time the server reports for each
request in its ``Server-Timing`` header; the rest of the wall time (JSON both ways, HTTP, the
loopback socket, building the answer) is "HTTP". The BM25 share is BM25 time over wall time, both
from the same requests. Each figure is the best of a few rounds. Client and server share the
machine's cores. Figures are printed and nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

from bench_bm25 import make_corpus, make_queries

from gather_envs.corpus.corpus import Corpus
from gather_envs.records.documents import Document
from gather_envs.serving import Retriever
from gather_envs.serving.service import bind_socket, server_url
from gather_envs.serving.service import serve as serve_on

DEFAULT_DOCS = 100_000
DEFAULT_QUERIES = 2048
BATCH_SIZES = (1, 64, 512)
TOP_K = 3
SEED = 0
WARMUP_QUERIES = 64
DEFAULT_ROUNDS = 3


def build_retriever(tokens: list[list[str]]) -> Retriever:
    """A Retriever over bench_bm25's token lists as documents (the first token is the title)."""
    documents = [Document(f"d{i}", doc[0], " ".join(doc[1:])) for i, doc in enumerate(tokens)]
    return Retriever(Corpus(f"bench-{len(tokens)}", documents, {}), default_topk=TOP_K)


def serve(n_docs: int, seed: int) -> None:
    """The server process: build the index, print the URL, serve until killed."""
    retriever = build_retriever(make_corpus(n_docs, seed))
    sock = bind_socket("127.0.0.1", 0)
    print(server_url(sock), flush=True)
    serve_on(retriever, sock)


def timed_requests(url: str, queries: list[str], batch: int) -> tuple[float, float]:
    """Wall time and the server's reported BM25 time for every query, ``batch`` per request."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=600)
    headers = {"Content-Type": "application/json"}
    bm25 = 0.0
    try:
        start = time.perf_counter()
        for lo in range(0, len(queries), batch):
            chunk = queries[lo : lo + batch]
            body = json.dumps({"queries": chunk, "topk": TOP_K, "return_scores": True}).encode()
            connection.request("POST", parts.path, body=body, headers=headers)
            response = connection.getresponse()
            answer = json.loads(response.read())
            if response.status != 200 or len(answer["result"]) != len(chunk):
                raise RuntimeError(f"bad answer {response.status}: {str(answer)[:200]}")
            bm25 += float(str(response.getheader("Server-Timing")).partition("dur=")[2]) / 1e3
        return time.perf_counter() - start, bm25
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=DEFAULT_DOCS)
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES, help="queries per batch size")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="timed rounds; the best counts")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.docs, SEED)
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--docs", str(args.docs)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        queries = [" ".join(q) for q in make_queries(make_corpus(args.docs, SEED), args.queries, SEED)]
        url = child.stdout.readline().strip()
        timed_requests(url, queries[:WARMUP_QUERIES], 1)
        print(f"{args.docs} documents, {len(queries)} queries per batch size, topk={TOP_K}, {url}")
        print("load average " + " ".join(f"{load:.1f}" for load in os.getloadavg()))
        print(f"best of {args.rounds} rounds per batch size; BM25 = the server's Server-Timing")
        print(f"{'batch':>6} {'queries/s':>10} {'ms/request':>11} {'BM25 q/s':>9} {'BM25 share':>11}")
        for batch in BATCH_SIZES:
            total, bm25 = min(timed_requests(url, queries, batch) for _ in range(args.rounds))
            requests = -(-len(queries) // batch)
            print(
                f"{batch:>6} {len(queries) / total:>10,.0f} {1e3 * total / requests:>11.2f} "
                f"{len(queries) / bm25:>9,.0f} {bm25 / total:>11.0%}"
            )
    finally:
        child.kill()
        child.wait()


if __name__ == "__main__":
    main()
