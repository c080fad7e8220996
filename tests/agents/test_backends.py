"""The OpenAI-compatible HTTP backend against real local HTTP servers that misbehave on purpose."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import gymnasium as gym
import pytest

import gather_envs.agents.llm  # noqa: F401  (registers the LLM agents)
from gather_envs.agents import make_agent
from gather_envs.agents.backends import Sampling, make_backend
from gather_envs.agents.backends.openai_http import OpenAIHTTPBackend
from gather_envs.envs.actions import ANSWER, SEARCH, parse_action
from gather_envs.errors import BackendError, ConfigError
from gather_envs.evaluation import evaluate

SECRET = "sk-test-9f8e7d6c5b4a-never-print-me"
FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05, "model": "test-model"}
MESSAGES = [{"role": "user", "content": "Question: who?"}]
SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_tokens=16, seed=7)


def completion(text: str = "answer[x]", tool_calls: list | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    }


class ScriptedServer(ThreadingHTTPServer):
    """A real HTTP server that answers request i with ``script[i]`` (the last entry repeats).

    Entries: ``("ok", body)``, ``("status", code, headers)``, ``("hang", seconds)``,
    ``("raw", bytes)``; every request is recorded with its path, headers and JSON body.
    """

    daemon_threads = True

    def __init__(self, script: list[tuple]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.linger_s = 0.0
        self.bytes_sent = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def next_step(self) -> tuple:
        with self.lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        server = self.server
        with server.lock:
            server.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": json.loads(raw) if raw else None}
            )
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        self._counted = True
        try:
            step = server.next_step()
            kind = step[0]
            if kind in HOSTILE_KINDS:
                HOSTILE_KINDS[kind](self, *step[1:])
            elif kind == "hang":
                time.sleep(step[1])
                self._send(200, json.dumps(completion("answer[late]")).encode())
            elif kind == "status":
                self._send(step[1], b'{"error": "scripted failure"}', step[2] if len(step) > 2 else {})
            elif kind == "raw":
                self._send(200, step[1])
            else:
                if len(step) > 2:
                    time.sleep(step[2])
                self._send(200, json.dumps(step[1]).encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer
        finally:
            self._answered()
        if server.linger_s:
            time.sleep(server.linger_s)  # a handler thread descheduled after answering

    def _answered(self) -> None:
        """The request stops counting as in flight once the answer starts to go out.

        Counting until the handler returns would be wrong: the client may already hold the whole
        answer, release its slot and send the next request while this thread has not yet run on.
        """
        if self._counted:
            self._counted = False
            with self.server.lock:
                self.server.in_flight -= 1

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._answered()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start ScriptedServers on free ports; shut them all down after the test."""
    servers: list[ScriptedServer] = []

    def start(*script: tuple) -> ScriptedServer:
        server = ScriptedServer(list(script))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_is_retried_then_raises_backend_error() -> None:
    backend = OpenAIHTTPBackend(f"http://127.0.0.1:{closed_port()}/v1", max_retries=2, **FAST)
    with pytest.raises(BackendError, match=r"failed after 3 attempt\(s\)") as error:
        backend.chat(MESSAGES, SAMPLING)
    assert str(error.value).count("connection failed") == 3  # every attempt is accounted for
    assert backend.totals()["attempts"] == 3 and backend.totals()["retries"] == 2


def test_by_default_an_attempt_has_60_s_and_a_call_4_attempts() -> None:
    """The defaults from agent options: a 60 s deadline per attempt, 3 retries, a 120 s budget."""
    backend = make_backend({"base_url": f"http://127.0.0.1:{closed_port()}/v1", **FAST})
    settings = backend.settings()
    assert (settings["timeout_s"], settings["max_retries"], settings["request_budget_s"]) == (60.0, 3, 120.0)
    with pytest.raises(BackendError, match=r"failed after 4 attempt\(s\) \(timeout_s=60, request_budget_s=120\)"):
        backend.chat(MESSAGES, SAMPLING)


