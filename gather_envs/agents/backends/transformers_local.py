"""A local Hugging Face transformers checkpoint as a chat backend (a GRPO or SFT run's output).

``gather-envs eval`` plays a trained checkpoint with the same prompts, dialect and observation
wrappers as any other agent: ``--agent-option backend=transformers --agent-option model=FOLDER``
(or the factories of :mod:`gather_envs.integrations.transformers_agent`, which default to the
converted SmolLM2-135M). transformers and torch are optional (the ``trl`` extra), imported when a
backend is built. Loaded models are shared per process (one per folder and device); calls into
one model are serialized with a lock. Grammars, regexes and native tool calls are not applied.

It is a :class:`~gather_envs.agents.backends.base.BatchChatBackend`: ``chat_batch`` decodes many
requests together (:mod:`.transformers_decode`), and the LLM agents put it behind the
micro-batcher, so the runner's concurrent episodes share batches; ``chat`` is a batch of one.

What is reproducible: each request samples with its own ``torch.Generator`` seeded from
``Sampling.seed`` (temperature, then top-p; argmax at temperature 0), so its random draws do not
depend on the rest of its batch. Its logits may, by float rounding only (the batch's shape, its
padding and a prefix reused from an earlier prompt change the order of the sums): a token differs only on a near tie (temperature 0)
or a draw within rounding of a boundary. The tests find the same tokens alone and batched, greedy
and sampled, and the same records with 8 episodes in flight as with 1. One at a time (concurrency
1) on the same machine, torch build, device and settings, a fresh rerun is bit-identical (the same
calls in the same order reuse the same prefixes); with more in flight (batch membership depends on
thread timing) or on resume, reruns agree up to that rounding. Sampled
tokens are not those of
the earlier ``generate()`` path for the same seed (its global seed and its own sampler).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from gather_envs.agents.backends.base import ChatResult, Message, Sampling
from gather_envs.agents.backends.batching import chat_alone
from gather_envs.agents.backends.transformers_decode import KVStore, Row, decode
from gather_envs.errors import BackendError, ConfigError
from gather_envs.optional import require

EXTRA = "trl"
DEFAULT_CONTEXT_TOKENS = 2048
DEFAULT_DEVICE = "cpu"

_MODELS: dict[tuple[str, str], tuple[Any, Any, threading.Lock]] = {}
_REGISTRY_LOCK = threading.Lock()


def _load(path: str, device: str) -> tuple[Any, Any, threading.Lock]:
    """The (model, tokenizer, lock) of a checkpoint, loaded once per process and device."""
    key = (str(Path(path).resolve()), device)
    with _REGISTRY_LOCK:
        if key not in _MODELS:
            transformers = require("transformers", EXTRA, what="the transformers backend")
            tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            model = transformers.AutoModelForCausalLM.from_pretrained(path).to(device)
            model.eval()
            _MODELS[key] = (model, tokenizer, threading.Lock())
        return _MODELS[key]


class TransformersBackend:
    """A ChatBackend over a local transformers checkpoint (greedy at temperature 0)."""

    supports_tools = False

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        device: str = DEFAULT_DEVICE,
        share_prefix: bool = True,
    ) -> None:
        if not model:
            raise ConfigError(
                "the transformers backend needs model=FOLDER (a checkpoint folder); the converted "
                "SmolLM2-135M is gather_envs.integrations.models.smollm2_checkpoint()"
            )
        if context_tokens < 1:
            raise ConfigError(f"context_tokens must be >= 1, got {context_tokens}")
        self.model_path = str(model)
        self.context_tokens = int(context_tokens)
        self.device = device
        self.share_prefix = bool(share_prefix)
        self.kv_store = KVStore() if self.share_prefix else None
        """The KV caches of recent prompts (None with ``share_prefix=False``)."""
        self._model, self._tokenizer, self._lock = _load(self.model_path, device)

    def _prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        ids = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        if hasattr(ids, "input_ids") or isinstance(ids, dict):
            ids = ids["input_ids"]
        return [int(x) for x in ids]

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Exact prompt size under the checkpoint's chat template."""
        return len(self._prompt_ids(messages))

    def chat(self, messages: Sequence[Message], sampling: Sampling) -> ChatResult:
        """One sampled reply: a batch of one (grammar and tools are not applied)."""
        return chat_alone(self, messages, sampling)

    def chat_batch(
        self, requests: Sequence[tuple[Sequence[Message], Sampling]]
    ) -> list[ChatResult | BackendError]:
        """One reply per request, decoded together; a request that cannot run gets its own BackendError.

        A prompt that leaves no room in ``context_tokens`` fails alone. If the batched forward
        pass itself fails (out of memory, a kernel error), each request is retried alone, so only
        the ones that fail alone get an error.
        """
        torch = require("torch", EXTRA, what="the transformers backend")
        out: list[ChatResult | BackendError | None] = [None] * len(requests)
        rows: list[Row] = []
        for index, (messages, sampling) in enumerate(requests):
            try:
                ids = self._prompt_ids(messages)
            except Exception as error:  # a chat template that refuses these messages
                out[index] = BackendError(f"the chat template of {self.model_path} failed: {error}")
                continue
            room = self.context_tokens - len(ids)
            if room < 1:
                out[index] = BackendError(
                    f"the prompt takes {len(ids)} tokens and leaves no room to reply in a context of "
                    f"{self.context_tokens} tokens (context_tokens)"
                )
                continue
            rows.append(Row(index, ids, sampling, min(sampling.max_tokens, room)))
        with self._lock, torch.no_grad():
            for row, result in zip(rows, self._decode_or_split(rows)):
                out[row.index] = result
        return cast("list[ChatResult | BackendError]", out)  # every entry is filled by now

    def _decode_or_split(self, rows: list[Row]) -> list[ChatResult | BackendError]:
        """The rows decoded together, or one at a time when the batch fails as a whole."""
        if not rows:
            return []
        try:
            results: list[ChatResult | BackendError] = list(
                decode(self._model, self._tokenizer, rows, self.device, self.kv_store)
            )
            return results
        except (RuntimeError, ValueError, IndexError) as error:
            if len(rows) == 1:
                return [BackendError(f"transformers failed on {self.model_path}: {error}")]
        return [result for row in rows for result in self._decode_or_split([row])]

    def settings(self) -> dict[str, Any]:
        """What reruns this backend: the checkpoint, context size and device."""
        return {
            "backend": "transformers",
            "model": self.model_path,
            "context_tokens": self.context_tokens,
            "device": self.device,
            **({} if self.share_prefix else {"share_prefix": False}),  # absent by default, as before
        }
