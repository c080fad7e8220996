"""An OpenAI-compatible chat-completions client (vLLM, llama.cpp server, Ollama, hosted APIs).

This module joins the parts in :mod:`gather_envs.agents.backends.http` (transport, watchdog,
pool, retry, protocol: one role each) and holds the configuration. It comes from arguments, else
the environment: ``GATHER_BASE_URL`` / ``GATHER_MODEL`` / ``GATHER_API_KEY``, falling back to
``OPENAI_BASE_URL`` / ``OPENAI_MODEL`` / ``OPENAI_API_KEY``. Without a model name the first id of
``GET /models`` is used.

Endpoints: ``base_url`` may list several servers of one model (``"URL1,URL2"`` or a list). Each
keeps a pool of keep-alive HTTP/1.1 connections, at most ``max_connections`` (default 512) open,
so at most that many requests in flight to it; beyond, a call waits for a connection within its
request budget. An episode calls through a :meth:`~OpenAIHTTPBackend.session`: its first call
goes to the endpoint with the fewest requests outstanding and every later call to the same one
(so the server's prefix cache holds the conversation). An endpoint that cannot be reached, drops
the connection, passes the deadline or answers 5xx leaves the rotation; the attempt is retried at
once on another endpoint (the session moves there for good), or, when none is left, after the
usual backoff. After ``probe_after_s`` (default 30 s) the next new session probes it with its
real request: a success brings it back, a failure keeps it out for another ``probe_after_s``.

Reliability: each attempt has a total deadline of ``timeout_s`` (connect, send, headers and body
together: a server that trickles one byte a second is cut off at the deadline, by one watchdog
thread per process), and one :meth:`~OpenAIHTTPBackend.chat` call spends at most
``request_budget_s`` over all its attempts and backoff sleeps. Connection errors, timeouts, HTTP
429 and 5xx, and any answer that is not a completion (not HTTP, non-JSON, truncated, a string
where an object belongs...) are retried with exponential backoff and jitter drawn from a seeded
generator (``Retry-After`` is honoured, capped); a failure that survives the retries raises
:class:`~gather_envs.errors.BackendError`, which the runner records as an infrastructure error
(never a task failure). Other 4xx answers (bad request, unauthorized) and redirects are not retried.

With ``logprobs=True`` (and ``top_logprobs=k`` for alternatives) every request asks for the
completion's token log-probabilities and :class:`~gather_envs.agents.backends.base.ChatResult`
carries them; a server that returns none is a BackendError that says so.

Worst case with the defaults (60 s deadline, 3 retries, 120 s budget): a hung server costs 120 s
per ``chat`` call; a dead one (connection refused) or a persistent 500 at most 5.25 s (the backoff
sleeps 0.5 + 1 + 2 s, times up to 1.5 of jitter). The runner tries an episode 4 times (its
``retries=3``, backoff 1 + 2 + 4 s), so one episode against a hung server costs at most
4 x 120 + 7 = 487 s, and against a dead one at most 4 x 5.25 + 7 = 28 s (measured: 21 s). Before
these bounds it was about 40 minutes and 37 s. The runner's bounds multiply the backend's:
lower ``request_budget_s`` (``--agent-option request_budget_s=30``) or ``--retries`` to fail faster.

Constrained decoding (``constraint``): see :mod:`~gather_envs.agents.backends.http.protocol`.

The API key lives in a :class:`Secret`; it is sent only in the ``Authorization`` header and never
appears in ``repr``, :meth:`OpenAIHTTPBackend.settings`, error messages or records: whatever the
server sends back (error bodies, even completions) has the key and any ``Authorization`` value
scrubbed before it is quoted or returned.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from gather_envs.agents.backends.base import (
    SECRET_ENV_VARS,
    ChatResult,
    Message,
    Sampling,
    estimate_tokens,
    redact,
    split_urls,
)
from gather_envs.agents.backends.http.errors import BudgetSpent, Retryable
from gather_envs.agents.backends.http.pool import Endpoint, EndpointPool, Route
from gather_envs.agents.backends.http.protocol import (
    CONSTRAINTS,
    completion_request,
    parse_completion,
    parse_completion_with_logprobs,
    parse_models,
)
from gather_envs.agents.backends.http.retry import RetryPolicy, check_status, snippet
from gather_envs.agents.backends.http.transport import SocketTransport, Transport, public_url
from gather_envs.errors import ConfigError

ENV_BASE_URL = ("GATHER_BASE_URL", "OPENAI_BASE_URL")
ENV_MODEL = ("GATHER_MODEL", "OPENAI_MODEL")
ENV_API_KEY = SECRET_ENV_VARS

DEFAULT_TIMEOUT_S = 60.0
"""Total deadline of one attempt: connect, send, and the whole answer."""
DEFAULT_MAX_RETRIES = 3
DEFAULT_REQUEST_BUDGET_S = 120.0
"""Wall time one chat call may spend over all its attempts and backoff sleeps."""
DEFAULT_BACKOFF_S = 0.5
DEFAULT_MAX_BACKOFF_S = 30.0
DEFAULT_MAX_CONNECTIONS = 512
"""Open connections per endpoint, so requests in flight to it: above the 256 sequences vLLM
batches by default, so the server's scheduler, not this client, sets the pace."""
DEFAULT_PROBE_AFTER_S = 30.0
"""How long an endpoint that failed stays out of the rotation before one request probes it."""
DEFAULT_CONTEXT_TOKENS = 8192
DEFAULT_RETRY_SEED = 0
REQUEST_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "Accept-Encoding": "identity",
}