@pytest.mark.parametrize("failure", [("status", 500), ("status", 503), ("status", 429, {"Retry-After": "0"})])
def test_a_server_error_or_rate_limit_is_retried_until_success(serve, failure: tuple) -> None:
    server = serve(failure, ("ok", completion("answer[Paris]")))
    backend = OpenAIHTTPBackend(server.url, max_retries=3, **FAST)
    result = backend.chat(MESSAGES, SAMPLING)
    assert result.text == "answer[Paris]"
    assert len(server.requests) == 2
    assert result.usage == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    totals = backend.totals()
    assert totals["requests"] == 1 and totals["retries"] == 1 and totals["prompt_tokens"] == 11


def test_retry_after_is_honoured_within_the_cap(serve) -> None:
    server = serve(("status", 429, {"Retry-After": "0.3"}), ("ok", completion()))
    backend = OpenAIHTTPBackend(server.url, max_retries=1, backoff_s=0.0, max_backoff_s=1.0, model="m")
    started = time.perf_counter()
    backend.chat(MESSAGES, SAMPLING)
    assert time.perf_counter() - started >= 0.3


def test_persistent_server_errors_end_in_backend_error_after_every_retry(serve) -> None:
    server = serve(("status", 502))
    backend = OpenAIHTTPBackend(server.url, max_retries=2, **FAST)
    with pytest.raises(BackendError, match="HTTP 502"):
        backend.chat(MESSAGES, SAMPLING)
    assert len(server.requests) == 3


def test_a_hanging_server_times_out_and_is_retried(serve) -> None:
    server = serve(("hang", 1.5), ("ok", completion("answer[on time]")))
    backend = OpenAIHTTPBackend(server.url, timeout_s=0.3, max_retries=1, **FAST)
    assert backend.chat(MESSAGES, SAMPLING).text == "answer[on time]"
    assert len(server.requests) == 2


def test_a_server_that_always_hangs_ends_in_backend_error(serve) -> None:
    server = serve(("hang", 1.5))
    backend = OpenAIHTTPBackend(server.url, timeout_s=0.2, max_retries=1, **FAST)
    started = time.perf_counter()
    with pytest.raises(BackendError, match="timed out after 0.2 s"):
        backend.chat(MESSAGES, SAMPLING)
    assert time.perf_counter() - started < 1.4  # gave up on timeouts, did not wait for the server
    assert len(server.requests) == 2


@pytest.mark.parametrize("bad", [b"{not json", b'{"choices": []}', b'{"error": "oops"}'])
def test_malformed_json_is_retried_then_raises_backend_error(serve, bad: bytes) -> None:
    server = serve(("raw", bad))
    backend = OpenAIHTTPBackend(server.url, max_retries=2, **FAST)
    with pytest.raises(BackendError, match="malformed") as error:
        backend.chat(MESSAGES, SAMPLING)
    assert len(server.requests) == 3
    assert "attempt 1" in str(error.value) and "attempt 3" in str(error.value)


def test_malformed_json_then_a_good_answer_succeeds(serve) -> None:
    server = serve(("raw", b"<html>proxy error</html>"), ("ok", completion("answer[ok]")))
    backend = OpenAIHTTPBackend(server.url, max_retries=2, **FAST)
    assert backend.chat(MESSAGES, SAMPLING).text == "answer[ok]"


def test_a_client_error_is_not_retried(serve) -> None:
    server = serve(("status", 400))
    backend = OpenAIHTTPBackend(server.url, max_retries=3, **FAST)
    with pytest.raises(BackendError, match="HTTP 400"):
        backend.chat(MESSAGES, SAMPLING)
    assert len(server.requests) == 1


