"""The chat backend protocol shared by the HTTP and the embedded backends."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]
"""One chat message in the OpenAI format: ``{"role": ..., "content": ...}`` (plus tool fields)."""

CHARS_PER_TOKEN = 3.0  # conservative estimate where no tokenizer is at hand
MESSAGE_OVERHEAD_TOKENS = 8  # role markers and separators a chat template adds per message
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(frozen=True)
class ToolCall:
    """A native tool call returned by the chat API: its id, tool name and JSON argument string."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatResult:
    """One completion: its text, token usage, native tool calls and why generation stopped."""

    text: str
    usage: dict[str, int] = field(default_factory=dict)
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = ""


@runtime_checkable
class ChatBackend(Protocol):
    """Anything that completes a chat: an OpenAI-compatible server or an in-process model.

    ``grammar`` is a llama.cpp GBNF grammar and ``regex`` the same constraint as a regular
    expression (for servers that take regexes); a backend applies the one it supports, or none.
    ``tools`` are OpenAI function-tool schemas, used only when ``supports_tools`` is true.
    """

    supports_tools: bool
    context_tokens: int

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
    ) -> ChatResult: ...

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens the messages take in the prompt (exact or a conservative estimate)."""
        ...

    def settings(self) -> dict[str, Any]:
        """Everything needed to rerun with this backend (never a secret)."""
        ...


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A tokenizer-free, deliberately high estimate of the prompt size of ``messages``."""
    total = 0
    for message in messages:
        text = str(message.get("content") or "")
        if message.get("tool_calls"):
            text += json.dumps(message["tool_calls"])
        total += int(len(text) / CHARS_PER_TOKEN) + 1 + MESSAGE_OVERHEAD_TOKENS
    return total


def usage_from(raw: Any) -> dict[str, int]:
    """The token counts of an OpenAI ``usage`` object (missing counts are 0)."""
    raw = raw if isinstance(raw, dict) else {}
    usage = {}
    for key in USAGE_KEYS:
        value = raw.get(key, 0)
        usage[key] = int(value) if isinstance(value, (int, float)) else 0
    if not usage["total_tokens"]:
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage
