"""An OpenAI-compatible chat-completions client (vLLM, llama.cpp server, Ollama, hosted APIs).

Standard library only (``socket``, ``ssl``, ``json``). Configuration comes from arguments, else the
environment: ``GATHER_BASE_URL`` / ``GATHER_MODEL`` / ``GATHER_API_KEY``, falling back to
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

Constrained decoding (``constraint``), so small models emit valid actions:

- ``"llama.cpp"`` (default): the GBNF grammar goes in the request's ``grammar`` field
  (llama.cpp's ``llama-server`` and ``python -m llama_cpp.server``);
- ``"vllm"``: ``{"structured_outputs": {"regex": ...}}`` (vLLM >= 0.10.2; the grammar is sent as
  ``{"grammar": ...}`` when no regex is given);
- ``"vllm-legacy"``: ``guided_regex`` / ``guided_grammar`` (vLLM before 0.12, where they were removed);
- ``"none"``: no constraint (OpenAI, Ollama's OpenAI endpoint and most hosted APIs).

The API key lives in a :class:`Secret`; it is sent only in the ``Authorization`` header and never
appears in ``repr``, :meth:`OpenAIHTTPBackend.settings`, error messages or records: whatever the
server sends back (error bodies, even completions) has the key and any ``Authorization`` value
scrubbed before it is quoted or returned.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import json
import math
import os
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from gather_envs.agents.backends.base import (
    SECRET_ENV_VARS,
    ChatResult,
    Message,
    TokenLogprob,
    ToolCall,
    estimate_tokens,
    redact,
    split_urls,
    usage_from,
)
from gather_envs.errors import BackendError, ConfigError

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
MIN_TIMEOUT_S = 0.001  # a socket timeout of 0 would make it non-blocking
WATCHDOG_COMPACT_AT = 1024  # cancelled alarms kept in the watchdog's heap before it is rebuilt
STALE_ERRORS = (BrokenPipeError, ConnectionResetError)
"""How a request on a keep-alive connection the server has since closed fails (or no answer at all)."""
LOCAL_LIMIT_ERRNOS = (errno.EMFILE, errno.ENFILE)
"""Out of file descriptors: a failure here, which must not take the endpoint out of the rotation."""
MAX_HEAD_BYTES = 64 * 1024  # status line and headers of an answer
HTTP_CONTINUE = 100
NO_BODY_STATUSES = (204, 304)
DEFAULT_PORTS = {"http": 80, "https": 443}
UP, DOWN, UNSENT = "up", "down", "unsent"
"""How an attempt ended for its endpoint: it answered, it failed, or nothing was sent."""
DEFAULT_CONTEXT_TOKENS = 8192
DEFAULT_RETRY_SEED = 0
JITTER = 0.5  # each delay is scaled by a uniform factor in [1 - JITTER, 1 + JITTER]
MAX_ERROR_BODY = 300  # characters of a server's error body quoted in messages
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a larger answer is not a chat completion
READ_CHUNK_BYTES = 64 * 1024

CONSTRAINTS = ("llama.cpp", "vllm", "vllm-legacy", "none")
HTTP_OK = 200
HTTP_REDIRECT = 300
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500


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


def _public_url(url: str) -> str:
    """``url`` without credentials or query string (safe to record or print)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class _Retryable(Exception):
    """A failed attempt worth retrying; ``retry_after`` is the server's hint in seconds.

    ``endpoint_down`` marks a failure of the endpoint itself (no connection, the connection
    dropped, the deadline passed): the endpoint leaves the rotation and the next attempt goes to
    another one without waiting.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, *, endpoint_down: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.endpoint_down = endpoint_down


class _BudgetSpent(Exception):
    """The request budget ran out before the attempt could be sent (waiting for a connection)."""


class _Stale(Exception):
    """A pooled keep-alive connection the server had closed: the request goes on a fresh one."""


class _Alarm:
    """One armed deadline of :class:`_Watchdog`: the connection to cut, and whether it was cut."""

    __slots__ = ("connection", "fired")

    def __init__(self, connection: _Connection) -> None:
        self.connection: _Connection | None = connection
        self.fired = False


class _Watchdog:
    """One thread per process that shuts the socket of every attempt past its total deadline.

    Socket timeouts bound each read only, so a server trickling one byte at a time would never
    time out; a ``threading.Timer`` per attempt did the job but started a thread per request.
    Cancelled alarms stay in the heap until they reach its top (or a compaction), so arming and
    disarming cost a heap push and a flag.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._pid = 0

    def arm(self, deadline: float, connection: _Connection) -> _Alarm:
        """Cut ``connection`` at ``deadline`` (``time.monotonic`` seconds) unless disarmed first."""
        alarm = _Alarm(connection)
        with self._cond:
            if self._pid != os.getpid():  # first use, or a forked child: the thread is not ours
                self._pid = os.getpid()
                self._heap, self._cancelled = [], 0
                threading.Thread(target=self._run, name="gather-http-watchdog", daemon=True).start()
            heapq.heappush(self._heap, (deadline, next(self._order), alarm))
            if self._heap[0][2] is alarm:
                self._cond.notify()
        return alarm

    def disarm(self, alarm: _Alarm) -> bool:
        """Cancel ``alarm``; True if it had already fired (the attempt ran out of time)."""
        with self._cond:
            if alarm.fired:
                return True
            alarm.connection = None
            self._cancelled += 1
            if self._cancelled > WATCHDOG_COMPACT_AT and 2 * self._cancelled > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2].connection is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0
            return False

    def _run(self) -> None:
        pid = os.getpid()
        with self._cond:
            while self._pid == pid:
                heap = self._heap
                while heap and heap[0][2].connection is None:
                    heapq.heappop(heap)
                    self._cancelled -= 1
                if not heap:
                    self._cond.wait()
                    continue
                wait = heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                alarm = heapq.heappop(heap)[2]
                alarm.fired = True
                _cut(alarm.connection)
                alarm.connection = None