def test_backoff_jitter_is_seeded_and_bounded() -> None:
    def delays(seed: int) -> list[float]:
        backend = OpenAIHTTPBackend("http://127.0.0.1:1/v1", model="m", retry_seed=seed, backoff_s=1.0)
        return [backend.retry_policy.delay(attempt, None) for attempt in range(4)]

    assert delays(5) == delays(5)
    assert delays(5) != delays(6)
    for attempt, delay in enumerate(delays(5)):
        assert 0.5 * 2**attempt <= delay <= 1.5 * 2**attempt


@pytest.mark.parametrize("linger_s", [0.0, 0.05])
def test_requests_in_flight_per_endpoint_are_bounded_by_max_connections(serve, linger_s: float) -> None:
    """With ``linger_s`` the handler threads run on after answering (the old flaky count saw 3-4)."""
    server = serve(("ok", completion(), 0.15))
    server.linger_s = linger_s
    backend = OpenAIHTTPBackend(server.url, max_connections=2, **FAST)
    threads = [threading.Thread(target=backend.chat, args=(MESSAGES, SAMPLING)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(server.requests) == 6
    assert server.max_in_flight == 2


def test_the_request_carries_sampling_settings_stop_and_the_grammar(serve) -> None:
    server = serve(("ok", completion()))
    backend = OpenAIHTTPBackend(server.url, **FAST)
    backend.chat(MESSAGES, replace(SAMPLING, stop=("\nObservation",), grammar='root ::= "x"', regex="x"))
    body = server.requests[0]["body"]
    assert body["model"] == "test-model" and body["messages"] == MESSAGES
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.0, 1.0, 16, 7)
    assert body["stop"] == ["\nObservation"] and body["grammar"] == 'root ::= "x"'
    assert server.requests[0]["path"] == "/v1/chat/completions"


@pytest.mark.parametrize(
    "constraint, expected",
    [
        ("vllm", {"structured_outputs": {"regex": "x"}}),
        ("vllm-legacy", {"guided_regex": "x"}),
        ("none", {}),
    ],
)
def test_constraint_modes_send_the_fields_each_server_understands(
    serve, constraint: str, expected: dict
) -> None:
    server = serve(("ok", completion()))
    backend = OpenAIHTTPBackend(server.url, constraint=constraint, **FAST)
    backend.chat(MESSAGES, replace(SAMPLING, grammar='root ::= "x"', regex="x"))
    body = server.requests[0]["body"]
    fields = {
        k: body[k] for k in ("grammar", "structured_outputs", "guided_regex", "guided_grammar") if k in body
    }
    assert fields == expected


def test_the_model_defaults_to_the_first_one_the_server_lists(serve) -> None:
    server = serve(("ok", {"object": "list", "data": [{"id": "served-model"}, {"id": "other"}]}))
    backend = OpenAIHTTPBackend(server.url, backoff_s=0.01)
    assert backend.model == "served-model"
    assert server.requests[0]["path"] == "/v1/models"


def test_configuration_comes_from_gather_then_openai_variables(serve, monkeypatch) -> None:
    server = serve(("ok", completion()))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("GATHER_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_MODEL", "openai-model")
    monkeypatch.setenv("GATHER_API_KEY", SECRET)
    backend = make_backend({})
    assert isinstance(backend, OpenAIHTTPBackend)
    assert backend.base_url == server.url and backend.model == "openai-model"
    backend.chat(MESSAGES, SAMPLING)
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_a_missing_url_is_a_config_error(monkeypatch) -> None:
    for name in ("GATHER_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="GATHER_BASE_URL"):
        OpenAIHTTPBackend(model="m")


def test_the_api_key_never_appears_in_repr_settings_errors_or_records(serve, tmp_path) -> None:
    server = serve(
        ("ok", completion("Thought: look it up.\nAction: search[Pythdry Gryga]")),
        ("ok", completion("Thought: done.\nAction: answer[1915]")),
    )
    with pytest.raises(ConfigError) as refused_url:
        OpenAIHTTPBackend(server.url.replace("http://", f"http://user:{SECRET}@"), **FAST)
    assert SECRET not in str(refused_url.value)
    backend = OpenAIHTTPBackend(server.url, api_key=SECRET, **FAST)
    assert SECRET not in repr(backend) and SECRET not in str(backend)
    assert SECRET not in json.dumps(backend.settings())
    assert backend.settings()["api_key_set"] is True
    env = gym.make("Gather-MultiHop-v0")
    agent = make_agent("react", env, backend="http", base_url=server.url, api_key=SECRET, model="m")
    out = tmp_path / "run.jsonl"
    records = evaluate(
        "Gather-MultiHop-v0",
        agent,
        n=1,
        budgets=(2,),
        tasks=1,
        out=out,
        progress=False,
        record_trajectory=True,
    )
    assert len(records) == 1 and not records[0].is_infra_error
    assert SECRET not in out.read_text()
    assert SECRET not in repr(agent) and SECRET not in json.dumps(agent.settings())
    refused = OpenAIHTTPBackend(f"http://127.0.0.1:{closed_port()}/v1", api_key=SECRET, max_retries=0, **FAST)
    with pytest.raises(BackendError) as error:
        refused.chat(MESSAGES, SAMPLING)
    assert SECRET not in str(error.value)


def test_an_exhausted_backend_becomes_an_infrastructure_error_record(tmp_path) -> None:
    """Retries exhausted at every level: the episode is recorded as an infra error, not a failure."""
    env = gym.make("Gather-MultiHop-v0")
    agent = make_agent(
        "react",
        env,
        base_url=f"http://127.0.0.1:{closed_port()}/v1",
        model="m",
        max_retries=1,
        backoff_s=0.01,
    )
    out = tmp_path / "run.jsonl"
    records = evaluate(
        "Gather-MultiHop-v0",
        agent,
        n=2,
        budgets=(2,),
        tasks=1,
        out=out,
        progress=False,
        retries=1,
        backoff=0.01,
    )
    assert len(records) == 2 and all(r.is_infra_error for r in records)
    assert all("connection failed" in (r.infra_error or "") for r in records)
    assert len(out.read_text().splitlines()) == 2  # one line per episode: nothing lost, nothing doubled


def test_native_tool_calls_become_json_dialect_actions(serve) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "search", "arguments": '{"query": "Gryga"}'},
    }
    answer = {
        "id": "call_2",
        "type": "function",
        "function": {"name": "answer", "arguments": '{"answer": "1915"}'},
    }
    server = serve(("ok", completion("", [call])), ("ok", completion("", [answer])))
    env = gym.make("Gather-MultiHop-v0", dialect="json")
    agent = make_agent("tools", env, base_url=server.url, model="m")
    assert agent.settings()["native_tools"] is True
    observation, info = env.reset(seed=0, options={"task_index": 1, "max_tool_calls": 2})
    policy = agent.start(0)
    action = policy.act(observation, info)
    assert parse_action(action).kind == SEARCH and parse_action(action).argument == "Gryga"
    observation, _, _, _, info = env.step(action)
    action = policy.act(observation, info)
    assert parse_action(action).kind == ANSWER and parse_action(action).argument == "1915"
    first, second = (r["body"] for r in server.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["search", "answer"]
    assert "grammar" not in first  # native tools, no grammar
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_1"
    assert "Results for search[Gryga]" in tool_message["content"]
    assert policy.usage()["llm_calls"] == 2 and policy.usage()["prompt_tokens"] == 22


def test_several_native_tool_calls_are_one_turn_with_a_tool_message_each(serve) -> None:
    def call(call_id: str, name: str, arguments: dict[str, str]) -> dict[str, Any]:
        return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}

    both = [call("c1", "search", {"query": "Gryga"}), call("c2", "search", {"query": "Teslin"})]
    server = serve(("ok", completion("", both)), ("ok", completion("", [call("c3", "answer", {"answer": "x"})])))
    env = gym.make("Gather-MultiHop-v0", dialect="json")
    agent = make_agent("tools", env, base_url=server.url, model="m")
    observation, info = env.reset(seed=0, options={"task_index": 1, "max_tool_calls": 3})
    policy = agent.start(0)
    action = policy.act(observation, info)
    observation, _, _, _, info = env.step(action)
    assert [s["query"] for s in info["searches"]] == ["Gryga", "Teslin"] and info["tool_calls_left"] == 1
    policy.act(observation, info)
    messages = server.requests[1]["body"]["messages"]
    assert [c["id"] for c in messages[-3]["tool_calls"]] == ["c1", "c2"]
    first, second = messages[-2:]
    assert (first["role"], first["tool_call_id"], second["role"], second["tool_call_id"]) == ("tool", "c1", "tool", "c2")
    assert "Results for search[Gryga]" in first["content"] and "Teslin" not in first["content"]
    assert "Results for search[Teslin]" in second["content"]