TransportFactory = Callable[[str, Mapping[str, str]], Transport]
"""Builds the transport of one endpoint from its URL and the headers of every request."""
T = TypeVar("T")


class Secret:
    """A string that never shows itself in ``repr``/``str`` (API keys)."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value or None

    def reveal(self) -> str | None:
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        return "Secret(****)" if self._value else "Secret(None)"

    __str__ = __repr__


def _from_env(names: Sequence[str]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


class _Session:
    """One episode's view of an :class:`OpenAIHTTPBackend`: every call goes to the same endpoint
    (so the server's prefix cache holds the conversation) until that endpoint leaves the rotation."""

    def __init__(self, backend: OpenAIHTTPBackend) -> None:
        self.backend = backend
        self.route = Route()
        self.supports_tools = backend.supports_tools
        self.context_tokens = backend.context_tokens

    def chat(self, messages: Sequence[Message], sampling: Sampling) -> ChatResult:
        return self.backend._complete(messages, sampling, self.route)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.backend.count_tokens(messages)

    def settings(self) -> dict[str, Any]:
        return self.backend.settings()


class OpenAIHTTPBackend:
    """Chat completions from one or more OpenAI-compatible servers, with retries and failover.

    ``transport`` builds each endpoint's HTTP client (the benchmark swaps in others to compare).
    """

    def __init__(
        self,
        base_url: str | Sequence[str] | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        request_budget_s: float = DEFAULT_REQUEST_BUDGET_S,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        probe_after_s: float = DEFAULT_PROBE_AFTER_S,
        constraint: str = "llama.cpp",
        retry_seed: int = DEFAULT_RETRY_SEED,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        supports_tools: bool = True,
        logprobs: bool = False,
        top_logprobs: int = 0,
        extra_body: Mapping[str, Any] | None = None,
        transport: TransportFactory = SocketTransport,
    ) -> None:
        urls = split_urls(base_url if base_url else _from_env(ENV_BASE_URL))
        if not urls:
            raise ConfigError(
                "no server URL: pass base_url (--agent-option base_url=http://host:port/v1, several "
                f"separated by commas) or set {ENV_BASE_URL[0]}"
            )
        for url in urls:
            if any(ch.isspace() or not ch.isprintable() for ch in url):
                raise ConfigError(
                    f"base_url {public_url(url)!r} holds whitespace or control characters; "
                    "separate several URLs with commas only"
                )
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise ConfigError(f"base_url must start with http:// or https://, got {public_url(url)!r}")
            if parts.username or parts.password:
                raise ConfigError(
                    "base_url must not hold credentials; pass the key as api_key or in GATHER_API_KEY"
                )
        urls = tuple(url.rstrip("/") for url in urls)
        if len(set(urls)) != len(urls):
            raise ConfigError(f"base_url lists an endpoint twice: {[public_url(u) for u in urls]}")
        if constraint not in CONSTRAINTS:
            raise ConfigError(f"unknown constraint {constraint!r}; choose one of {CONSTRAINTS}")
        if (
            not timeout_s > 0
            or not request_budget_s > 0
            or max_retries < 0
            or max_connections < 1
            or not backoff_s >= 0
            or not probe_after_s >= 0
            or context_tokens < 1
            or top_logprobs < 0
        ):
            raise ConfigError(
                "timeout_s, request_budget_s, max_connections and context_tokens must be positive, "
                "max_retries, backoff_s, probe_after_s and top_logprobs non-negative (got "
                f"{timeout_s}, {request_budget_s}, {max_connections}, {context_tokens}, {max_retries}, "
                f"{backoff_s}, {probe_after_s}, {top_logprobs})"
            )
        self.base_urls = urls
        self.base_url = ",".join(self.base_urls)
        self._api_key = Secret(api_key or _from_env(ENV_API_KEY))
        key = self._api_key.reveal()
        if key and (not key.isprintable() or any(ch.isspace() for ch in key)):
            raise ConfigError(
                "the API key holds whitespace or control characters (a stray newline?); "
                "it cannot be sent in an HTTP header"
            )
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.request_budget_s = float(request_budget_s)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_connections = int(max_connections)
        self.probe_after_s = float(probe_after_s)
        self.constraint = constraint
        self.retry_seed = int(retry_seed)
        self.context_tokens = int(context_tokens)
        self.supports_tools = bool(supports_tools)
        self.logprobs = bool(logprobs or top_logprobs)
        self.top_logprobs = int(top_logprobs)
        self.extra_body = dict(extra_body or {})
        headers = dict(REQUEST_HEADERS, **({"Authorization": f"Bearer {key}"} if key else {}))
        self._pool = EndpointPool(
            self.base_urls, lambda url: transport(url, headers), self.max_connections, self.probe_after_s
        )
        self.retry_policy = RetryPolicy(
            self.timeout_s, self.max_retries, self.request_budget_s, self.backoff_s, self.max_backoff_s,
            self.retry_seed,
        )  # fmt: skip
        self._lock = threading.Lock()
        self._tokens = {"prompt_tokens": 0, "completion_tokens": 0}
        self.model = model or _from_env(ENV_MODEL) or self._first_model()

    def __repr__(self) -> str:
        return f"OpenAIHTTPBackend(base_url={self._pool.describe()!r}, model={self.model!r}, api_key={self._api_key!r})"

    def settings(self) -> dict[str, Any]:
        urls = [endpoint.public_url for endpoint in self._pool.endpoints]
        return {
            "backend": "openai-http",
            "base_url": urls[0] if len(urls) == 1 else urls,
            "model": self.model,
            "api_key_set": bool(self._api_key),
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "request_budget_s": self.request_budget_s,
            "backoff_s": self.backoff_s,
            "max_backoff_s": self.max_backoff_s,
            "max_connections": self.max_connections,
            "probe_after_s": self.probe_after_s,
            "constraint": self.constraint,
            "retry_seed": self.retry_seed,
            "context_tokens": self.context_tokens,
            "supports_tools": self.supports_tools,
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
            "extra_body": dict(self.extra_body),
        }

    def totals(self) -> dict[str, int]:
        """Requests, attempts, retries, failovers and tokens over the backend's life (all threads)."""
        with self._lock:
            tokens = dict(self._tokens)
        return {**self.retry_policy.counts(), "failovers": self._pool.failovers, **tokens}

    def endpoint_states(self) -> list[dict[str, Any]]:
        """Each endpoint's public URL, requests outstanding and whether it is in the rotation."""
        return self._pool.states()

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return estimate_tokens(messages)

    def session(self) -> _Session:
        """A view pinned to one endpoint, chosen at its first call (see :func:`episode_backend`)."""
        return _Session(self)

    # -- requests --------------------------------------------------------------------------------

    def chat(self, messages: Sequence[Message], sampling: Sampling) -> ChatResult:
        """One chat completion on the endpoint with the fewest requests outstanding; raises
        BackendError once retries are exhausted (a :meth:`session` keeps one endpoint instead)."""
        return self._complete(messages, sampling, Route())

    def _complete(self, messages: Sequence[Message], sampling: Sampling, route: Route) -> ChatResult:
        """:meth:`chat` on the route's endpoint."""
        payload = completion_request(
            self.model, messages, sampling, constraint=self.constraint, tools=self.supports_tools,
            top_logprobs=self.top_logprobs if self.logprobs else None, extra_body=self.extra_body,
        )  # fmt: skip
        parse = parse_completion_with_logprobs if self.logprobs else parse_completion
        result = self._request("POST", "/chat/completions", payload, parse, route)
        with self._lock:
            self._tokens["prompt_tokens"] += result.usage.get("prompt_tokens", 0)
            self._tokens["completion_tokens"] += result.usage.get("completion_tokens", 0)
        return result

    def _first_model(self) -> str:
        """The first model id the server lists (llama.cpp and vLLM serve one model)."""
        return self._request("GET", "/models", None, parse_models, Route())[0]

    def _request(
        self, method: str, path: str, payload: Any, parse: Callable[[Any, str | None], T], route: Route
    ) -> T:
        """Send with retries; ``parse`` turns the JSON body into the result or raises Retryable."""
        body = None if payload is None else json.dumps(payload).encode("utf-8")

        def attempt(endpoint: Endpoint, budget_end: float) -> T:
            return self._attempt(endpoint, method, path, body, budget_end, parse)

        return self.retry_policy.run(self._pool, route, attempt, f"{method} {path}", self._scrub)

    def _attempt(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None,
        budget_end: float,
        parse: Callable[[Any, str | None], T],
    ) -> T:
        """One attempt on ``endpoint`` within the request budget: a connection slot, the exchange, the parse."""
        left = budget_end - time.monotonic()
        if left <= 0 or not endpoint.slots.acquire(timeout=left):
            raise BudgetSpent
        try:
            left = budget_end - time.monotonic()
            if left <= 0:
                raise BudgetSpent
            answer = endpoint.transport.exchange(method, path, body, min(self.timeout_s, left))
        finally:
            endpoint.slots.release()
        check_status(answer.status, answer.headers, answer.body, self._scrub)
        try:
            document = json.loads(answer.body)
        except (ValueError, RecursionError):
            raise Retryable(
                f"malformed JSON in the response: {snippet(answer.body, self._scrub)!r}"
            ) from None
        return parse(document, self._api_key.reveal())

    def _scrub(self, text: str) -> str:
        """``text`` without the API key or any credential a server echoed back."""
        return redact(text, [self._api_key.reveal()])
