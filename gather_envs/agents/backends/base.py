"""The chat backend protocol and the sampling options shared by every backend (HTTP, embedded, transformers)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

from gather_envs.errors import BackendError

Message = dict[str, Any]
"""One chat message in the OpenAI format: ``{"role": ..., "content": ...}`` (plus tool fields)."""

CHARS_PER_TOKEN = 3.0  # conservative estimate where no tokenizer is at hand
MESSAGE_OVERHEAD_TOKENS = 8  # role markers and separators a chat template adds per message
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")

SECRET_ENV_VARS = ("GATHER_API_KEY", "OPENAI_API_KEY")
"""Environment variables that may hold an API key (read by the HTTP backend, scrubbed everywhere)."""
SECRET_OPTIONS = ("api_key",)
"""Agent options whose values are secrets."""
REDACTED = "****"
MIN_SECRET_LENGTH = 4
"""Shorter "secrets" are not scrubbed: replacing every "ab" in a text would garble it."""
_CREDENTIALS = re.compile(
    r"""(?ix)
    ( authorization ["']? \s* [:=] \s* ["']? (?: (?:bearer|basic|token) \s+ )?
    | (?:api[_-]?key|x-api-key|access[_-]?token) ["']? \s* [:=] \s* ["']? )
    [^\s"',;&}\]\\]+
    | ( \b(?:bearer|basic) \s+ ) (?=[^\s"',;&}\]\\]*[0-9_\-.=+/]) [^\s"',;&}\]\\]{8,}
    """
)
"""A credential spelled out: its name (kept) and its value (hidden). A bare ``Bearer x`` counts
only when ``x`` looks like a token (8+ characters with a digit or punctuation), not a word."""


@dataclass(frozen=True)
class ToolCall:
    """A native tool call returned by the chat API: its id, tool name and JSON argument string."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, its log-probability and (when asked for) the top alternatives.

    A log-probability JSON cannot hold (``-inf``) is None.
    """

    token: str
    logprob: float | None
    top: tuple[tuple[str, float | None], ...] = ()


@dataclass(frozen=True)
class ChatResult:
    """One completion: its text, token usage, native tool calls and why generation stopped.

    ``logprobs`` holds one entry per generated token when the backend was asked for them, else None.
    """

    text: str
    usage: dict[str, int] = field(default_factory=dict)
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = ""
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True)
class Sampling:
    """How one completion is sampled and constrained: the options every backend's ``chat`` takes.

    ``grammar`` is a llama.cpp GBNF grammar and ``regex`` the same constraint as a regular
    expression (for servers that take regexes); a backend applies the one it supports, or none.
    ``tools`` are OpenAI function-tool schemas, sent only by a backend whose ``supports_tools`` is true.

    >>> Sampling(temperature=0.0, top_p=1.0, max_tokens=16, seed=7).stop
    ()
    """

    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None = None
    stop: tuple[str, ...] = ()
    grammar: str | None = None
    regex: str | None = None
    tools: tuple[dict[str, Any], ...] | None = None


@runtime_checkable
class ChatBackend(Protocol):
    """Anything that completes a chat: an OpenAI-compatible server or an in-process model.

    A backend that routes among several servers also offers ``session()`` (see :func:`episode_backend`).
    """

    supports_tools: bool
    context_tokens: int

    def chat(self, messages: Sequence[Message], sampling: Sampling) -> ChatResult:
        """One completion of ``messages`` sampled as ``sampling`` says."""
        ...

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens the messages take in the prompt (exact or a conservative estimate)."""
        ...

    def settings(self) -> dict[str, Any]:
        """Everything needed to rerun with this backend (never a secret)."""
        ...


@runtime_checkable
class BatchChatBackend(ChatBackend, Protocol):
    """A ChatBackend that completes many chats in one call (a local model batching its sequences).

    :func:`gather_envs.agents.backends.batching.micro_batched` wraps one as a plain ChatBackend whose
    concurrent ``chat`` calls are gathered into ``chat_batch`` calls.
    """

    def chat_batch(
        self, requests: Sequence[tuple[Sequence[Message], Sampling]]
    ) -> list[ChatResult | BackendError]:
        """One entry per request, in order: its result, or the BackendError of that request alone.

        A failure of one sequence (a prompt over the context, a decode error) is returned in its
        entry, never raised for the whole batch.
        """
        ...


def episode_backend(backend: ChatBackend) -> ChatBackend:
    """What one episode calls: a routing backend's ``session()`` (one endpoint, a warm prefix cache), else ``backend``.

    A plain attribute check, not ``isinstance`` on a runtime Protocol, which cost 55 us per episode.
    """
    session = getattr(backend, "session", None)
    return cast(ChatBackend, session()) if callable(session) else backend


def split_urls(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Endpoint URLs from ``"URL1,URL2"``, a list of URLs, or None; blanks are dropped.

    >>> split_urls("http://a:8000/v1, http://b:8000/v1")
    ('http://a:8000/v1', 'http://b:8000/v1')
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [str(item) for item in value]
    return tuple(item.strip() for item in items if item.strip())


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A tokenizer-free, deliberately high estimate of the prompt size of ``messages``."""
    total = 0
    for message in messages:
        text = str(message.get("content") or "")
        if message.get("tool_calls"):
            text += json.dumps(message["tool_calls"])
        total += int(len(text) / CHARS_PER_TOKEN) + 1 + MESSAGE_OVERHEAD_TOKENS
    return total


def known_secrets(options: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The API keys in ``options`` and in the environment: every value that must never be shown."""
    values = [os.environ.get(name) for name in SECRET_ENV_VARS]
    values += [(options or {}).get(name) for name in SECRET_OPTIONS]
    found = {str(value) for value in values if value and len(str(value)) >= MIN_SECRET_LENGTH}
    return tuple(sorted(found, key=lambda value: (-len(value), value)))


def redact(text: str, secrets: Iterable[str | None] = (), credentials: bool = True) -> str:
    """``text`` with every secret value, and with ``credentials`` any credential it spells out, hidden.

    Credentials are ``Authorization: ...`` values, ``Bearer ...`` tokens and ``api_key=...``
    pairs, so a server that echoes the request headers back leaks nothing. Use
    ``credentials=False`` on free text such as an episode's trajectory, where "bearer" is a word.

    >>> redact('HTTP 401: {"echo": "Authorization: Bearer sk-123"} key sk-123', ["sk-123"])
    'HTTP 401: {"echo": "Authorization: Bearer ****"} key ****'
    """
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, REDACTED)
    if credentials:
        text = _CREDENTIALS.sub(lambda match: (match.group(1) or match.group(2)) + REDACTED, text)
    return text


def usage_from(raw: Any) -> dict[str, int]:
    """The token counts of an OpenAI ``usage`` object (missing or non-numeric counts are 0)."""
    raw = raw if isinstance(raw, dict) else {}
    usage = {}
    for key in USAGE_KEYS:
        value = raw.get(key, 0)
        valid = isinstance(value, (int, float)) and not isinstance(value, bool)
        usage[key] = int(value) if valid and math.isfinite(value) and value >= 0 else 0
    if not usage["total_tokens"]:
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage
