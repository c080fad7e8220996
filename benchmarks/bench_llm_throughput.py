"""Episodes/s of the runner against loopback OpenAI-compatible servers with a fixed latency.

Each server (``tests/_support/loopback_openai.py``, its own process, so its CPU is not the runner's)
answers every completion after ``--latency-s`` (200 ms) from a script: a search, then an answer,
so each episode of the react agent on ``Gather-MultiHop-v0`` at T = 2 makes two model calls. The
ideal is ``concurrency / (2 x latency)`` episodes/s; the script prints the share of it reached at
each concurrency, with 1 and with several endpoints, the runner's CPU time (all its threads,
records written with fsync) per model call, and the servers' (which share the cores). Prints
figures; asserts nothing.

    python benchmarks/bench_llm_throughput.py [--concurrency 1 16 64 256] [--endpoints 1 4]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "_support"))

from loopback_openai import ServerProcess  # noqa: E402

import gather_envs  # noqa: E402,F401  (registers the ids)
from gather_envs.evaluation import evaluate  # noqa: E402

ENV_ID = "Gather-MultiHop-v0"
BUDGET = 2
SCRIPT = ("Thought: look it up.\nAction: search[Pythdry Gryga]", "Thought: done.\nAction: answer[1915]")
CALLS_PER_EPISODE = len(SCRIPT)
TASKS = 64
MIN_EPISODES = 16


def cpu_seconds() -> float:
    """CPU time of this process, all threads, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu_seconds(server: ServerProcess) -> float:
    """CPU time of a loopback server process so far (Linux /proc), for the share it takes."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(concurrency: int, endpoints: int, latency_s: float, rounds: int) -> dict[str, float]:
    """One run: episodes/s, its share of the ideal, and CPU ms per model call."""
    episodes = max(MIN_EPISODES * rounds, concurrency * rounds)
    n = math.ceil(episodes / TASKS)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as folder:
        servers = [stack.enter_context(ServerProcess(SCRIPT, latency_s)) for _ in range(endpoints)]
        options = {"base_url": ",".join(s.url for s in servers), "model": "loopback"}
        cpu, started = cpu_seconds(), time.perf_counter()
        records = evaluate(
            ENV_ID, "react", n=n, budgets=(BUDGET,), tasks=TASKS, concurrency=concurrency,
            out=Path(folder) / "run.jsonl", agent_options=options, progress=False,
        )  # fmt: skip
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        served = [s.stats()["requests"] for s in servers]
        server_cpu = sum(server_cpu_seconds(s) for s in servers)
    calls = sum(r.extra["usage"]["llm_calls"] for r in records)
    rate = len(records) / wall
    ideal = concurrency / (CALLS_PER_EPISODE * latency_s)
    infra = sum(r.is_infra_error for r in records)
    return {
        "episodes": len(records),
        "rate": rate,
        "share": rate / ideal,
        "cpu_ms": 1e3 * cpu / calls,
        "infra": infra,
        "spread": min(served) / max(served),
        "server_ms": 1e3 * server_cpu / sum(served),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--endpoints", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--latency-s", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=8, help="episodes per run = concurrency x rounds")
    args = parser.parse_args()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"{os.cpu_count()} cores, load average {load}; latency {args.latency_s * 1e3:.0f} ms per completion"
    )
    measure(1, 1, args.latency_s, 1)  # warm up: imports, the frozen corpus, the BM25 index
    print(
        "concurrency  endpoints  episodes   episodes/s   ideal    share   CPU ms/call  server ms/call  "
        "infra  min/max load"
    )
    for concurrency in args.concurrency:
        for endpoints in args.endpoints:
            figures = measure(concurrency, endpoints, args.latency_s, args.rounds)
            ideal = concurrency / (CALLS_PER_EPISODE * args.latency_s)
            print(
                f"{concurrency:11d}  {endpoints:9d}  {figures['episodes']:8.0f}  {figures['rate']:11.1f}  "
                f"{ideal:6.1f}  {figures['share']:6.1%}  {figures['cpu_ms']:11.3f}  {figures['server_ms']:14.3f}  "
                f"{figures['infra']:5.0f}  "
                f"{figures['spread']:12.2f}",
                flush=True,
            )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average after: {load}")


if __name__ == "__main__":
    main()
