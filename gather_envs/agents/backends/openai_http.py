"""An OpenAI-compatible chat-completions client (vLLM, llama.cpp server, Ollama, hosted APIs).

Standard library only (``urllib``). Configuration comes from arguments, else the environment:
``GATHER_BASE_URL`` / ``GATHER_MODEL`` / ``GATHER_API_KEY``, falling back to ``OPENAI_BASE_URL`` /
``OPENAI_MODEL`` / ``OPENAI_API_KEY``. Without a model name the first id of ``GET /models`` is used.

Reliability: at most ``concurrency`` requests are in flight per backend (a semaphore). Each attempt
has a total deadline of ``timeout_s`` (connect, send, headers and body together: a server that
trickles one byte a second is cut off at the deadline), and one :meth:`~OpenAIHTTPBackend.chat`
call spends at most ``request_budget_s`` over all its attempts and backoff sleeps. Connection
errors, timeouts, HTTP 429 and 5xx, and any answer that is not a completion (non-JSON, truncated,
a string where an object belongs...) are retried with exponential backoff and jitter drawn from a
seeded generator (``Retry-After`` is honoured, capped); a failure that survives the retries raises
:class:`~gather_envs.errors.BackendError`, which the runner records as an infrastructure error
(never a task failure). Other 4xx answers (bad request, unauthorized) and redirects are not retried.

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
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from gather_envs.agents.backends.base import (
    SECRET_ENV_VARS,
    ChatResult,
    Message,
    ToolCall,
    estimate_tokens,
    redact,
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
DEFAULT_CONCURRENCY = 8
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
    """A failed attempt worth retrying; ``retry_after`` is the server's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIHTTPBackend:
    """Chat completions from an OpenAI-compatible server, with retries and bounded concurrency."""

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        request_budget_s: float = DEFAULT_REQUEST_BUDGET_S,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        concurrency: int = DEFAULT_CONCURRENCY,
        constraint: str = "llama.cpp",
        retry_seed: int = DEFAULT_RETRY_SEED,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        supports_tools: bool = True,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        url = base_url or _from_env(ENV_BASE_URL)
        if not url:
            raise ConfigError(
                "no server URL: pass base_url (--agent-option base_url=http://host:port/v1) or set "
                f"{ENV_BASE_URL[0]}"
            )
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"base_url must start with http:// or https://, got {_public_url(url)!r}")
        if parts.username or parts.password:
            raise ConfigError(
                "base_url must not hold credentials; pass the key as api_key or in GATHER_API_KEY"
            )
        if constraint not in CONSTRAINTS:
            raise ConfigError(f"unknown constraint {constraint!r}; choose one of {CONSTRAINTS}")
        if (
            not timeout_s > 0
            or not request_budget_s > 0
            or max_retries < 0
            or concurrency < 1
            or not backoff_s >= 0
            or context_tokens < 1
        ):
            raise ConfigError(
                "timeout_s, request_budget_s, concurrency and context_tokens must be positive, "
                f"max_retries and backoff_s non-negative (got {timeout_s}, {request_budget_s}, "
                f"{concurrency}, {context_tokens}, {max_retries}, {backoff_s})"
            )
        self.base_url = url.rstrip("/")
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
        self.concurrency = int(concurrency)
        self.constraint = constraint
        self.retry_seed = int(retry_seed)
        self.context_tokens = int(context_tokens)
        self.supports_tools = bool(supports_tools)
        self.extra_body = dict(extra_body or {})
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._rng = random.Random(self.retry_seed)
        self._lock = threading.Lock()
        self._totals = {
            "requests": 0,
            "attempts": 0,
            "retries": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
        }
        self.model = model or _from_env(ENV_MODEL) or self._first_model()

    def __repr__(self) -> str:
        return (
            f"OpenAIHTTPBackend(base_url={_public_url(self.base_url)!r}, model={self.model!r}, "
            f"api_key={self._api_key!r})"
        )

    def settings(self) -> dict[str, Any]:
        return {
            "backend": "openai-http",
            "base_url": _public_url(self.base_url),
            "model": self.model,
            "api_key_set": bool(self._api_key),
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "request_budget_s": self.request_budget_s,
            "backoff_s": self.backoff_s,
            "max_backoff_s": self.max_backoff_s,
            "concurrency": self.concurrency,
            "constraint": self.constraint,
            "retry_seed": self.retry_seed,
            "context_tokens": self.context_tokens,
            "supports_tools": self.supports_tools,
            "extra_body": dict(self.extra_body),
        }

    def totals(self) -> dict[str, int]:
        """Requests, attempts, retries and tokens over the backend's life (all threads)."""
        with self._lock:
            return dict(self._totals)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return estimate_tokens(messages)

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
        """One chat completion; raises BackendError once retries are exhausted."""
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
        payload.update(self._constraint_fields(grammar, regex))
        payload.update(self.extra_body)
        data = self._request("POST", "/chat/completions", payload, parse=_parse_completion)
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
        models = self._request("GET", "/models", None, parse=_parse_models)
        return models[0]

    def _request(self, method: str, path: str, payload: Any, parse: Any) -> Any:
        """Send with retries; ``parse`` turns the JSON body into the result or raises _Retryable."""
        url = self.base_url + path
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        failures: list[str] = []
        budget_end = time.monotonic() + self.request_budget_s
        with self._lock:
            self._totals["requests"] += 1
        attempts = 0
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self._totals["attempts"] += 1
                self._totals["retries"] += attempt > 0
            attempts += 1
            try:
                with self._slots:
                    left = budget_end - time.monotonic()
                    if left <= 0:
                        failures.append(f"attempt {attempt + 1}: the request budget was spent waiting")
                        break
                    status, raw = self._send(method, url, body, min(self.timeout_s, left))
                if status != HTTP_OK:
                    self._raise_for_status(status, raw)
                try:
                    document = json.loads(raw)
                except (ValueError, RecursionError):
                    raise _Retryable(f"malformed JSON in the response: {self._snippet(raw)!r}") from None
                return parse(document, self._api_key.reveal())
            except _Retryable as failure:
                failures.append(f"attempt {attempt + 1}: {self._scrub(str(failure))}")
                if attempt == self.max_retries:
                    break
                delay = self._delay(attempt, failure.retry_after)
                if time.monotonic() + delay >= budget_end:
                    failures.append(f"no time left for attempt {attempt + 2} in the request budget")
                    break
                time.sleep(delay)
        raise BackendError(
            f"{method} {_public_url(url)} failed after {attempts} attempt(s) "
            f"(timeout_s={self.timeout_s:g}, request_budget_s={self.request_budget_s:g}): "
            + "; ".join(failures)
        )

    def _scrub(self, text: str) -> str:
        """``text`` without the API key or any credential a server echoed back."""
        return redact(text, [self._api_key.reveal()])

    def _snippet(self, raw: bytes | str) -> str:
        """The start of a server's answer, safe to quote in an error message."""
        return self._scrub(_snippet(raw))

    def _raise_for_status(self, status: int, raw: bytes) -> None:
        if status == HTTP_TOO_MANY_REQUESTS or status >= HTTP_SERVER_ERROR:
            raise _Retryable(f"HTTP {status}: {self._snippet(raw)!r}")
        if HTTP_REDIRECT <= status < HTTP_REDIRECT + 100:
            raise BackendError(
                f"the server redirected the request (HTTP {status}); pass the final URL as base_url"
            )
        raise BackendError(f"the server refused the request with HTTP {status}: {self._snippet(raw)!r}")

    def _send(self, method: str, url: str, body: bytes | None, deadline_s: float) -> tuple[int, bytes]:
        """One HTTP exchange within ``deadline_s`` in all: (status, body); failures are _Retryable.

        Socket timeouts only bound each read, so a watchdog shuts the socket down at the deadline.
        """
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key.reveal()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        started = time.monotonic()
        connection = kind(parts.hostname or "", parts.port, timeout=deadline_s)
        expired = threading.Event()
        watchdog: threading.Timer | None = None
        try:
            connection.connect()
            left = deadline_s - (time.monotonic() - started)
            watchdog = threading.Timer(max(left, 0.0), _cut, (connection, expired))
            watchdog.daemon = True
            watchdog.start()
            connection.request(method, target or "/", body=body, headers=headers)
            response = connection.getresponse()
            status = response.status
            retry_after = _retry_after(response.getheader("Retry-After"))
            raw = _read_body(response)
            if expired.is_set():
                raise TimeoutError
        except (OSError, http.client.HTTPException, ValueError) as error:
            if expired.is_set() or isinstance(error, TimeoutError):
                raise _Retryable(
                    f"timed out after {deadline_s:g} s (deadline for the whole answer)"
                ) from None
            raise _Retryable(
                f"connection failed: {type(error).__name__}: {self._scrub(str(error))}"
            ) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            connection.close()
        if status == HTTP_TOO_MANY_REQUESTS or status >= HTTP_SERVER_ERROR:
            raise _Retryable(f"HTTP {status}: {self._snippet(raw)!r}", retry_after)
        return status, raw

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with seeded jitter, at least the server's Retry-After, capped."""
        with self._lock:
            factor = 1.0 + JITTER * (2.0 * self._rng.random() - 1.0)
        delay = self.backoff_s * (2.0**attempt) * factor
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_backoff_s)


def _snippet(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text[:MAX_ERROR_BODY]


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _cut(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The watchdog: mark the attempt expired and shut its socket, which ends any blocked read."""
    expired.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


def _read_body(response: http.client.HTTPResponse) -> bytes:
    """The whole body, or _Retryable when it is cut short or larger than MAX_RESPONSE_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read(READ_CHUNK_BYTES)
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _Retryable(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
    if response.length:  # bytes the Content-Length promised that never came
        raise _Retryable(f"the answer was cut short: {size} of {size + response.length} bytes")
    return b"".join(chunks)


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
