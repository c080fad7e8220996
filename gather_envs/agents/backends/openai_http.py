"""An OpenAI-compatible chat-completions client (vLLM, llama.cpp server, Ollama, hosted APIs).

Standard library only (``urllib``). Configuration comes from arguments, else the environment:
``GATHER_BASE_URL`` / ``GATHER_MODEL`` / ``GATHER_API_KEY``, falling back to ``OPENAI_BASE_URL`` /
``OPENAI_MODEL`` / ``OPENAI_API_KEY``. Without a model name the first id of ``GET /models`` is used.

Reliability: at most ``concurrency`` requests are in flight per backend (a semaphore); each request
has a timeout; connection errors, timeouts, HTTP 429 and 5xx, and malformed JSON are retried with
exponential backoff and jitter drawn from a seeded generator (``Retry-After`` is honoured, capped);
a failure that survives the retries raises :class:`~gather_envs.errors.BackendError`, which the
runner records as an infrastructure error (never a task failure). Other 4xx answers (bad request,
unauthorized) are not retried.

Constrained decoding (``constraint``), so small models emit valid actions:

- ``"llama.cpp"`` (default): the GBNF grammar goes in the request's ``grammar`` field
  (llama.cpp's ``llama-server`` and ``python -m llama_cpp.server``);
- ``"vllm"``: ``{"structured_outputs": {"regex": ...}}`` (vLLM >= 0.10.2; the grammar is sent as
  ``{"grammar": ...}`` when no regex is given);
- ``"vllm-legacy"``: ``guided_regex`` / ``guided_grammar`` (vLLM before 0.12, where they were removed);
- ``"none"``: no constraint (OpenAI, Ollama's OpenAI endpoint and most hosted APIs).

The API key lives in a :class:`Secret`; it is sent only in the ``Authorization`` header and never
appears in ``repr``, :meth:`OpenAIHTTPBackend.settings`, error messages or records.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from gather_envs.agents.backends.base import ChatResult, Message, ToolCall, estimate_tokens, usage_from
from gather_envs.errors import BackendError, ConfigError

ENV_BASE_URL = ("GATHER_BASE_URL", "OPENAI_BASE_URL")
ENV_MODEL = ("GATHER_MODEL", "OPENAI_MODEL")
ENV_API_KEY = ("GATHER_API_KEY", "OPENAI_API_KEY")

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_BACKOFF_S = 0.5
DEFAULT_MAX_BACKOFF_S = 30.0
DEFAULT_CONCURRENCY = 8
DEFAULT_CONTEXT_TOKENS = 8192
DEFAULT_RETRY_SEED = 0
JITTER = 0.5  # each delay is scaled by a uniform factor in [1 - JITTER, 1 + JITTER]
MAX_ERROR_BODY = 300  # characters of a server's error body quoted in messages

CONSTRAINTS = ("llama.cpp", "vllm", "vllm-legacy", "none")
HTTP_OK = 200
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
        if timeout_s <= 0 or max_retries < 0 or concurrency < 1 or backoff_s < 0 or context_tokens < 1:
            raise ConfigError(
                "timeout_s, concurrency and context_tokens must be positive, max_retries and "
                f"backoff_s non-negative (got {timeout_s}, {concurrency}, {context_tokens}, "
                f"{max_retries}, {backoff_s})"
            )
        self.base_url = url.rstrip("/")
        self._api_key = Secret(api_key or _from_env(ENV_API_KEY))
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
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
        with self._lock:
            self._totals["requests"] += 1
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self._totals["attempts"] += 1
                self._totals["retries"] += attempt > 0
            try:
                with self._slots:
                    status, raw = self._send(method, url, body)
                if status != HTTP_OK:
                    _raise_for_status(status, raw)
                try:
                    document = json.loads(raw)
                except ValueError:
                    raise _Retryable(f"malformed JSON in the response: {_snippet(raw)!r}") from None
                return parse(document)
            except _Retryable as failure:
                failures.append(f"attempt {attempt + 1}: {failure}")
                if attempt < self.max_retries:
                    time.sleep(self._delay(attempt, failure.retry_after))
        raise BackendError(
            f"{method} {_public_url(url)} failed after {self.max_retries + 1} attempt(s): "
            + "; ".join(failures)
        )

    def _send(self, method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        """One HTTP exchange: (status, body); network failures become _Retryable."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key.reveal()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            retry_after = _retry_after(error.headers.get("Retry-After") if error.headers else None)
            raw = error.read() if error.fp is not None else b""
            if error.code == HTTP_TOO_MANY_REQUESTS or error.code >= HTTP_SERVER_ERROR:
                raise _Retryable(f"HTTP {error.code}: {_snippet(raw)!r}", retry_after) from None
            return error.code, raw
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError) or isinstance(error, TimeoutError):
                raise _Retryable(f"timed out after {self.timeout_s:g} s") from None
            raise _Retryable(f"connection failed: {type(reason).__name__}: {reason}") from None

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


def _raise_for_status(status: int, raw: bytes) -> None:
    if status == HTTP_TOO_MANY_REQUESTS or status >= HTTP_SERVER_ERROR:
        raise _Retryable(f"HTTP {status}: {_snippet(raw)!r}")
    raise BackendError(f"the server refused the request with HTTP {status}: {_snippet(raw)!r}")


def _parse_models(document: Any) -> list[str]:
    try:
        models = [str(item["id"]) for item in document["data"]]
    except (KeyError, TypeError):
        raise _Retryable("malformed /models response: no data[].id") from None
    if not models:
        raise BackendError("the server lists no models; pass model=... explicitly")
    return models


def _parse_completion(document: Any) -> ChatResult:
    """A ChatResult from a chat-completions JSON body; a body without a message is retried."""
    try:
        choice = document["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise _Retryable(
            f"malformed completion (no choices[0].message): {_snippet(json.dumps(document))!r}"
        ) from None
    calls = []
    for number, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append(
            ToolCall(str(call.get("id") or f"call_{number}"), str(function.get("name", "")), arguments)
        )
    return ChatResult(
        text=str(message.get("content") or ""),
        usage=usage_from(document.get("usage")),
        tool_calls=tuple(calls),
        finish_reason=str(choice.get("finish_reason") or ""),
    )
