"""Episodes/s of the runner against loopback OpenAI-compatible servers with a fixed latency, per HTTP client.

Each server (``tests/_support/loopback_openai.py``, its own process, so its CPU is not the runner's)
answers every completion after ``--latency-s`` (200 ms) from a script: a search, then an answer,
so each episode of the react agent on ``Gather-MultiHop-v0`` at T = 2 makes two model calls. The
ideal is ``concurrency / (2 x latency)`` episodes/s; the script prints the share of it reached at
each concurrency, with 1 and with several endpoints, the runner's CPU time (all its threads,
records written with fsync) per model call, and the servers' (which share the cores). Prints
figures; asserts nothing.

``--clients`` compares the HTTP clients under the backend's pool, retries and parsing: ``ours``
(the socket transport it ships), ``httpx``, ``aiohttp`` (one event loop thread, the calls handed to
it from the episode threads) and ``openai`` (the SDK's ``with_raw_response``, no retries, its
pydantic parse skipped: a lower bound on its cost). ``--repeat`` runs every client back to back
that many times, so all see the same load, and prints each run and the medians.

    python benchmarks/bench_llm_throughput.py [--concurrency 1 16 64 256] [--endpoints 1 4]
    python benchmarks/bench_llm_throughput.py --concurrency 256 1024 --endpoints 1 \\
        --clients ours httpx aiohttp openai --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "_support"))

import gymnasium as gym  # noqa: E402
from loopback_openai import ServerProcess  # noqa: E402

import gather_envs  # noqa: E402,F401  (registers the ids)
from gather_envs.agents.backends.http.errors import Retryable, timed_out  # noqa: E402
from gather_envs.agents.backends.http.transport import Answer, SocketTransport, Transport  # noqa: E402
from gather_envs.agents.backends.openai_http import OpenAIHTTPBackend  # noqa: E402
from gather_envs.agents.llm import STYLES, LLMAgent  # noqa: E402
from gather_envs.evaluation import evaluate  # noqa: E402

ENV_ID = "Gather-MultiHop-v0"
BUDGET = 2
SCRIPT = ("Thought: look it up.\nAction: search[Pythdry Gryga]", "Thought: done.\nAction: answer[1915]")
CALLS_PER_EPISODE = len(SCRIPT)
TASKS = 64
MIN_EPISODES = 16
POOL_SIZE = 4096  # the backend's own slots bound the connections; a client's pool must not


def _failure(error: Exception, deadline_s: float, timeouts: tuple[type[BaseException], ...]) -> Retryable:
    if isinstance(error, timeouts):
        return timed_out(deadline_s)
    return Retryable(f"connection failed: {type(error).__name__}: {error}", endpoint_down=True)


class HttpxTransport:
    """httpx's sync client (its own keep-alive pool); ``timeout`` bounds each read, not the answer."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        import httpx

        self.httpx = httpx
        self.url = url
        limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
        self.client = httpx.Client(headers=dict(headers), limits=limits)

    def exchange(self, method: str, path: str, body: bytes | None, deadline_s: float) -> Answer:
        try:
            answer = self.client.request(method, self.url + path, content=body, timeout=deadline_s)
        except self.httpx.HTTPError as error:
            raise _failure(error, deadline_s, (self.httpx.TimeoutException,)) from None
        return Answer(answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content)

    def close_idle(self) -> None:
        """httpx closes idle connections itself."""


class _Loop:
    """One asyncio event loop on a daemon thread, shared by the aiohttp transports."""

    _loop: asyncio.AbstractEventLoop | None = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                cls._loop = asyncio.new_event_loop()
                threading.Thread(target=cls._loop.run_forever, name="bench-aiohttp", daemon=True).start()
            return cls._loop