# -- hostile servers: shapes that are not completions, truncation, trickle, echoed credentials ------


def _truncated(handler: _Handler, body: bytes, claimed: int) -> None:
    """Promise ``claimed`` bytes, send ``body``, hang up."""
    handler._answered()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(claimed))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()
    handler.close_connection = True


def _trickle(handler: _Handler, body: bytes, interval_s: float) -> None:
    """Send the whole answer, status line and headers included, one byte every ``interval_s``."""
    handler._answered()
    head = f"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    for byte in head.encode() + body:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        with handler.server.lock:
            handler.server.bytes_sent += 1
        time.sleep(interval_s)


def _echo(handler: _Handler, code: int) -> None:
    """An error page that quotes the request's headers back, Authorization included."""
    body = json.dumps({"error": "bad gateway", "request_headers": dict(handler.headers)}).encode()
    handler._send(code, body)


def _echo_completion(handler: _Handler) -> None:
    """A completion whose text repeats the caller's credentials."""
    header = handler.headers.get("Authorization", "")
    handler._send(200, json.dumps(completion(f"answer[{header.removeprefix('Bearer ')}]")).encode())


def _wire(handler: _Handler, answer: bytes) -> None:
    """Write ``answer`` as the whole response, byte for byte, then hang up."""
    handler._answered()
    handler.wfile.write(answer)
    handler.wfile.flush()
    handler.close_connection = True


