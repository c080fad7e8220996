"""A local Hugging Face transformers checkpoint as a chat backend (a GRPO or SFT run's output).

``gather-envs eval`` plays a trained checkpoint with the same prompts, dialect and observation
wrappers as any other agent: ``--agent-option backend=transformers --agent-option model=FOLDER``
(or the factories of :mod:`gather_envs.integrations.transformers_agent`, which default to the
converted SmolLM2-135M). transformers and torch are optional (the ``trl`` extra), imported when a
backend is built. Loaded models are shared per process (one per folder and device); calls into
one model are serialized with a lock, and sampling is seeded per call. Grammars, regexes and
native tool calls are not applied.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gather_envs.agents.backends.base import ChatResult, Message, Sampling
from gather_envs.errors import ConfigError
from gather_envs.optional import require

EXTRA = "trl"
DEFAULT_CONTEXT_TOKENS = 2048
DEFAULT_DEVICE = "cpu"
FINISH_STOP, FINISH_LENGTH = "stop", "length"

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
        """One sampled reply, cut at the first stop string (grammar and tools are not applied)."""
        torch = require("torch", EXTRA, what="the transformers backend")
        ids = self._prompt_ids(messages)
        sample = sampling.temperature > 0
        with self._lock, torch.no_grad():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            output = self._model.generate(
                input_ids=torch.tensor([ids], device=self.device),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.device),
                max_new_tokens=sampling.max_tokens,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                top_k=None,
                pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
            )
        new = output[0, len(ids) :].tolist()
        text = self._tokenizer.decode(new, skip_special_tokens=True)
        finish = FINISH_STOP if new and new[-1] == self._tokenizer.eos_token_id else FINISH_LENGTH
        cuts = [text.index(s) for s in sampling.stop if s and s in text]
        if cuts:
            text, finish = text[: min(cuts)], FINISH_STOP
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(new), "total_tokens": len(ids) + len(new)}
        return ChatResult(text=text, usage=usage, finish_reason=finish)

    def settings(self) -> dict[str, Any]:
        """What reruns this backend: the checkpoint, context size and device."""
        return {
            "backend": "transformers",
            "model": self.model_path,
            "context_tokens": self.context_tokens,
            "device": self.device,
        }
