"""LLM backends: an OpenAI-compatible HTTP client, the embedded llama.cpp default, a local transformers checkpoint.

:func:`make_backend` picks one from agent options: ``backend=http`` or a ``base_url`` option or
the ``GATHER_BASE_URL`` variable selects the HTTP client; ``backend=transformers`` with
``model=FOLDER`` a local checkpoint; otherwise the embedded SmolLM2 model. Every backend's
``chat`` takes the messages and one :class:`Sampling`; a local backend that also offers
``chat_batch`` (:class:`BatchChatBackend`) is put behind a micro-batcher by the LLM agents
(:mod:`.batching`), so concurrent episodes share its batches.
``base_url`` may name several endpoints (``URL1,URL2``); each episode then calls one of them
through :func:`episode_backend`.
"""

from __future__ import annotations

import os
from typing import Any

from gather_envs.agents.backends.base import (
    BatchChatBackend,
    ChatBackend,
    ChatResult,
    Message,
    Sampling,
    TokenLogprob,
    ToolCall,
    episode_backend,
    split_urls,
)
from gather_envs.errors import ConfigError
from gather_envs.parameters import Parameter, parse_bool

BACKENDS = ("http", "embedded", "transformers")


HTTP_OPTIONS: dict[str, Any] = {
    "base_url": split_urls,
    "model": str,
    "api_key": str,
    "timeout_s": float,
    "max_retries": int,
    "request_budget_s": float,
    "backoff_s": float,
    "max_backoff_s": float,
    "max_connections": int,
    "probe_after_s": float,
    "constraint": str,
    "retry_seed": int,
    "context_tokens": int,
    "supports_tools": bool,
    "logprobs": bool,
    "top_logprobs": int,
}
RENAMED_OPTIONS = {"concurrency": "max_connections"}
"""HTTP options that changed name: the old name is refused with the new one in the message."""
EMBEDDED_OPTIONS = {"model_path": str, "context_tokens": int, "n_threads": int, "slots": int, "weights": str}
TRANSFORMERS_OPTIONS = {"model": str, "context_tokens": int, "device": str, "share_prefix": bool}
_MINIMUMS = {
    "max_retries": 0,
    "backoff_s": 0,
    "max_backoff_s": 0,
    "max_connections": 1,
    "probe_after_s": 0,
    "request_budget_s": 0,
    "top_logprobs": 0,
    "retry_seed": 0,
    "context_tokens": 1,
    "n_threads": 1,
    "slots": 1,
}
BACKEND_PARAMETERS = (
    Parameter(
        "backend",
        str,
        choices=BACKENDS,
        help="http, embedded (the default without base_url), or transformers (model=CHECKPOINT_FOLDER)",
    ),
    Parameter("timeout_s", float, minimum=0, exclusive_minimum=True),
    *(
        Parameter(name, kind, minimum=_MINIMUMS.get(name))
        for name, kind in {**HTTP_OPTIONS, **EMBEDDED_OPTIONS, **TRANSFORMERS_OPTIONS}.items()
        if name != "timeout_s"
    ),
)
"""Every option :func:`make_backend` reads, with its type and range (declared for early checks)."""


def _typed(options: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    typed = {}
    for key, kind in schema.items():
        if key in options and options[key] is not None:
            value = options.pop(key)
            try:
                typed[key] = parse_bool(value) if kind is bool else kind(value)
            except (TypeError, ValueError):
                raise ConfigError(f"backend option {key}={value!r} must be {kind.__name__}") from None
    return typed


def make_backend(options: dict[str, Any]) -> ChatBackend:
    """Build the backend the options ask for, removing the options it consumes from ``options``."""
    kind = options.pop("backend", None)
    if kind is None:
        kind = "http" if options.get("base_url") or os.environ.get("GATHER_BASE_URL") else "embedded"
    if kind not in BACKENDS:
        raise ConfigError(f"unknown backend {kind!r}; choose one of {BACKENDS}")
    if kind == "http":
        from gather_envs.agents.backends.openai_http import DEFAULT_MAX_CONNECTIONS, OpenAIHTTPBackend

        for old, new in RENAMED_OPTIONS.items():
            if old in options:
                raise ConfigError(
                    f"the HTTP backend option {old} is now {new}: open connections per endpoint "
                    f"(default {DEFAULT_MAX_CONNECTIONS}); the runner's --concurrency sets how many "
                    "episodes run at once"
                )

        return OpenAIHTTPBackend(**_typed(options, HTTP_OPTIONS))
    if kind == "transformers":
        from gather_envs.agents.backends.transformers_local import TransformersBackend

        return TransformersBackend(**_typed(options, TRANSFORMERS_OPTIONS))
    from gather_envs.agents.backends.llama_embedded import LlamaEmbeddedBackend

    if "model" in options:  # the embedded backend's model is a GGUF path
        options.setdefault("model_path", options.pop("model"))
    return LlamaEmbeddedBackend(**_typed(options, EMBEDDED_OPTIONS))


__all__ = [
    "BACKENDS",
    "BatchChatBackend",
    "ChatBackend",
    "ChatResult",
    "Message",
    "Sampling",
    "TokenLogprob",
    "ToolCall",
    "episode_backend",
    "make_backend",
    "parse_bool",
    "split_urls",
]