HOSTILE_KINDS = {
    "wire": _wire,
    "truncated": _truncated,
    "trickle": _trickle,
    "echo": _echo,
    "echo-completion": _echo_completion,
}

NOT_COMPLETIONS = [
    b'{"choices": [{"message": "hello"}]}',
    b'{"choices": [{"message": {"content": "x", "tool_calls": "search[x]"}}]}',
    b'{"choices": [{"message": {"content": "x", "tool_calls": ["search"]}}]}',
    b'{"choices": [{"message": {"tool_calls": [{"function": "search"}]}}]}',
    b'{"choices": [{"message": {"tool_calls": [{"function": {"name": 7}}]}}]}',
    b'{"choices": [{"message": {"content": 42}}]}',
    b'{"choices": [{"message": {"content": [1, 2]}}]}',
    b'{"choices": "all of them"}',
    b'{"choices": [null]}',
    b'{"choices": [["message"]]}',
    b"[1, 2, 3]",
    b'"a string"',
    b"null",
    b"[" * 100_000,
    b'{"choices": [{"message": {"content": "x"}}]' + b"}" * 0 + b",",
    b"\xff\xfe not utf-8",
]


@pytest.mark.parametrize("body", NOT_COMPLETIONS, ids=lambda body: repr(body[:30]))
def test_any_answer_that_is_not_a_completion_is_a_backend_error(serve, body: bytes) -> None:
    server = serve(("raw", body))
    backend = OpenAIHTTPBackend(server.url, max_retries=1, **FAST)
    with pytest.raises(BackendError, match="malformed"):
        backend.chat(MESSAGES, SAMPLING)
    assert len(server.requests) == 2  # retried once, like any garbage


