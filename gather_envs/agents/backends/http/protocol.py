"""OpenAI chat-completions JSON: the request body, and the parse of an answer into a ChatResult.

Constrained decoding (``constraint``), so small models emit valid actions:

- ``"llama.cpp"`` (default): the GBNF grammar goes in the request's ``grammar`` field
  (llama.cpp's ``llama-server`` and ``python -m llama_cpp.server``);
- ``"vllm"``: ``{"structured_outputs": {"regex": ...}}`` (vLLM >= 0.10.2; the grammar is sent as
  ``{"grammar": ...}`` when no regex is given);
- ``"vllm-legacy"``: ``guided_regex`` / ``guided_grammar`` (vLLM before 0.12, where they were removed);
- ``"none"``: no constraint (OpenAI, Ollama's OpenAI endpoint and most hosted APIs).

Any answer that is not a completion (a string where an object belongs, no choices...) is
:class:`~gather_envs.agents.backends.http.errors.Retryable`. Every text the server returns has the
API key scrubbed, even a completion.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from gather_envs.agents.backends.base import (
    ChatResult,
    Message,
    Sampling,
    TokenLogprob,
    ToolCall,
    redact,
    usage_from,
)
from gather_envs.agents.backends.http.errors import Retryable
from gather_envs.errors import BackendError

CONSTRAINTS = ("llama.cpp", "vllm", "vllm-legacy", "none")


def constraint_fields(constraint: str, grammar: str | None, regex: str | None) -> dict[str, Any]:
    """The request fields that carry ``grammar`` or ``regex`` to a server of kind ``constraint``.

    >>> constraint_fields("vllm", 'root ::= "x"', "x")
    {'structured_outputs': {'regex': 'x'}}
    """
    if constraint == "llama.cpp" and grammar:
        return {"grammar": grammar}
    if constraint == "vllm" and (regex or grammar):
        return {"structured_outputs": {"regex": regex} if regex else {"grammar": grammar}}
    if constraint == "vllm-legacy" and (regex or grammar):
        return {"guided_regex": regex} if regex else {"guided_grammar": grammar}
    return {}


def completion_request(
    model: str,
    messages: Sequence[Message],
    sampling: Sampling,
    *,
    constraint: str,
    tools: bool,
    top_logprobs: int | None,
    extra_body: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON body of one chat-completions request; ``top_logprobs`` None asks for no logprobs."""
    payload: dict[str, Any] = {
        "model": model,
        "messages": list(messages),
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "n": 1,
    }
    if sampling.seed is not None:
        payload["seed"] = sampling.seed
    if sampling.stop:
        payload["stop"] = list(sampling.stop)
    if sampling.tools and tools:
        payload["tools"] = list(sampling.tools)
    if top_logprobs is not None:
        payload["logprobs"] = True
        if top_logprobs:
            payload["top_logprobs"] = top_logprobs
    payload.update(constraint_fields(constraint, sampling.grammar, sampling.regex))
    payload.update(extra_body)
    return payload


def malformed(what: str) -> Retryable:
    """The failure of an answer that is JSON but not a completion."""
    return Retryable(f"malformed completion: {what}")


def parse_models(document: Any, secret: str | None = None) -> list[str]:
    """The model ids of a ``GET /models`` answer."""
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or not all(isinstance(item, dict) and "id" in item for item in data):
        raise Retryable("malformed /models response: no data[].id")
    models = [str(item["id"]) for item in data]
    if not models:
        raise BackendError("the server lists no models; pass model=... explicitly")
    return models


def parse_completion(document: Any, secret: str | None = None) -> ChatResult:
    """A ChatResult from a chat-completions JSON body; any other shape is retried (Retryable).

    Every text the server returns has ``secret`` (the API key) scrubbed, even a completion.
    """
    choices = document.get("choices") if isinstance(document, dict) else None
    if not isinstance(choices, list) or not choices:
        raise malformed("no choices[0]")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise malformed(f"choices[0].message is {type(message).__name__}, not an object")
    content = message.get("content")
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        if not all(isinstance(part, dict) and isinstance(part.get("text", ""), str) for part in content):
            raise malformed("choices[0].message.content parts are not text")
        content = "".join(part.get("text", "") for part in content)
    if content is not None and not isinstance(content, str):
        raise malformed(f"choices[0].message.content is {type(content).__name__}, not a string")
    raw_calls = message.get("tool_calls")
    if raw_calls is not None and not isinstance(raw_calls, list):
        raise malformed(f"choices[0].message.tool_calls is {type(raw_calls).__name__}, not a list")
    calls = []
    for number, call in enumerate(raw_calls or ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name", ""), str):
            raise malformed(f"tool_calls[{number}] has no function object with a string name")
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            try:
                arguments = json.dumps(arguments)
            except (ValueError, RecursionError):
                raise malformed(f"tool_calls[{number}].function.arguments cannot be encoded") from None
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


def parse_completion_with_logprobs(document: Any, secret: str | None = None) -> ChatResult:
    """:func:`parse_completion` plus ``choices[0].logprobs.content`` (the OpenAI format)."""
    result = parse_completion(document, secret)
    raw = document["choices"][0].get("logprobs")
    content = raw.get("content") if isinstance(raw, dict) else None
    if content is None:
        raise BackendError(
            "logprobs were asked for but the server returned none (choices[0].logprobs.content is "
            "missing); use a server that returns them (vLLM, llama.cpp's llama-server) or drop logprobs=true"
        )
    if not isinstance(content, list):
        raise malformed(f"choices[0].logprobs.content is {type(content).__name__}, not a list")
    tokens = []
    for number, entry in enumerate(content):
        token, logprob = _token_logprob(entry, f"logprobs.content[{number}]", secret)
        alternatives = entry.get("top_logprobs") or []
        if not isinstance(alternatives, list):
            raise malformed(f"logprobs.content[{number}].top_logprobs is not a list")
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
        raise malformed(f"{where} has no string token and numeric logprob")
    return redact(token, [secret], credentials=False), float(logprob) if math.isfinite(logprob) else None
