"""LLM backends: an OpenAI-compatible HTTP client and the embedded llama.cpp default.

:func:`make_backend` picks one from agent options: ``backend=http`` or a ``base_url`` option or
the ``GATHER_BASE_URL`` variable selects the HTTP client; otherwise the embedded SmolLM2 model.
"""

from __future__ import annotations

import os
from typing import Any

from gather_envs.agents.backends.base import ChatBackend, ChatResult, Message, ToolCall
from gather_envs.errors import ConfigError
from gather_envs.parameters import Parameter, parse_bool

BACKENDS = ("http", "embedded")
HTTP_OPTIONS = {
    "base_url": str,
    "model": str,
    "api_key": str,
    "timeout_s": float,
    "max_retries": int,
    "request_budget_s": float,
    "backoff_s": float,
    "max_backoff_s": float,
    "concurrency": int,
    "constraint": str,
    "retry_seed": int,
    "context_tokens": int,
    "supports_tools": bool,
}
EMBEDDED_OPTIONS = {"model_path": str, "context_tokens": int, "n_threads": int}
_MINIMUMS = {
    "max_retries": 0,
    "backoff_s": 0,
    "max_backoff_s": 0,
    "concurrency": 1,
    "retry_seed": 0,
    "context_tokens": 1,
    "n_threads": 1,
}
BACKEND_PARAMETERS = (
    Parameter("backend", str, choices=BACKENDS, help="http, or embedded (the default without base_url)"),
    Parameter("timeout_s", float, minimum=0, exclusive_minimum=True),
    *(
        Parameter(name, kind, minimum=_MINIMUMS.get(name))
        for name, kind in {**HTTP_OPTIONS, **EMBEDDED_OPTIONS}.items()
        if name != "timeout_s"
    ),
)
"""Every option :func:`make_backend` reads, with its type and range (declared for early checks)."""


def _typed(options: dict[str, Any], schema: dict[str, type]) -> dict[str, Any]:
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
        from gather_envs.agents.backends.openai_http import OpenAIHTTPBackend

        return OpenAIHTTPBackend(**_typed(options, HTTP_OPTIONS))
    from gather_envs.agents.backends.llama_embedded import LlamaEmbeddedBackend

    if "model" in options:  # the embedded backend's model is a GGUF path
        options.setdefault("model_path", options.pop("model"))
    return LlamaEmbeddedBackend(**_typed(options, EMBEDDED_OPTIONS))


__all__ = ["BACKENDS", "ChatBackend", "ChatResult", "Message", "ToolCall", "make_backend", "parse_bool"]
