"""Many episodes in flight, several endpoints, failover and logprobs, against real loopback servers.

The servers (``tests/_support/loopback_openai.py``) answer from a script, so an episode's replies do not
depend on which server answers: a run that loses an endpoint must end with the same records as a
run that never did. No assertion here is about time.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import gymnasium as gym
import pytest
from _support.loopback_openai import ServerProcess, serve_in_thread

import gather_envs.agents.llm  # noqa: F401  (registers the LLM agents)
from gather_envs.agents import make_agent
from gather_envs.agents.backends import Sampling, make_backend
from gather_envs.agents.backends.openai_http import OpenAIHTTPBackend
from gather_envs.agents.llm import LOGPROBS_KEY, LOGPROBS_VERSION, logprobs_record
from gather_envs.errors import ConfigError
from gather_envs.evaluation import evaluate
from gather_envs.records import TERMINATION_ANSWERED
from gather_envs.runs import read_records

ENV_ID = "Gather-MultiHop-v0"
SEARCH_THEN_ANSWER = (
    "Thought: look it up.\nAction: search[Pythdry Gryga]",
    "Thought: done.\nAction: answer[1915]",
)
TWO_SEARCHES = (
    "Thought: look it up.\nAction: search[Pythdry Gryga]",
    "Thought: and the mentor.\nAction: search[mentor of Pythdry Gryga]",
    "Thought: done.\nAction: answer[1915]",
)
MESSAGES = [{"role": "user", "content": "Question: who?"}]
SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_tokens=16, seed=7)
FAST = {"model": "loopback", "backoff_s": 0.01, "max_backoff_s": 0.05}
IN_FLIGHT = 256
POLL_S = 0.005


def outcome(records: list[Any]) -> list[tuple]:
    """What a run decided per cell, without wall times or token counts."""
    return [
        (r.task_id, r.budget, r.episode_index, r.success, r.answer, r.queries, r.termination) for r in records
    ]


def test_one_process_keeps_256_episodes_in_flight(tmp_path) -> None:
    """The server holds every request until 256 are in flight at once; a client capped below that
    would leave it waiting for a minute and the count would fall short."""
    with ServerProcess(SEARCH_THEN_ANSWER, hold_until=IN_FLIGHT) as server:
        records = evaluate(
            ENV_ID, "react", n=1, budgets=(2,), tasks=IN_FLIGHT, concurrency=IN_FLIGHT,
            out=tmp_path / "run.jsonl", agent_options={"base_url": server.url, **FAST}, progress=False,
        )  # fmt: skip
        stats = server.stats()
    assert stats["max_in_flight"] >= IN_FLIGHT
    assert stats["max_connections"] <= IN_FLIGHT + 1  # one per request in flight (+ this stats call)
    assert len(records) == IN_FLIGHT and not any(r.is_infra_error for r in records)
    assert len((tmp_path / "run.jsonl").read_text().splitlines()) == IN_FLIGHT


def test_max_connections_bounds_open_connections_and_they_are_kept_alive() -> None:
    with serve_in_thread(["answer[x]"], latency_s=0.05) as server:
        backend = OpenAIHTTPBackend(f"http://127.0.0.1:{server.port}/v1", max_connections=4, **FAST)
        threads = [
            threading.Thread(target=lambda: [backend.chat(MESSAGES, SAMPLING) for _ in range(5)])
            for _ in range(12)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert server.requests == 60
        assert server.max_connections <= 4 and server.max_in_flight <= 4
        assert server.accepted <= 4  # 60 requests over at most 4 kept-alive connections


def test_each_episode_stays_on_one_endpoint_and_the_load_is_spread(tmp_path) -> None:
    with (
        serve_in_thread(TWO_SEARCHES, latency_s=0.02) as first,
        serve_in_thread(TWO_SEARCHES, latency_s=0.02) as second,
    ):
        urls = f"http://127.0.0.1:{first.port}/v1,http://127.0.0.1:{second.port}/v1"
        records = evaluate(
            ENV_ID, "react", n=1, budgets=(3,), tasks=32, concurrency=8,
            agent_options={"base_url": urls, **FAST}, progress=False,
        )  # fmt: skip
    assert len(records) == 32 and all(r.termination == TERMINATION_ANSWERED for r in records)
    assert first.requests + second.requests == 32 * 3
    # every follow-up request carried a conversation that the same server had answered before
    assert first.parents_missing == 0 and second.parents_missing == 0
    assert min(first.requests, second.requests) >= 32 * 3 // 4


def test_an_endpoint_killed_mid_run_loses_no_episode_and_counts_no_failure(tmp_path) -> None:
    with serve_in_thread(SEARCH_THEN_ANSWER) as reference:
        expected = evaluate(
            ENV_ID, "react", n=2, budgets=(2,), tasks=24,
            agent_options={"base_url": f"http://127.0.0.1:{reference.port}/v1", **FAST}, progress=False,
        )  # fmt: skip
    with (
        ServerProcess(SEARCH_THEN_ANSWER, latency_s=0.05) as alive,
        ServerProcess(SEARCH_THEN_ANSWER, latency_s=0.05) as doomed,
    ):
        env = gym.make(ENV_ID)
        agent = make_agent("react", env, base_url=f"{alive.url},{doomed.url}", **FAST)
        killed, finished = threading.Event(), threading.Event()

        def kill_when_busy() -> None:
            while not finished.is_set():
                if doomed.stats()["requests"] >= 10:
                    doomed.kill()  # SIGKILL with requests in flight
                    killed.set()
                    return
                finished.wait(POLL_S)

        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        out = tmp_path / "run.jsonl"
        records = evaluate(ENV_ID, agent, n=2, budgets=(2,), tasks=24, concurrency=8, out=out, progress=False)
        finished.set()
        killer.join()
        served_by_alive = alive.stats()["requests"]
    assert killed.is_set()
    assert outcome(records) == outcome(expected)  # nothing lost, nothing changed
    assert not any(r.is_infra_error for r in records)
    assert sorted(outcome(read_records(out))) == sorted(outcome(expected))  # one line per cell, on disk
    backend: Any = agent.backend
    assert backend.totals()["failovers"] >= 1
    assert [state["up"] for state in backend.endpoint_states()] == [True, False]
    assert served_by_alive > 48  # it took over the dead server's share


def test_a_restarted_endpoint_is_probed_back_into_the_rotation() -> None:
    with ServerProcess(["answer[x]"]) as alive:
        doomed = ServerProcess(["answer[x]"])
        port = doomed.port
        backend = OpenAIHTTPBackend(f"{alive.url},{doomed.url}", probe_after_s=0.0, **FAST)
        doomed.kill()
        for _ in range(4):  # each new session probes the dead endpoint once, then fails over
            assert backend.session().chat(MESSAGES, SAMPLING).text == "answer[x]"
        assert [state["up"] for state in backend.endpoint_states()] == [True, False]
        with ServerProcess(["answer[x]"], port=port) as restarted:
            for _ in range(4):
                assert backend.session().chat(MESSAGES, SAMPLING).text == "answer[x]"
            assert restarted.stats()["requests"] >= 1
        assert [state["up"] for state in backend.endpoint_states()] == [True, True]


def test_several_endpoints_from_options_and_python_and_settings_list_them() -> None:
    urls = ("http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1")
    from_option = make_backend({"base_url": ",".join(urls), "model": "m"})
    from_python = OpenAIHTTPBackend(list(urls), model="m")
    assert isinstance(from_option, OpenAIHTTPBackend)
    assert from_option.base_urls == from_python.base_urls == urls
    assert from_option.settings()["base_url"] == list(urls)
    assert OpenAIHTTPBackend(urls[0], model="m").settings()["base_url"] == urls[0]  # one: a string, as before
    with pytest.raises(ConfigError, match="twice"):
        OpenAIHTTPBackend([urls[0], urls[0] + "/"], model="m")
    with pytest.raises(ConfigError, match="whitespace or control"):
        OpenAIHTTPBackend("http://127.0.0.1:1/v1 HTTP/1.1\r\nX-Injected: 1", model="m")
    with pytest.raises(ConfigError, match="max_connections"):
        make_backend({"base_url": urls[0], "model": "m", "concurrency": "8"})


@pytest.mark.parametrize("top", [0, 2])
def test_logprobs_are_stored_per_call_and_round_trip_through_the_records_file(tmp_path, top: int) -> None:
    options = {"logprobs": "true", **({"top_logprobs": str(top)} if top else {}), **FAST}
    with serve_in_thread(SEARCH_THEN_ANSWER) as server:
        out = tmp_path / "run.jsonl"
        records = evaluate(
            ENV_ID, "react", n=1, budgets=(2,), tasks=3, out=out,
            agent_options={"base_url": f"http://127.0.0.1:{server.port}/v1", **options}, progress=False,
        )  # fmt: skip
    assert read_records(out) == records
    for record in read_records(out):
        assert record.extra[LOGPROBS_KEY]["version"] == LOGPROBS_VERSION
        calls = logprobs_record(record.extra)
        assert ["".join(call["tokens"]) for call in calls] == list(SEARCH_THEN_ANSWER)
        for call, reply in zip(calls, SEARCH_THEN_ANSWER):
            assert call["logprobs"] == [-0.125 * (1 + i % 5) for i in range(len(call["tokens"]))]
            assert len(call["tokens"]) == -(-len(reply) // 4)
            if top:
                assert [[text for text, _ in alternatives] for alternatives in call["top"]] == [
                    [f"{token}~{r}" for r in range(top)] for token in call["tokens"]
                ]
            else:
                assert "top" not in call


def test_without_the_option_no_logprobs_are_asked_for_or_stored() -> None:
    with serve_in_thread(SEARCH_THEN_ANSWER) as server:
        records = evaluate(
            ENV_ID, "react", n=1, budgets=(2,), tasks=1,
            agent_options={"base_url": f"http://127.0.0.1:{server.port}/v1", **FAST}, progress=False,
        )  # fmt: skip
    assert LOGPROBS_KEY not in records[0].extra and logprobs_record(records[0].extra) == []


def test_a_logprobs_layout_newer_than_this_reader_is_refused() -> None:
    with pytest.raises(ConfigError, match="upgrade"):
        logprobs_record({LOGPROBS_KEY: {"version": LOGPROBS_VERSION + 1, "calls": []}})


def test_the_cli_takes_several_endpoints_and_logprobs_in_agent_options(tmp_path) -> None:
    """A real `gather-envs eval` process: ``base_url=URL1,URL2`` and ``logprobs=true``."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "cli.jsonl"
    with serve_in_thread(SEARCH_THEN_ANSWER) as first, serve_in_thread(SEARCH_THEN_ANSWER) as second:
        urls = f"http://127.0.0.1:{first.port}/v1,http://127.0.0.1:{second.port}/v1"
        command = [
            sys.executable, "-m", "gather_envs.cli", "eval", ENV_ID, "--agent", "react",
            "--agent-option", f"base_url={urls}", "--agent-option", "model=loopback",
            "--agent-option", "logprobs=true", "--n", "2", "--budgets", "2", "--tasks", "4",
            "--concurrency", "4", "--out", str(out), "--quiet",
        ]  # fmt: skip
        finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert finished.returncode == 0, finished.stderr
        assert first.requests > 0 and second.requests > 0
    records = read_records(out)
    assert len(records) == 8 and not any(r.is_infra_error for r in records)
    assert all(len(logprobs_record(r.extra)) == 2 for r in records)
    assert records[0].extra["agent_settings"]["backend"]["base_url"] == urls.split(",")


