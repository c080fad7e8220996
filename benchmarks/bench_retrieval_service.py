"""Benchmark the retrieval service under many concurrent clients: queries/s, latency, errors, memory.

Usage::

    PYTHONPATH=. python benchmarks/bench_retrieval_service.py                   # 20 s per cell
    PYTHONPATH=. python benchmarks/bench_retrieval_service.py --minutes 10      # the long run
    PYTHONPATH=. python benchmarks/bench_retrieval_service.py --clients 256 --workers 2 --seconds 5

The corpus and queries are bench_bm25's (seeded Zipfian documents of 40 to 80 tokens, 100k by
default). For each worker count the service runs in its own process tree (this script with
--serve: the package's Retriever and service, forked workers, default limits) on loopback. For
each client count, that many clients each keep one connection and send one query after another
(``topk`` 3, ``return_scores``), as rollout workers do, from one asyncio process beside it; the
client and the server share the machine's cores. After a warm-up, each cell counts answered
queries, latency per request (send to last byte), errors (any status but 200, or a dropped
connection), and samples the service's memory once a second: the proportional set size (PSS) of
the server and its workers from /proc, in which pages the forked workers share count once. Figures are printed and nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench_bm25 import make_corpus, make_queries
from bench_retrieval_server import build_retriever

DEFAULT_DOCS = 100_000
DEFAULT_SECONDS = 20.0
CLIENT_COUNTS = (256, 1024)
WORKER_COUNTS = (1, 2)
WARMUP_S = 3.0
TOP_K = 3
SEED = 0
QUERY_POOL = 4096
MEMORY_SAMPLE_S = 1.0
CONNECT_TIMEOUT_S = 60.0


def serve(n_docs: int, workers: int) -> None:
    """The server process: build the index, print the URL, serve until killed."""
    from gather_envs.serving.service import bind_socket, server_url
    from gather_envs.serving.service import serve as serve_on

    retriever = build_retriever(make_corpus(n_docs, SEED))
    sock = bind_socket("127.0.0.1", 0)
    print(server_url(sock), flush=True)
    serve_on(retriever, sock, workers)


def pss_bytes(root: int) -> int:
    """Proportional set size of ``root`` and its children, from /proc: pages shared by the forked
    workers count once in total (RSS would count them in every process)."""
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == root:
                    pids.append(int(entry.name))
            except OSError:
                continue
    total = 0
    for pid in pids:
        try:
            match = re.search(
                r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.MULTILINE
            )
        except OSError:
            continue
        total += int(match.group(1)) * 1024 if match else 0
    return total


class Cell:
    """What one (workers, clients) run measured."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.memory: list[int] = []
        self.counting = False


async def client(
    host: str, port: int, path: str, bodies: list[bytes], offset: int, cell: Cell, stop: asyncio.Event
) -> None:
    """One keep-alive connection sending one query after another until ``stop``; reconnects on error."""
    position = offset
    reader = writer = None
    while not stop.is_set():
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
                )
            assert reader is not None
            body = bodies[position % len(bodies)]
            position += 1
            start = time.perf_counter()
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            elapsed = time.perf_counter() - start
            if cell.counting:
                if status == 200:
                    cell.latencies.append(elapsed)
                else:
                    cell.errors += 1
            if b"connection: close" in head.lower():
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            if cell.counting and not stop.is_set():
                cell.errors += 1
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def run_cell(url: str, server_pid: int, clients: int, seconds: float, bodies: list[bytes]) -> Cell:
    """``clients`` clients for a warm-up then ``seconds`` counted; memory sampled all along."""
    match = re.match(r"http://([^:/]+):(\d+)(/\S*)", url)
    assert match is not None
    host, port, path = match.group(1), int(match.group(2)), match.group(3)
    cell, stop = Cell(), asyncio.Event()
    tasks = [asyncio.create_task(client(host, port, path, bodies, i * 7, cell, stop)) for i in range(clients)]
    await asyncio.sleep(WARMUP_S)
    cell.counting = True
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        cell.memory.append(pss_bytes(server_pid))
        await asyncio.sleep(MEMORY_SAMPLE_S)
    cell.counting = False
    stop.set()
    await asyncio.wait(tasks, timeout=CONNECT_TIMEOUT_S)
    cell.memory.append(pss_bytes(server_pid))
    return cell


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=DEFAULT_DOCS)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="counted seconds per cell")
    parser.add_argument("--minutes", type=float, help="counted minutes per cell (the long run)")
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENT_COUNTS))
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKER_COUNTS))
    parser.add_argument("--serve", type=int, metavar="WORKERS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.docs, args.serve)
        return
    seconds = 60 * args.minutes if args.minutes else args.seconds
    queries = [" ".join(q) for q in make_queries(make_corpus(args.docs, SEED), QUERY_POOL, SEED)]
    bodies = [f'{{"queries": ["{q}"], "topk": {TOP_K}, "return_scores": true}}'.encode() for q in queries]
    print(f"{args.docs} documents, one query a request, topk={TOP_K}, {seconds:g} s counted per cell")
    print(
        f"{'workers':>7} {'clients':>7} {'queries/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>7} "
        f"{'PSS MB start/max/end':>21} {'load':>5}"
    )
    for workers in args.workers:
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(workers), "--docs", str(args.docs)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            url = child.stdout.readline().strip()
            for clients in args.clients:
                cell = asyncio.run(run_cell(url, child.pid, clients, seconds, bodies))
                done = len(cell.latencies)
                error_rate = cell.errors / max(1, done + cell.errors)
                memory = [m / 2**20 for m in cell.memory]
                print(
                    f"{workers:>7} {clients:>7} {done / seconds:>9,.0f} {1e3 * percentile(cell.latencies, 0.5):>7.1f} "
                    f"{1e3 * percentile(cell.latencies, 0.99):>7.1f} {error_rate:>7.2%} "
                    f"{f'{memory[0]:.0f}/{max(memory):.0f}/{memory[-1]:.0f}':>21} {os.getloadavg()[0]:>5.1f}",
                    flush=True,
                )
        finally:
            child.terminate()
            child.wait()


if __name__ == "__main__":
    main()