class AiohttpTransport:
    """aiohttp on one event loop thread; ``ClientTimeout(total=...)`` is a true total deadline."""

    opened: list[AiohttpTransport] = []  # closed after each measurement

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self.url = url
        self.loop = _Loop.get()

        async def session() -> Any:
            connector = aiohttp.TCPConnector(limit=POOL_SIZE, limit_per_host=POOL_SIZE)
            return aiohttp.ClientSession(headers=dict(headers), connector=connector, auto_decompress=False)

        self.session = asyncio.run_coroutine_threadsafe(session(), self.loop).result()
        AiohttpTransport.opened.append(self)

    @classmethod
    def close_all(cls) -> None:
        """Close every session opened so far (aiohttp warns about one left open)."""
        while cls.opened:
            transport = cls.opened.pop()
            asyncio.run_coroutine_threadsafe(transport.session.close(), transport.loop).result()

    async def _exchange(self, method: str, url: str, body: bytes | None, deadline_s: float) -> Answer:
        timeout = self.aiohttp.ClientTimeout(total=deadline_s)
        async with self.session.request(method, url, data=body, timeout=timeout) as answer:
            content = await answer.read()
            return Answer(answer.status, {k.lower(): v for k, v in answer.headers.items()}, content)

    def exchange(self, method: str, path: str, body: bytes | None, deadline_s: float) -> Answer:
        future = asyncio.run_coroutine_threadsafe(self._exchange(method, self.url + path, body, deadline_s), self.loop)
        try:
            return future.result()
        except (self.aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise _failure(error, deadline_s, (asyncio.TimeoutError,)) from None

    def close_idle(self) -> None:
        """aiohttp closes idle connections itself."""


class OpenAISDKTransport:
    """The openai SDK's client, retries off, the raw answer taken before its pydantic parse."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        import openai

        self.openai = openai
        key = headers.get("Authorization", "Bearer none").removeprefix("Bearer ")
        if hasattr(openai, "DefaultHttpx2Client"):  # openai 3 runs on httpx2, earlier ones on httpx
            import httpx2 as sdk_httpx

            http = openai.DefaultHttpx2Client
        else:
            import httpx as sdk_httpx

            http = openai.DefaultHttpxClient
        # the SDK keeps 100 idle connections by default: raised to the backend's bound, as for the others
        client = http(limits=sdk_httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE))
        self.client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=None, http_client=client)

    def exchange(self, method: str, path: str, body: bytes | None, deadline_s: float) -> Answer:
        if method != "POST" or path != "/chat/completions" or body is None:
            raise Retryable(f"the openai SDK transport sends chat completions only, not {method} {path}")
        payload = json.loads(body)
        known = {"model", "messages", "temperature", "top_p", "max_tokens", "n", "seed", "stop", "tools"}
        extra = {k: v for k, v in payload.items() if k not in known}
        fields = {k: v for k, v in payload.items() if k in known}
        try:
            raw = self.client.chat.completions.with_raw_response.create(
                **fields, extra_body=extra or None, timeout=deadline_s
            )
        except self.openai.APITimeoutError as error:
            raise _failure(error, deadline_s, (self.openai.APITimeoutError,)) from None
        except self.openai.APIStatusError as error:
            response = error.response
            return Answer(response.status_code, dict(response.headers), response.content)
        except self.openai.APIError as error:
            raise _failure(error, deadline_s, ()) from None
        response = raw.http_response
        return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)

    def close_idle(self) -> None:
        """The SDK's client closes idle connections itself."""


CLIENTS: dict[str, Callable[[str, Mapping[str, str]], Transport]] = {
    "ours": SocketTransport,
    "httpx": HttpxTransport,
    "aiohttp": AiohttpTransport,
    "openai": OpenAISDKTransport,
}


def cpu_seconds() -> float:
    """CPU time of this process, all threads, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu_seconds(server: ServerProcess) -> float:
    """CPU time of a loopback server process so far (Linux /proc), for the share it takes."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(concurrency: int, endpoints: int, latency_s: float, rounds: int, client: str) -> dict[str, float]:
    """One run: episodes/s, its share of the ideal, and CPU ms per model call."""
    episodes = max(MIN_EPISODES * rounds, concurrency * rounds)
    n = math.ceil(episodes / TASKS)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as folder:
        servers = [stack.enter_context(ServerProcess(SCRIPT, latency_s)) for _ in range(endpoints)]
        backend = OpenAIHTTPBackend([s.url for s in servers], model="loopback", transport=CLIENTS[client])
        agent = LLMAgent(gym.make(ENV_ID).unwrapped, STYLES["react"], chat_backend=backend)
        cpu, started = cpu_seconds(), time.perf_counter()
        records = evaluate(
            ENV_ID, agent, n=n, budgets=(BUDGET,), tasks=TASKS, concurrency=concurrency,
            out=Path(folder) / "run.jsonl", progress=False,
        )  # fmt: skip
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        served = [s.stats()["requests"] for s in servers]
        server_cpu = sum(server_cpu_seconds(s) for s in servers)
        AiohttpTransport.close_all()
    calls = sum(r.extra["usage"]["llm_calls"] for r in records)
    rate = len(records) / wall
    ideal = concurrency / (CALLS_PER_EPISODE * latency_s)
    return {
        "episodes": len(records),
        "rate": rate,
        "share": rate / ideal,
        "cpu_ms": 1e3 * cpu / max(calls, 1),
        "infra": sum(r.is_infra_error for r in records),
        "spread": min(served) / max(max(served), 1),
        "server_ms": 1e3 * server_cpu / max(sum(served), 1),
    }


HEADER = (
    "client    concurrency  endpoints  episodes   episodes/s   ideal    share   CPU ms/call  server ms/call  "
    "infra  min/max load"
)


def row(client: str, concurrency: int, endpoints: int, figures: Mapping[str, float], ideal: float) -> str:
    return (
        f"{client:8s}  {concurrency:11d}  {endpoints:9d}  {figures['episodes']:8.0f}  {figures['rate']:11.1f}  "
        f"{ideal:6.1f}  {figures['share']:6.1%}  {figures['cpu_ms']:11.3f}  {figures['server_ms']:14.3f}  "
        f"{figures['infra']:5.0f}  {figures['spread']:12.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--endpoints", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--latency-s", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=8, help="episodes per run = concurrency x rounds")
    parser.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=["ours"])
    parser.add_argument("--repeat", type=int, default=1, help="runs of every client, back to back")
    args = parser.parse_args()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"{os.cpu_count()} cores, load average {load}; latency {args.latency_s * 1e3:.0f} ms per completion"
    )
    for client in args.clients:
        measure(1, 1, args.latency_s, 1, client)  # warm up: imports, the frozen corpus, the BM25 index
    print(HEADER, flush=True)
    runs: dict[tuple[str, int, int], list[dict[str, float]]] = {}
    for concurrency in args.concurrency:
        for endpoints in args.endpoints:
            ideal = concurrency / (CALLS_PER_EPISODE * args.latency_s)
            for _ in range(args.repeat):
                for client in args.clients:
                    figures = measure(concurrency, endpoints, args.latency_s, args.rounds, client)
                    runs.setdefault((client, concurrency, endpoints), []).append(figures)
                    print(row(client, concurrency, endpoints, figures, ideal), flush=True)
    if args.repeat > 1:
        print(f"medians of {args.repeat} runs")
        print(HEADER)
        for (client, concurrency, endpoints), figures in runs.items():
            median = {key: statistics.median(f[key] for f in figures) for key in figures[0]}
            ideal = concurrency / (CALLS_PER_EPISODE * args.latency_s)
            print(row(client, concurrency, endpoints, median, ideal))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average after: {load}")


if __name__ == "__main__":
    main()