def test_odd_but_usable_completions_are_accepted(serve) -> None:
    parts = completion()
    parts["choices"][0]["message"]["content"] = [{"type": "text", "text": "answer["}, {"text": "x]"}]
    parts["usage"] = {"prompt_tokens": "many", "completion_tokens": -3, "total_tokens": True}
    server = serve(
        ("ok", parts),
        ("raw", b'{"choices": [{"message": {"content": "a"}}], "usage": {"prompt_tokens": Infinity}}'),
    )
    backend = OpenAIHTTPBackend(server.url, **FAST)
    result = backend.chat(MESSAGES, SAMPLING)
    assert result.text == "answer[x]" and result.usage == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
    }
    assert backend.chat(MESSAGES, SAMPLING).usage["prompt_tokens"] == 0


def test_a_truncated_body_is_retried_then_a_backend_error(serve) -> None:
    body = json.dumps(completion()).encode()
    server = serve(("truncated", body[:20], len(body)))
    backend = OpenAIHTTPBackend(server.url, max_retries=2, **FAST)
    with pytest.raises(BackendError, match="cut short: 20 of") as error:
        backend.chat(MESSAGES, SAMPLING)
    assert len(server.requests) == 3 and "attempt 3" in str(error.value)


def test_a_trickling_server_is_cut_off_at_the_deadline(serve) -> None:
    """Per-read timeouts never fire on one byte every 50 ms; the total deadline does."""
    body = json.dumps(completion("answer[slow]")).encode()
    server = serve(("trickle", body, 0.05))
    backend = OpenAIHTTPBackend(server.url, timeout_s=0.5, max_retries=0, **FAST)
    with pytest.raises(BackendError, match=r"timed out after 0.5 s \(deadline"):
        backend.chat(MESSAGES, SAMPLING)
    total = len(body) + 80  # the body plus at least the status line and headers
    with server.lock:
        assert server.bytes_sent < total / 2  # the client hung up long before the answer was whole


def test_the_request_budget_bounds_a_call_over_all_its_retries(serve) -> None:
    server = serve(("hang", 1.0))
    backend = OpenAIHTTPBackend(server.url, timeout_s=0.3, max_retries=50, request_budget_s=0.7, **FAST)
    with pytest.raises(BackendError, match="request_budget_s=0.7") as error:
        backend.chat(MESSAGES, SAMPLING)
    assert 2 <= len(server.requests) <= 4  # not 51 attempts: the budget ran out first
    assert "timed out" in str(error.value)


def test_a_redirect_is_not_followed_and_says_what_to_do(serve) -> None:
    server = serve(("status", 307, {"Location": "http://127.0.0.1:1/v1/chat/completions"}))
    backend = OpenAIHTTPBackend(server.url, max_retries=3, **FAST)
    with pytest.raises(BackendError, match="redirected.*base_url"):
        backend.chat(MESSAGES, SAMPLING)
    assert len(server.requests) == 1


@pytest.mark.parametrize("code", [401, 500])
def test_an_error_page_echoing_the_authorization_header_leaks_nothing(serve, tmp_path, code: int) -> None:
    server = serve(("echo", code))
    backend = OpenAIHTTPBackend(server.url, api_key=SECRET, max_retries=1, **FAST)
    with pytest.raises(BackendError) as error:
        backend.chat(MESSAGES, SAMPLING)
    assert SECRET not in str(error.value) and "Bearer ****" in str(error.value)
    env = gym.make("Gather-MultiHop-v0")
    agent = make_agent("react", env, backend="http", base_url=server.url, api_key=SECRET, model="m",
                       max_retries=1, backoff_s=0.01)  # fmt: skip
    out = tmp_path / "echo.jsonl"
    records = evaluate(
        "Gather-MultiHop-v0",
        agent,
        n=2,
        budgets=(1,),
        tasks=1,
        out=out,
        progress=False,
        retries=1,
        backoff=0.01,
    )
    assert len(records) == 2 and all(r.is_infra_error for r in records)
    assert all("Authorization" in (r.infra_error or "") for r in records)  # the echo is kept, scrubbed
    assert SECRET not in out.read_text()


