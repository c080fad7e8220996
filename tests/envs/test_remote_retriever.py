"""``retriever=URL``: the env searched by a retrieval server (ours, in a real subprocess) plays the same episodes.

Failures of the retriever (refused, 5xx, a slow answer, malformed JSON) are infrastructure errors of
the episode, each one line; the retriever's identity is in every record, and reports, comparisons
and resumes never mix runs over different retrievers.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from _support.retriever_stub import serve_stub

import gather_envs
from gather_envs.errors import ConfigError, EnvStateError, RecordsError, RetrieverError
from gather_envs.evaluation import evaluate
from gather_envs.metrics import compare_runs, results_from_records
from gather_envs.records import EpisodeRecord
from gather_envs.retrieval import remote
from gather_envs.runs import check_unique_cells

PACKAGE_ROOT = Path(gather_envs.__file__).resolve().parent.parent
READY = re.compile(r"^serving (http://\S+)")
ENV_IDS = ("Gather-SingleHop-v0", "Gather-MultiHop-v0", "Gather-Compare-v0")
AGENTS = ("oracle", "heuristic")
TASKS = 3
BUDGET = 4
DIFFERS_BY_DESIGN = ("env_kwargs", "wall_time", "retriever")
"""Record fields a remote run may differ in: its kwargs name the URL, the clock, the identity."""


def serve(*args: str) -> tuple[subprocess.Popen[str], str]:
    """A ``gather-envs serve-retrieval`` child on a free port and its ``/retrieve`` URL."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    command = [sys.executable, "-m", "gather_envs.cli", "serve-retrieval", "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = READY.match(line)
    if match is None:
        process.kill()
        raise AssertionError(f"no ready line: {line!r}; stderr: {process.communicate()[1]}")
    return process, match.group(1)


def stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.communicate(timeout=30)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process, url = serve()
    yield process, url
    stop(process)


def play(env_id: str, agent: str, **env_kwargs: Any) -> list[EpisodeRecord]:
    return evaluate(
        env_id,
        agent,
        n=1,
        budgets=[BUDGET],
        tasks=TASKS,
        progress=False,
        record_trajectory=True,
        retries=0,
        env_kwargs=env_kwargs,
    )


@pytest.fixture(scope="module")
def runs(server) -> dict[tuple[str, str], tuple[list[EpisodeRecord], list[EpisodeRecord]]]:
    """Each (env id, agent): its records in process and on the remote retriever."""
    url = server[1]
    return {
        (env_id, agent): (play(env_id, agent), play(env_id, agent, retriever=url))
        for env_id in ENV_IDS
        for agent in AGENTS
    }


def without(record: EpisodeRecord, fields: tuple[str, ...]) -> dict[str, Any]:
    return {key: value for key, value in record.to_json().items() if key not in fields}


# --------------------------------------------------------------------------------------------
# The same episodes


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_remote_retriever_plays_the_same_episodes_as_in_process(runs, env_id: str, agent: str) -> None:
    local, remote_records = runs[(env_id, agent)]
    assert len(local) == len(remote_records) == TASKS
    searched = 0
    for here, there in zip(local, remote_records):
        assert not there.is_infra_error, there.infra_error
        # Same observations (the trajectory holds each one), searches, retrieved ids and outcome.
        assert without(here, DIFFERS_BY_DESIGN) == without(there, DIFFERS_BY_DESIGN)
        searched += len(there.retrieved_doc_ids or ())
    assert searched > 0  # the episodes did search


def test_identity_of_the_retriever_is_in_every_record(server, runs) -> None:
    process, url = server
    import urllib.request

    with urllib.request.urlopen(url.rsplit("/", 1)[0] + "/health", timeout=10) as answer:
        served = json.loads(answer.read())["index"]["hash"]  # the served index's own hash
    for local, remote_records in runs.values():
        assert {r.retriever for r in local} == {None}
        assert {r.retriever for r in remote_records} == {f"http:{served}@test"}
        assert {r.env_kwargs["retriever"] for r in remote_records} == {url}
    env = gym.make(ENV_IDS[0], retriever=url)
    _, info = env.reset(seed=0)
    assert info["retriever"] == f"http:{served}@test"
    assert info["corpus_hash"] == env.unwrapped.corpus.content_hash  # type: ignore[attr-defined]


def test_remote_records_round_trip_their_retriever(runs) -> None:
    record = runs[(ENV_IDS[0], "oracle")][1][0]
    assert EpisodeRecord.from_json(json.loads(record.to_line())) == record
    old = {**record.to_json(), "schema_version": 3}
    del old["retriever"]
    assert EpisodeRecord.from_json(old).retriever is None  # a schema 3 record searched in process


def test_the_env_pickles_and_searches_again_without_its_connection(server) -> None:
    import pickle

    env = gym.make(ENV_IDS[1], retriever=server[1]).unwrapped
    first = env.reset(seed=3)[0], env.step("search[river city born]")[0]
    copy = pickle.loads(pickle.dumps(env))
    assert (copy.reset(seed=3)[0], copy.step("search[river city born]")[0]) == first


# --------------------------------------------------------------------------------------------
# Never mixed


def test_compare_refuses_runs_over_different_retrievers(runs) -> None:
    local, remote_records = runs[(ENV_IDS[1], "oracle")]
    with pytest.raises(RecordsError, match=r"different retrievers \(A: \"the env's own BM25\", B: 'http:"):
        compare_runs(local, remote_records, bootstrap=0)
    assert compare_runs(remote_records, remote_records, bootstrap=0).retriever == remote_records[0].retriever


