"""Episodes/s of ``evaluate`` locally and on Ray, the per-episode cost Ray adds, and in-flight LLM calls.

Usage: python benchmarks/bench_ray.py [--tasks 12] [--latency 0.2] [--cpus 2]

1. The heuristic agent on a 400-entity world: episodes/s locally and on a local Ray instance with
   1 and 2 workers. The steady rate is read off the records file as it grows (the middle 80 % of
   its bytes over the time they took), so start-up (Ray workers, corpus load) drops out; Ray's
   overhead per episode = 1/Ray rate - 1/local rate. Each setting runs ``--repeats`` times (best).
   The driver writes a chunk of records with one fsync where the local runner fsyncs each record,
   so the same comparison is also made without a records file: there the marginal cost per
   episode is the slope of the best wall time between n = 1 and n = NO_FILE_N.
2. A loopback OpenAI-compatible server that waits ``--latency`` seconds per request: the most
   requests in flight at once with N Ray workers of ``--concurrency`` episodes each (expect N × C),
   and the steady episodes/s against the ideal N × C / latency.
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gather_envs  # noqa: F401
from gather_envs.evaluation import evaluate

ENV_ID = "Gather-v0"
WORLD = {"seed": 7, "num_entities": 400, "tasks_per_family": 12, "train_tasks_per_family": 6}
ENV_KWARGS = {"family": "bridge", "world": WORLD}
BUDGETS = (0, 1, 3, 5)
GRID_N = 16
NO_FILE_N = 64
"""n of the large run without a records file: ~3,000 episodes, so start-up noise (±0.5 s) is small."""
STEADY_FROM, STEADY_TO = 0.1, 0.9
"""The share of the records file's final size between which the steady rate is measured."""
WATCH_INTERVAL_S = 0.002
OBJECT_STORE_BYTES = 200 * 1024 * 1024
LLM_EPISODES_PER_SLOT = 20
"""Episodes per in-flight slot in the latency run: enough that the slots stay full a while."""
ANSWER = {
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Thought: guess.\nAction: answer[x]"}}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


@contextmanager
def watched(out: Path) -> Iterator[list[tuple[float, int]]]:
    """(time, size) samples of ``out`` taken every WATCH_INTERVAL_S while the block runs."""
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(WATCH_INTERVAL_S):
            size = out.stat().st_size if out.exists() else 0
            if not samples or size != samples[-1][1]:
                samples.append((time.perf_counter(), size))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def steady_rate(samples: list[tuple[float, int]], final_size: int, episodes: int) -> float:
    """Episodes/s while the file grew from STEADY_FROM to STEADY_TO of its final size."""
    low = next(t for t, size in samples if size >= STEADY_FROM * final_size)
    high = next(t for t, size in samples if size >= STEADY_TO * final_size)
    return (STEADY_TO - STEADY_FROM) * episodes / (high - low)


def heuristic_rate(tasks: int, out: Path, **options: Any) -> tuple[float, float]:
    """(steady episodes/s, episodes/s with start-up) of one fresh run of the heuristic agent."""
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    with watched(out) as samples:
        records = evaluate(
            ENV_ID, "heuristic", n=GRID_N, budgets=BUDGETS, tasks=tasks, env_kwargs=ENV_KWARGS,
            progress=False, out=out, **options,
        )  # fmt: skip
    wall = time.perf_counter() - start
    return steady_rate(samples, out.stat().st_size, len(records)), len(records) / wall


class _Loopback(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, latency: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.latency = latency
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.requests = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Loopback

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server = self.server
        with server.lock:
            server.in_flight += 1
            server.requests += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        time.sleep(server.latency)
        body = json.dumps(ANSWER).encode()
        with server.lock:
            server.in_flight -= 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def loopback(latency: float) -> Iterator[_Loopback]:
    server = _Loopback(latency)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def in_flight(workers: int, concurrency: int, latency: float, out: Path) -> tuple[int, float]:
    """(most requests in flight, episodes/s) of the react agent on the loopback server."""
    slots = workers * concurrency
    with loopback(latency) as server:
        out.unlink(missing_ok=True)
        options = {
            "base_url": f"http://127.0.0.1:{server.server_address[1]}/v1", "model": "loopback",
            "concurrency": concurrency, "grammar": False,
        }  # fmt: skip
        with watched(out) as samples:
            records = evaluate(
                ENV_ID, "react", n=LLM_EPISODES_PER_SLOT * slots, budgets=(1,), tasks=1,
                env_kwargs=ENV_KWARGS, agent_options=options, concurrency=concurrency, progress=False,
                out=out, engine="ray", workers=workers, ray_actor_options={"num_cpus": 0.5},
            )  # fmt: skip
        return server.max_in_flight, steady_rate(samples, out.stat().st_size, len(records))


def wall_without_file(n: int, tasks: int, repeats: int, **options: Any) -> float:
    """Best wall seconds of a run of the heuristic agent that writes no records file."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate(
            ENV_ID, "heuristic", n=n, budgets=BUDGETS, tasks=tasks, env_kwargs=ENV_KWARGS,
            progress=False, **options,
        )  # fmt: skip
        best = min(best, time.perf_counter() - start)
    return best


def marginal_without_file(tasks: int, repeats: int, **options: Any) -> float:
    """Seconds per extra episode without a records file (start-up cancels in the slope)."""
    cells = tasks * len(BUDGETS)
    small = wall_without_file(1, tasks, repeats, **options)
    large = wall_without_file(NO_FILE_N, tasks, repeats, **options)
    return (large - small) / (cells * (NO_FILE_N - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per loopback LLM request")
    parser.add_argument("--concurrency", type=int, default=8, help="episodes in flight per Ray worker")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--repeats", type=int, default=3, help="runs per heuristic setting (best kept)")
    args = parser.parse_args()
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False)
    print(f"local Ray instance started in {time.perf_counter() - started:.1f} s")
    grid = args.tasks * len(BUDGETS)
    print(f"heuristic agent, {grid} cells x n = {GRID_N}, steady rate (best of {args.repeats}):")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.jsonl"
        rows = [
            ("local, 1 thread", {}),
            ("Ray, 1 worker x 1", {"engine": "ray", "workers": 1}),
            ("Ray, 1 worker x 4", {"engine": "ray", "workers": 1, "concurrency": 4}),
            ("Ray, 2 workers x 1", {"engine": "ray", "workers": 2}),
            ("Ray, 2 workers x 4", {"engine": "ray", "workers": 2, "concurrency": 4}),
        ]
        local_s = 0.0
        for label, options in rows:
            runs = [heuristic_rate(args.tasks, out, **options) for _ in range(args.repeats)]
            rate, with_start = max(runs)
            per_episode = 1 / rate
            local_s = local_s or per_episode
            extra = "" if not options else f", Ray adds {(per_episode - local_s) * 1e3:+.2f} ms/episode"
            print(f"  {label:20s} {rate:6.0f} episodes/s ({per_episode * 1e3:.2f} ms), "
                  f"{with_start:5.0f} with start-up{extra}")  # fmt: skip
        print(f"without a records file (slope of the best wall time between n = 1 and n = {NO_FILE_N}):")
        local = marginal_without_file(args.tasks, args.repeats)
        print(f"  local, 1 thread      {local * 1e3:.2f} ms/episode")
        for label, options in (
            ("Ray, 1 worker x 1", {"workers": 1}),
            ("Ray, 1 worker x 4", {"workers": 1, "concurrency": 4}),
        ):
            marginal = marginal_without_file(args.tasks, args.repeats, engine="ray", **options)
            print(
                f"  {label:20s} {marginal * 1e3:.2f} ms/episode, Ray adds {(marginal - local) * 1e3:+.2f} ms/episode"
            )
        print(f"react agent on a loopback server with {args.latency * 1e3:.0f} ms per request:")
        for workers in (1, 2):
            most, rate = in_flight(workers, args.concurrency, args.latency, out)
            print(
                f"  Ray, {workers} worker(s) x concurrency {args.concurrency}: {most} requests in flight "
                f"at most (N x C = {workers * args.concurrency}), {rate:.1f} episodes/s "
                f"(ideal {workers * args.concurrency / args.latency:.1f})"
            )
    ray.shutdown()


if __name__ == "__main__":
    main()