def test_a_completion_echoing_the_key_is_scrubbed_before_the_env_sees_it(serve, tmp_path) -> None:
    server = serve(("echo-completion",))
    env = gym.make("Gather-MultiHop-v0")
    agent = make_agent("react", env, backend="http", base_url=server.url, api_key=SECRET, model="m")
    out = tmp_path / "echo.jsonl"
    records = evaluate(
        "Gather-MultiHop-v0",
        agent,
        n=1,
        budgets=(0,),
        tasks=1,
        out=out,
        progress=False,
        record_trajectory=True,
    )
    assert len(records) == 1 and not records[0].is_infra_error
    assert SECRET not in out.read_text() and "answer[****]" in out.read_text()


def test_eval_against_a_server_that_always_fails_exits_3_with_no_secret_anywhere(serve, tmp_path) -> None:
    """A real subprocess: `gather-envs eval` on a server answering 500 + echoed headers to everything."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    server = serve(("echo", 500))
    out = tmp_path / "down.jsonl"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    env["GATHER_API_KEY"] = SECRET
    command = [
        sys.executable, "-m", "gather_envs.cli", "eval", "Gather-MultiHop-v0", "--agent", "react",
        "--agent-option", f"base_url={server.url}", "--agent-option", "model=m",
        "--agent-option", "max_retries=1", "--agent-option", "backoff_s=0.01",
        "--n", "2", "--budgets", "1", "--tasks", "2", "--retries", "0", "--backoff", "0", "--out", str(out),
    ]  # fmt: skip
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 3, finished.stderr
    assert "every one of the 4 episodes is an infrastructure error" in finished.stderr
    assert len(out.read_text().splitlines()) == 4
    assert SECRET not in finished.stdout + finished.stderr + out.read_text()
    assert all(server.requests[i]["headers"]["Authorization"] == f"Bearer {SECRET}" for i in range(2))


@pytest.mark.parametrize(
    "text",
    [
        '{"Authorization": "Bearer tok-123456789"}',
        "authorization: Basic dXNlcjpwYXNzd29yZA==",
        "--agent-option api_key=tok-123456789",
        "x-api-key: tok-123456789",
        "echoed bearer tok-123456789 back",
        "'Authorization': 'tok-123456789'",
    ],
)
def test_redact_hides_credentials_a_server_may_echo(text: str) -> None:
    from gather_envs.agents.backends.base import redact

    assert "tok-123456789" not in redact(text) and "dXNlcjpwYXNzd29yZA" not in redact(text)
    assert "****" in redact(text)


def test_redact_leaves_ordinary_words_and_keeps_short_values_out_of_the_secret_list() -> None:
    from gather_envs.agents.backends.base import known_secrets, redact

    assert (
        redact("the standard bearer of the Brathis Institute")
        == "the standard bearer of the Brathis Institute"
    )
    assert redact("a Bearer of news", credentials=True) == "a Bearer of news"
    assert "ab" not in known_secrets({"api_key": "ab"})  # too short to scrub safely
    assert "sk-long-enough" in known_secrets({"api_key": "sk-long-enough"})
    assert redact("key sk-1 and sk-1", ["sk-1"], credentials=False) == "key **** and ****"


def test_an_api_key_that_cannot_go_in_a_header_is_a_config_error_that_does_not_show_it() -> None:
    with pytest.raises(ConfigError, match="whitespace or control") as error:
        OpenAIHTTPBackend("http://127.0.0.1:1/v1", api_key=SECRET + "\n", **FAST)
    assert SECRET not in str(error.value)


def test_logprobs_asked_for_but_not_returned_is_a_backend_error_that_says_what_to_do(serve) -> None:
    server = serve(("ok", completion()))
    backend = OpenAIHTTPBackend(server.url, logprobs=True, top_logprobs=3, **FAST)
    with pytest.raises(BackendError, match="logprobs were asked for.*drop logprobs=true"):
        backend.chat(MESSAGES, SAMPLING)
    body = server.requests[0]["body"]
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    assert len(server.requests) == 1  # not retried: the server does not return them


@pytest.mark.parametrize(
    "logprobs",
    [{"content": "tokens"}, {"content": [{"token": 1, "logprob": -0.5}]}, {"content": [{"token": "a"}]}],
)
def test_malformed_logprobs_are_retried_then_a_backend_error(serve, logprobs: dict) -> None:
    body = completion()
    body["choices"][0]["logprobs"] = logprobs
    server = serve(("ok", body))
    backend = OpenAIHTTPBackend(server.url, logprobs=True, max_retries=1, **FAST)
    with pytest.raises(BackendError, match="malformed completion"):
        backend.chat(MESSAGES, SAMPLING)
    assert len(server.requests) == 2


def test_an_infinite_logprob_is_stored_as_none_and_the_key_is_scrubbed_from_tokens(serve) -> None:
    body = completion()
    body["choices"][0]["logprobs"] = {
        "content": [{"token": SECRET, "logprob": -1e999, "top_logprobs": [{"token": "b", "logprob": -2}]}]
    }
    server = serve(("raw", json.dumps(body).encode()))
    backend = OpenAIHTTPBackend(server.url, api_key=SECRET, logprobs=True, **FAST)
    (token,) = backend.chat(MESSAGES, SAMPLING).logprobs or ()
    assert token.token == "****" and token.logprob is None and token.top == (("b", -2.0),)


BODY = json.dumps(completion("answer[wired]")).encode()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(
            b"%x;ext=1\r\n%s\r\n" % (len(BODY[i : i + 7]), BODY[i : i + 7]) for i in range(0, len(BODY), 7)
        )
        + b"0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + BODY,  # no length: read to close
        b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY),  # kept alive, then closed
    ],
    ids=["chunked", "100-continue", "read-to-close", "closed-keep-alive"],
)
def test_every_http_framing_of_an_answer_is_read(serve, answer: bytes) -> None:
    """The last case promises keep-alive and hangs up: the next call finds the pooled connection
    closed and silently takes a fresh one (no failed attempt)."""
    server = serve(("wire", answer))
    backend = OpenAIHTTPBackend(server.url, max_retries=0, **FAST)
    for _ in range(2):
        assert backend.chat(MESSAGES, SAMPLING).text == "answer[wired]"
    assert len(server.requests) == 2 and backend.totals()["attempts"] == 2


@pytest.mark.parametrize(
    "answer, message",
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n{}", "not a number"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "in the middle of the headers"),
        (b"", "closed the connection before answering"),
    ],
)
def test_an_answer_that_is_not_http_is_retried_then_a_backend_error(
    serve, answer: bytes, message: str
) -> None:
    server = serve(("wire", answer))
    backend = OpenAIHTTPBackend(server.url, max_retries=1, **FAST)
    with pytest.raises(BackendError, match=message):
        backend.chat(MESSAGES, SAMPLING)
    assert len(server.requests) == 2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_endpoints_are_verified_and_served(serve, tmp_path, monkeypatch) -> None:
    """A real TLS server with a self-signed certificate for 127.0.0.1: trusted through
    SSL_CERT_FILE it serves the call; untrusted, the handshake fails and nothing is sent."""
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = serve(("ok", completion("answer[tls]")))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = server.url.replace("http://", "https://")
    with pytest.raises(BackendError, match="connection failed: SSLCertVerificationError"):
        OpenAIHTTPBackend(url, max_retries=0, **FAST).chat(MESSAGES, SAMPLING)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert OpenAIHTTPBackend(url, max_retries=0, **FAST).chat(MESSAGES, SAMPLING).text == "answer[tls]"
    assert len(server.requests) == 1