_WATCHDOG = _Watchdog()


class _Endpoint:
    """One server URL: its pool of keep-alive connections (at most ``max_connections`` open at once),
    the requests outstanding on it, and whether it is in the rotation."""

    def __init__(self, url: str, max_connections: int, position: int) -> None:
        self.url = url
        self.public_url = _public_url(url)
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or ""
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        self.prefix = parts.path
        self.query = parts.query
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.head = f"\r\nHost: {parts.netloc}\r\n"
        self.position = position
        self.slots = threading.BoundedSemaphore(max_connections)
        self.idle: list[_Connection] = []
        self.outstanding = 0
        self.sessions = 0  # sessions ever routed here: among equally busy endpoints, the fewest wins
        self.down_until: float | None = None
        """None while in the rotation; else when (``time.monotonic``) a probe request may go."""
        self.prober: _Session | None = None
        """The session whose request probes the endpoint while it is out of the rotation."""

    def target(self, path: str) -> str:
        return self.prefix + path + (f"?{self.query}" if self.query else "")

    def connect(self, timeout: float) -> _Connection:
        """A new connection (TLS for https); OSError (TimeoutError included) when it fails."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def take_idle(self) -> _Connection | None:
        try:
            return self.idle.pop()  # newest first: the least likely to have been closed by the server
        except IndexError:
            return None

    def close_idle(self) -> None:
        while (connection := self.take_idle()) is not None:
            connection.close()


class _Session:
    """One episode's view of an :class:`OpenAIHTTPBackend`: every call goes to the same endpoint
    (so the server's prefix cache holds the conversation) until that endpoint leaves the rotation."""

    def __init__(self, backend: OpenAIHTTPBackend) -> None:
        self.backend = backend
        self.endpoint: _Endpoint | None = None
        self.supports_tools = backend.supports_tools
        self.context_tokens = backend.context_tokens

    def chat(self, messages: Sequence[Message], **sampling: Any) -> ChatResult:
        return self.backend._complete(messages, self, **sampling)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.backend.count_tokens(messages)

    def settings(self) -> dict[str, Any]:
        return self.backend.settings()


class OpenAIHTTPBackend:
    """Chat completions from one or more OpenAI-compatible servers, with retries and failover."""

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
                    f"base_url {_public_url(url)!r} holds whitespace or control characters; "
                    "separate several URLs with commas only"
                )
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise ConfigError(f"base_url must start with http:// or https://, got {_public_url(url)!r}")
            if parts.username or parts.password:
                raise ConfigError(
                    "base_url must not hold credentials; pass the key as api_key or in GATHER_API_KEY"
                )
        urls = tuple(url.rstrip("/") for url in urls)
        if len(set(urls)) != len(urls):
            raise ConfigError(f"base_url lists an endpoint twice: {[_public_url(u) for u in urls]}")
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
        self._endpoints = [_Endpoint(url, self.max_connections, i) for i, url in enumerate(self.base_urls)]
        self._header_lines = (
            "Content-Type: application/json\r\nAccept: application/json\r\nAccept-Encoding: identity\r\n"
            + (f"Authorization: Bearer {key}\r\n" if key else "")
        )
        self._rng = random.Random(self.retry_seed)
        self._lock = threading.Lock()
        self._totals = {
            "requests": 0,
            "attempts": 0,
            "retries": 0,
            "failovers": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
        }
        self.model = model or _from_env(ENV_MODEL) or self._first_model()

    def __repr__(self) -> str:
        urls = ",".join(endpoint.public_url for endpoint in self._endpoints)
        return f"OpenAIHTTPBackend(base_url={urls!r}, model={self.model!r}, api_key={self._api_key!r})"

    def settings(self) -> dict[str, Any]:
        urls = [endpoint.public_url for endpoint in self._endpoints]
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
            return dict(self._totals)

    def endpoint_states(self) -> list[dict[str, Any]]:
        """Each endpoint's public URL, requests outstanding and whether it is in the rotation."""
        with self._lock:
            return [
                {"url": e.public_url, "outstanding": e.outstanding, "up": e.down_until is None}
                for e in self._endpoints
            ]

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return estimate_tokens(messages)

    def session(self) -> _Session:
        """A view pinned to one endpoint, chosen at its first call (see :func:`episode_backend`)."""
        return _Session(self)

    # -- requests --------------------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
        stop: Sequence[str] = (),
        grammar: str | None = None,
        regex: str | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> ChatResult:
        """One chat completion on the endpoint with the fewest requests outstanding; raises
        BackendError once retries are exhausted (a :meth:`session` keeps one endpoint instead)."""
        return self._complete(
            messages, _Session(self), temperature=temperature, top_p=top_p, max_tokens=max_tokens,
            seed=seed, stop=stop, grammar=grammar, regex=regex, tools=tools,
        )  # fmt: skip

    def _complete(
        self,
        messages: Sequence[Message],
        session: _Session,
        *,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
        stop: Sequence[str] = (),
        grammar: str | None = None,
        regex: str | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> ChatResult:
        """:meth:`chat` on the session's endpoint."""
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "n": 1,
        }
        if seed is not None:
            payload["seed"] = seed
        if stop:
            payload["stop"] = list(stop)
        if tools and self.supports_tools:
            payload["tools"] = list(tools)
        if self.logprobs:
            payload["logprobs"] = True
            if self.top_logprobs:
                payload["top_logprobs"] = self.top_logprobs
        payload.update(self._constraint_fields(grammar, regex))
        payload.update(self.extra_body)
        parse = _parse_completion_with_logprobs if self.logprobs else _parse_completion
        data = self._request("POST", "/chat/completions", payload, parse, session)
        with self._lock:
            self._totals["prompt_tokens"] += data.usage.get("prompt_tokens", 0)
            self._totals["completion_tokens"] += data.usage.get("completion_tokens", 0)
        return data

    def _constraint_fields(self, grammar: str | None, regex: str | None) -> dict[str, Any]:
        if self.constraint == "llama.cpp" and grammar:
            return {"grammar": grammar}
        if self.constraint == "vllm" and (regex or grammar):
            return {"structured_outputs": {"regex": regex} if regex else {"grammar": grammar}}
        if self.constraint == "vllm-legacy" and (regex or grammar):
            return {"guided_regex": regex} if regex else {"guided_grammar": grammar}
        return {}

    def _first_model(self) -> str:
        """The first model id the server lists (llama.cpp and vLLM serve one model)."""
        models = self._request("GET", "/models", None, _parse_models, _Session(self))
        return models[0]

    # -- routing ---------------------------------------------------------------------------------

    def _route(self, session: _Session) -> _Endpoint:
        """The endpoint for the session's next attempt, counted as outstanding; caller holds the lock.

        A session keeps its endpoint while it is in the rotation. Otherwise: an endpoint due for a
        probe (out of the rotation for ``probe_after_s``, no probe in flight, not the one the
        session just failed on) takes it, so a restarted server comes back; else the endpoint in
        the rotation with the fewest requests outstanding (ties: the fewest sessions so far); else
        (all are out) the one that left the rotation first.
        """
        endpoint = session.endpoint
        if endpoint is None or endpoint.down_until is not None and endpoint.prober is not session:
            now = time.monotonic()
            up = [e for e in self._endpoints if e.down_until is None]
            due = [
                e
                for e in self._endpoints
                if e.down_until is not None and e.prober is None and e.down_until <= now and e is not endpoint
            ]
            if due:
                endpoint = due[0]
                endpoint.prober = session
            elif up:
                endpoint = min(up, key=lambda e: (e.outstanding, e.sessions, e.position))
            else:
                endpoint = min(self._endpoints, key=lambda e: (e.down_until or 0.0, e.position))
            if session.endpoint is not None and session.endpoint is not endpoint:
                self._totals["failovers"] += 1
            session.endpoint = endpoint
            endpoint.sessions += 1
        endpoint.outstanding += 1
        return endpoint

    def _settle(self, session: _Session, endpoint: _Endpoint, outcome: str) -> bool:
        """Book the end of an attempt on ``endpoint`` (UP, DOWN or UNSENT); after a DOWN, True if
        another endpoint is in the rotation to take the next attempt at once."""
        with self._lock:
            endpoint.outstanding -= 1
            if endpoint.prober is session:
                endpoint.prober = None
            if outcome == UP:
                endpoint.down_until = None
            if outcome != DOWN:
                return False
            endpoint.down_until = time.monotonic() + self.probe_after_s
            others = any(e.down_until is None for e in self._endpoints)
        endpoint.close_idle()
        return others

    def _request(self, method: str, path: str, payload: Any, parse: Any, session: _Session) -> Any:
        """Send with retries; ``parse`` turns the JSON body into the result or raises _Retryable."""
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        failures: list[str] = []
        budget_end = time.monotonic() + self.request_budget_s
        several = len(self._endpoints) > 1
        with self._lock:
            self._totals["requests"] += 1
        attempts = 0
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self._totals["attempts"] += 1
                self._totals["retries"] += attempt > 0
                endpoint = self._route(session)
            attempts += 1
            where = f" ({endpoint.public_url})" if several else ""
            try:
                result = self._attempt(endpoint, method, path, body, budget_end, parse)
            except _Retryable as error:
                failure = error
            except _BudgetSpent:
                self._settle(session, endpoint, UNSENT)
                failures.append(f"attempt {attempt + 1}{where}: the request budget was spent waiting")
                break
            except BackendError:  # the server answered, with a refusal
                self._settle(session, endpoint, UP)
                raise
            except BaseException:
                self._settle(session, endpoint, UNSENT)
                raise
            else:
                self._settle(session, endpoint, UP)
                return result
            elsewhere = self._settle(session, endpoint, DOWN if failure.endpoint_down else UP)
            failures.append(f"attempt {attempt + 1}{where}: {self._scrub(str(failure))}")
            if attempt == self.max_retries:
                break
            if elsewhere:
                continue  # another endpoint is in the rotation: no reason to wait
            delay = self._delay(attempt, failure.retry_after)
            if time.monotonic() + delay >= budget_end:
                failures.append(f"no time left for attempt {attempt + 2} in the request budget")
                break
            time.sleep(delay)
        urls = ",".join(endpoint.public_url for endpoint in self._endpoints)
        target = f"{urls}{path}" if not several else f"{path} on {urls}"
        raise BackendError(
            f"{method} {target} failed after {attempts} attempt(s) "
            f"(timeout_s={self.timeout_s:g}, request_budget_s={self.request_budget_s:g}): "
            + "; ".join(failures)
        )

    def _attempt(
        self, endpoint: _Endpoint, method: str, path: str, body: bytes | None, budget_end: float, parse: Any
    ) -> Any:
        """One attempt on ``endpoint`` within the request budget: a connection slot, the exchange, the parse."""
        left = budget_end - time.monotonic()
        if left <= 0 or not endpoint.slots.acquire(timeout=left):
            raise _BudgetSpent
        try:
            left = budget_end - time.monotonic()
            if left <= 0:
                raise _BudgetSpent
            status, raw = self._send(endpoint, method, path, body, min(self.timeout_s, left))
        finally:
            endpoint.slots.release()
        if status != HTTP_OK:
            self._raise_for_status(status, raw)
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            raise _Retryable(f"malformed JSON in the response: {self._snippet(raw)!r}") from None
        return parse(document, self._api_key.reveal())

    def _scrub(self, text: str) -> str:
        """``text`` without the API key or any credential a server echoed back."""
        return redact(text, [self._api_key.reveal()])

    def _snippet(self, raw: bytes | str) -> str:
        """The start of a server's answer, safe to quote in an error message."""
        return self._scrub(_snippet(raw))

    def _raise_for_status(self, status: int, raw: bytes) -> None:
        if HTTP_REDIRECT <= status < HTTP_REDIRECT + 100:
            raise BackendError(
                f"the server redirected the request (HTTP {status}); pass the final URL as base_url"
            )
        raise BackendError(f"the server refused the request with HTTP {status}: {self._snippet(raw)!r}")

    def _send(
        self, endpoint: _Endpoint, method: str, path: str, body: bytes | None, deadline_s: float
    ) -> tuple[int, bytes]:
        """One HTTP exchange within ``deadline_s`` in all: (status, body); failures are _Retryable.

        It reuses an idle keep-alive connection of the endpoint when there is one (a server that
        closed it meanwhile costs one silent retry on a fresh connection), else connects.
        """
        deadline = time.monotonic() + deadline_s
        request = self._request_bytes(endpoint, method, path, body)
        connection = endpoint.take_idle()
        if connection is not None:
            try:
                return self._exchange(endpoint, connection, request, deadline, deadline_s, True)
            except _Stale:
                pass
        try:
            connection = endpoint.connect(max(deadline - time.monotonic(), MIN_TIMEOUT_S))
        except OSError as error:
            raise self._connection_failure(error, deadline_s) from None
        return self._exchange(endpoint, connection, request, deadline, deadline_s, False)

    def _request_bytes(self, endpoint: _Endpoint, method: str, path: str, body: bytes | None) -> bytes:
        """The whole request, head and body, to go out in one ``sendall``."""
        head = f"{method} {endpoint.target(path)} HTTP/1.1{endpoint.head}{self._header_lines}"
        if body is None:
            return (head + "\r\n").encode("latin-1")
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body

    def _exchange(
        self,
        endpoint: _Endpoint,
        connection: _Connection,
        request: bytes,
        deadline: float,
        deadline_s: float,
        reused: bool,
    ) -> tuple[int, bytes]:
        """Request and whole answer on an open ``connection``, cut by the watchdog at ``deadline``.

        Socket timeouts only bound each read, so the watchdog shuts the socket down at the deadline.
        """
        left = deadline - time.monotonic()
        if left <= 0:
            connection.close()
            raise _timed_out(deadline_s)
        connection.sock.settimeout(left)
        alarm = _WATCHDOG.arm(deadline, connection)
        connection.answered = False
        try:
            connection.sock.sendall(request)
            status, headers, raw, reusable = connection.answer()
        except (OSError, ValueError) as error:
            expired = _WATCHDOG.disarm(alarm)
            connection.close()
            if reused and not expired and not connection.answered and isinstance(error, STALE_ERRORS):
                raise _Stale from None
            if expired:
                raise _timed_out(deadline_s) from None
            raise self._connection_failure(error, deadline_s) from None
        except _Retryable:
            expired = _WATCHDOG.disarm(alarm)
            connection.close()
            if reused and not expired and not connection.answered:
                raise _Stale from None  # closed before a byte of an answer: it was idle too long
            if expired:
                raise _timed_out(deadline_s) from None
            raise
        if _WATCHDOG.disarm(alarm):
            connection.close()
            raise _timed_out(deadline_s)
        if reusable:
            endpoint.idle.append(connection)
        else:
            connection.close()
        if status == HTTP_TOO_MANY_REQUESTS or status >= HTTP_SERVER_ERROR:
            raise _Retryable(
                f"HTTP {status}: {self._snippet(raw)!r}",
                _retry_after(headers.get("retry-after")),
                endpoint_down=status >= HTTP_SERVER_ERROR,
            )
        return status, raw

    def _connection_failure(self, error: Exception, deadline_s: float) -> _Retryable:
        if isinstance(error, TimeoutError):
            return _timed_out(deadline_s)
        if isinstance(error, OSError) and error.errno in LOCAL_LIMIT_ERRNOS:  # our limit, not the server's
            return _Retryable(
                f"connection failed: {error.strerror} in this process; lower --concurrency or "
                "max_connections, or raise the limit (ulimit -n)"
            )
        return _Retryable(
            f"connection failed: {type(error).__name__}: {self._scrub(str(error))}",
            endpoint_down=not isinstance(error, ValueError),
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with seeded jitter, at least the server's Retry-After, capped."""
        with self._lock:
            factor = 1.0 + JITTER * (2.0 * self._rng.random() - 1.0)
        delay = self.backoff_s * (2.0**attempt) * factor
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_backoff_s)