def test_report_refuses_a_file_that_mixes_retrievers_and_names_the_one_it_read(runs) -> None:
    local, remote_records = runs[(ENV_IDS[1], "heuristic")]
    with pytest.raises(RecordsError, match="records mix 2 retrievers"):
        results_from_records([*local, *remote_records], bootstrap=0)
    check_unique_cells([*local, *remote_records])  # the same cells, but of two runs: no clash
    results = results_from_records(remote_records, bootstrap=0)
    assert results.retriever == remote_records[0].retriever
    assert type(results).from_json(results.to_json()) == results
    assert "retriever" not in results_from_records(local, bootstrap=0).to_json()


def test_resume_refuses_a_records_file_of_another_retriever(server, tmp_path) -> None:
    out = tmp_path / "run.jsonl"
    common = {"n": 1, "budgets": [BUDGET], "tasks": 1, "progress": False, "out": out}
    evaluate(ENV_IDS[0], "oracle", **common)
    with pytest.raises(ConfigError, match="searched by the env's own BM25, not http:"):
        evaluate(ENV_IDS[0], "oracle", env_kwargs={"retriever": server[1]}, **common)


# --------------------------------------------------------------------------------------------
# Failures are infrastructure errors


def stub_url(mode: str) -> tuple[ThreadingHTTPServer, str]:
    server, url, _ = serve_stub(mode)
    return server, url


FAILURES = {
    "500": r"HTTP 503: index is reloading, try later$",
    "garbage": r"the answer is not JSON \(21 bytes\)$",
    "shape": r'hit 0 has no "contents" string$',
    "slow": r"no complete answer within 1 s$",
    "refuse": r"cannot connect \(ConnectionRefusedError: .*\) after \d connection attempts; is the server running\?$",
}


@pytest.mark.parametrize("mode", sorted(FAILURES))
def test_a_failing_retriever_is_an_infra_error_of_the_episode_in_one_line(monkeypatch, mode: str) -> None:
    monkeypatch.setattr(remote, "DEFAULT_TIMEOUT_S", 1.0)
    server, url = stub_url(mode)
    try:
        records = evaluate(
            ENV_IDS[1], "oracle", n=1, budgets=[BUDGET], tasks=1, progress=False, retries=0,
            env_kwargs={"retriever": url},
        )  # fmt: skip
    finally:
        server.shutdown() if mode != "refuse" else None
        server.server_close()
    (record,) = records
    assert record.is_infra_error and not record.success and record.termination == "infra_error"
    assert record.retriever == "http:unknown"  # /health names no index
    message = record.infra_error or ""
    assert "\n" not in message
    assert re.search(FAILURES[mode], message.removesuffix(" (after 1 attempts)")), message
    assert message.startswith(f"RetrieverError: retriever {url}: ")


def test_a_failed_search_voids_the_episode_and_reset_plays_again(monkeypatch) -> None:
    server, url = stub_url("500")
    try:
        env = gym.make(ENV_IDS[1], retriever=url)
        env.reset(seed=0)
        with pytest.raises(RetrieverError, match="HTTP 503"):
            env.step("search[river city born]")
        with pytest.raises(EnvStateError):
            env.step("answer[x]")
        _, info = env.reset(seed=0)
        assert info["tool_calls_used"] == 0 and info["retriever"] == "http:unknown"
    finally:
        server.shutdown()
        server.server_close()


def test_documents_without_an_id_are_shown_in_the_open_scope_and_refused_in_the_world_scope() -> None:
    server, url = stub_url("anonymous")
    try:
        env = gym.make(ENV_IDS[1], retriever=url, scope="open")
        env.reset(seed=0)
        observation, *_, info = env.step("search[far isle]")
        assert "[Far Isle] It is far away." in observation
        (doc_id,) = info["retrieved_doc_ids"]
        assert doc_id.startswith(remote.ANONYMOUS_ID_PREFIX)  # an id of its contents: maps onto no corpus
        world = gym.make(ENV_IDS[1], retriever=url)
        world.reset(seed=0)
        with pytest.raises(RetrieverError, match=f"returned document '{doc_id}', which split 'test'"):
            world.step("search[far isle]")
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_retriever_at_the_start_is_one_line(tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    env = gym.make(ENV_IDS[1], retriever=f"http://127.0.0.1:{port}/retrieve")
    with pytest.raises(RetrieverError, match=r"cannot connect .* after 3 connection attempts; is the server running\?$"):
        env.reset(seed=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retriever": "ftp://host/retrieve"}, "is not an http"),
        ({"retriever": 8000}, "takes a URL string"),
        ({"retriever": "http://127.0.0.1:8000/retrieve", "scope": "distractor"}, "not a task's own"),
        ({"scope": "open"}, "pass retriever=URL"),
    ],
)
def test_bad_retriever_settings_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        gym.make(ENV_IDS[1], **kwargs)


def test_answers_over_the_size_cap_are_refused_before_they_are_read(server, monkeypatch) -> None:
    import urllib.request

    with urllib.request.urlopen(server[1].rsplit("/", 1)[0] + "/health", timeout=10) as answer:
        cap = len(answer.read())  # /health fits, three documents do not
    monkeypatch.setattr(remote, "MAX_ANSWER_BYTES", cap)
    env = gym.make(ENV_IDS[1], retriever=server[1])
    env.reset(seed=0)
    with pytest.raises(RetrieverError, match=rf"the answer has \d+ bytes; the most read is {cap}$"):
        env.step("search[river city born]")