# -- records of many episodes: one fsync per batch -------------------------------------------------


class _SlowWriter:
    """A RecordWriter stand-in whose first write waits for ``release``; it logs each batch."""

    path = None

    def __init__(self, failure: Exception | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.failure = failure

    def write_many(self, records: list[Any]) -> None:
        self.entered.set()
        self.release.wait()
        if self.failure is not None:
            raise self.failure
        self.batches.append(list(records))


def _commit_from_threads(writer: _SlowWriter, count: int) -> list[BaseException | None]:
    from gather_envs.evaluation.player import GroupCommit

    commit = GroupCommit(writer)  # type: ignore[arg-type]
    outcomes: list[BaseException | None] = [None] * count

    def write(index: int) -> None:
        try:
            commit.write(index)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcomes[index] = exc

    first = threading.Thread(target=write, args=(0,))
    first.start()
    writer.entered.wait()  # record 0 is being written: the others queue behind it
    others = [threading.Thread(target=write, args=(i,)) for i in range(1, count)]
    for thread in others:
        thread.start()
    while commit._queued < count:  # every record handed in before the first write ends
        time.sleep(POLL_S)
    writer.release.set()
    for thread in [first, *others]:
        thread.join()
    return outcomes


def test_records_that_finish_during_a_write_go_to_disk_together_in_the_next() -> None:
    writer = _SlowWriter()
    outcomes = _commit_from_threads(writer, 10)
    assert outcomes == [None] * 10
    assert [len(batch) for batch in writer.batches] == [1, 9]
    assert sorted(record for batch in writer.batches for record in batch) == list(range(10))


def test_a_failed_write_fails_every_thread_whose_record_it_held_or_was_waiting() -> None:
    writer = _SlowWriter(OSError("disk full"))
    outcomes = _commit_from_threads(writer, 5)
    assert all(isinstance(outcome, OSError) for outcome in outcomes)
    assert writer.batches == []


def test_running_out_of_file_descriptors_is_not_the_endpoints_fault(monkeypatch) -> None:
    import errno
    import socket

    from gather_envs.agents.backends.http import transport

    real = socket.create_connection
    calls = []

    def exhausted_once(*args: Any, **kwargs: Any) -> socket.socket:
        calls.append(args)
        if len(calls) == 1:
            raise OSError(errno.EMFILE, "Too many open files")
        return real(*args, **kwargs)

    with serve_in_thread(["answer[x]"]) as first, serve_in_thread(["answer[x]"]) as second:
        backend = OpenAIHTTPBackend(
            [f"http://127.0.0.1:{first.port}/v1", f"http://127.0.0.1:{second.port}/v1"], max_retries=1, **FAST
        )
        monkeypatch.setattr(transport.socket, "create_connection", exhausted_once)
        assert backend.session().chat(MESSAGES, SAMPLING).text == "answer[x]"
    assert [state["up"] for state in backend.endpoint_states()] == [True, True]
    assert backend.totals()["failovers"] == 0 and backend.totals()["retries"] == 1