def _timed_out(deadline_s: float) -> _Retryable:
    return _Retryable(f"timed out after {deadline_s:g} s (deadline for the whole answer)", endpoint_down=True)


def _snippet(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text[:MAX_ERROR_BODY]


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _cut(connection: _Connection | None) -> None:
    """Shut the socket of an attempt past its deadline, which ends any blocked read or write."""
    if connection is not None:
        with contextlib.suppress(OSError):  # already closed
            connection.sock.shutdown(socket.SHUT_RDWR)


class _Connection:
    """One keep-alive HTTP/1.1 connection and the bytes read past the last answer.

    The client's own, a few dozen lines: ``http.client`` parsed each answer's headers with the
    ``email`` package, 0.2-0.3 ms of CPU per call with 64 threads (measured), a third of the
    runner's whole cost per model call. It reads ``Content-Length``, chunked and read-to-close
    bodies and skips ``1xx`` answers; anything else that is not HTTP is a ValueError.
    """

    __slots__ = ("sock", "buffer", "answered")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.answered = False  # a byte of an answer came on this connection during this exchange

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def answer(self) -> tuple[int, dict[str, str], bytes, bool]:
        """(status, headers with lower-case names, body, whether the connection can be reused)."""
        while True:
            status, version, headers = self._head()
            if not HTTP_CONTINUE <= status < HTTP_CONTINUE + 100:
                break
        keep = headers.get("connection", "").lower()
        reusable = keep != "close" if version == "HTTP/1.1" else keep == "keep-alive"
        if status in NO_BODY_STATUSES:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise ValueError(f"Content-Length {headers['content-length']!r} is not a number") from None
            body = self._exactly(length)
        else:
            body, reusable = self._to_close(), False
        return status, headers, body, reusable

    def _recv(self) -> bytes:
        chunk = self.sock.recv(READ_CHUNK_BYTES)
        if chunk:
            self.answered = True
        return chunk

    def _line(self, marker: bytes, limit: int, what: str) -> bytes:
        """Bytes up to ``marker`` (dropped); _Retryable when the server hangs up first."""
        buffer = self.buffer
        start = 0
        while (end := buffer.find(marker, start)) < 0:
            if len(buffer) > limit:
                raise ValueError(f"the answer's {what} is longer than {limit} bytes")
            start = max(0, len(buffer) - len(marker) + 1)
            chunk = self._recv()
            if not chunk:
                closed = (
                    "before answering" if not buffer and not self.answered else f"in the middle of the {what}"
                )
                raise _Retryable(
                    f"connection failed: the server closed the connection {closed}", endpoint_down=True
                )
            buffer += chunk
        self.buffer = buffer[end + len(marker) :]
        return buffer[:end]

    def _head(self) -> tuple[int, str, dict[str, str]]:
        head = self._line(b"\r\n\r\n", MAX_HEAD_BYTES, "headers").decode("latin-1")
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/") or not code.isdigit():
            raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(code), version, headers

    def _exactly(self, length: int) -> bytes:
        if length > MAX_RESPONSE_BYTES:
            raise _Retryable(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
        parts = [self.buffer[:length]]
        size = len(parts[0])
        self.buffer = self.buffer[length:]
        while size < length:
            chunk = self._recv()
            if not chunk:
                raise _Retryable(f"the answer was cut short: {size} of {length} bytes")
            parts.append(chunk[: length - size])
            self.buffer = chunk[length - size :]
            size += len(parts[-1])
        return b"".join(parts)

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self._line(b"\r\n", MAX_HEAD_BYTES, "chunk sizes")
            try:
                length = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise ValueError(f"bad chunk size {line[:40]!r} in a chunked answer") from None
            if length == 0:
                while self._line(b"\r\n", MAX_HEAD_BYTES, "trailers"):
                    pass
                return b"".join(parts)
            size += length
            if size > MAX_RESPONSE_BYTES:
                raise _Retryable(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
            parts.append(self._exactly(length))
            if self._line(b"\r\n", MAX_HEAD_BYTES, "chunk sizes"):
                raise ValueError("a chunk of a chunked answer is longer than its size")

    def _to_close(self) -> bytes:
        parts = [self.buffer]
        size = len(self.buffer)
        self.buffer = b""
        while chunk := self._recv():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise _Retryable(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
            parts.append(chunk)
        return b"".join(parts)


def _malformed(what: str) -> _Retryable:
    return _Retryable(f"malformed completion: {what}")


def _parse_models(document: Any, secret: str | None = None) -> list[str]:
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or not all(isinstance(item, dict) and "id" in item for item in data):
        raise _Retryable("malformed /models response: no data[].id")
    models = [str(item["id"]) for item in data]
    if not models:
        raise BackendError("the server lists no models; pass model=... explicitly")
    return models


def _parse_completion(document: Any, secret: str | None = None) -> ChatResult:
    """A ChatResult from a chat-completions JSON body; any other shape is retried (_Retryable).

    Every text the server returns has ``secret`` (the API key) scrubbed, even a completion.
    """
    choices = document.get("choices") if isinstance(document, dict) else None
    if not isinstance(choices, list) or not choices:
        raise _malformed("no choices[0]")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise _malformed(f"choices[0].message is {type(message).__name__}, not an object")
    content = message.get("content")
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        if not all(isinstance(part, dict) and isinstance(part.get("text", ""), str) for part in content):
            raise _malformed("choices[0].message.content parts are not text")
        content = "".join(part.get("text", "") for part in content)
    if content is not None and not isinstance(content, str):
        raise _malformed(f"choices[0].message.content is {type(content).__name__}, not a string")
    raw_calls = message.get("tool_calls")
    if raw_calls is not None and not isinstance(raw_calls, list):
        raise _malformed(f"choices[0].message.tool_calls is {type(raw_calls).__name__}, not a list")
    calls = []
    for number, call in enumerate(raw_calls or ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name", ""), str):
            raise _malformed(f"tool_calls[{number}] has no function object with a string name")
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            try:
                arguments = json.dumps(arguments)
            except (ValueError, RecursionError):
                raise _malformed(f"tool_calls[{number}].function.arguments cannot be encoded") from None
        calls.append(
            ToolCall(
                redact(str(call.get("id") or f"call_{number}"), [secret], credentials=False),
                redact(function.get("name", ""), [secret], credentials=False),
                redact(arguments, [secret], credentials=False),
            )
        )
    finish_reason = choice.get("finish_reason")
    return ChatResult(
        text=redact(content or "", [secret], credentials=False),
        usage=usage_from(document.get("usage")),
        tool_calls=tuple(calls),
        finish_reason=finish_reason if isinstance(finish_reason, str) else "",
    )


def _parse_completion_with_logprobs(document: Any, secret: str | None = None) -> ChatResult:
    """:func:`_parse_completion` plus ``choices[0].logprobs.content`` (the OpenAI format)."""
    result = _parse_completion(document, secret)
    raw = document["choices"][0].get("logprobs")
    content = raw.get("content") if isinstance(raw, dict) else None
    if content is None:
        raise BackendError(
            "logprobs were asked for but the server returned none (choices[0].logprobs.content is "
            "missing); use a server that returns them (vLLM, llama.cpp's llama-server) or drop logprobs=true"
        )
    if not isinstance(content, list):
        raise _malformed(f"choices[0].logprobs.content is {type(content).__name__}, not a list")
    tokens = []
    for number, entry in enumerate(content):
        token, logprob = _token_logprob(entry, f"logprobs.content[{number}]", secret)
        alternatives = entry.get("top_logprobs") or []
        if not isinstance(alternatives, list):
            raise _malformed(f"logprobs.content[{number}].top_logprobs is not a list")
        top = tuple(
            _token_logprob(item, f"logprobs.content[{number}].top_logprobs[{rank}]", secret)
            for rank, item in enumerate(alternatives)
        )
        tokens.append(TokenLogprob(token, logprob, top))
    return replace(result, logprobs=tuple(tokens))


def _token_logprob(entry: Any, where: str, secret: str | None) -> tuple[str, float | None]:
    """(token, logprob) of one logprobs entry; a non-finite logprob (JSON cannot hold it) is None."""
    token = entry.get("token") if isinstance(entry, dict) else None
    logprob = entry.get("logprob") if isinstance(entry, dict) else None
    if not isinstance(token, str) or isinstance(logprob, bool) or not isinstance(logprob, (int, float)):
        raise _malformed(f"{where} has no string token and numeric logprob")
    return redact(token, [secret], credentials=False), float(logprob) if math.isfinite(logprob) else None
