"""Evaluate a trained checkpoint: the LLM agents on a local Hugging Face transformers model.

A GRPO or SFT run saves a transformers checkpoint; ``gather-envs eval`` should play it with the
same prompts, dialect and observation wrappers as any other agent. This module supplies the
missing piece, a :class:`~gather_envs.agents.backends.ChatBackend` over a local checkpoint, and
agent factories for ``--agent``::

    gather-envs eval Gather-MultiHop-v0 --agent gather_envs.integrations.transformers_agent:react \\
        --agent-option model=runs/grpo/model --n 4 --budgets 1,3,5 --out runs/grpo.jsonl

Factories: ``react``, ``search_r1``, ``act``, ``direct`` (``tools`` needs native tool calls, which this
backend does not parse). Options: ``model`` (a checkpoint folder; default: the converted
SmolLM2-135M from :mod:`gather_envs.integrations.models`), ``context_tokens``, ``device``,
``agent_id`` (the name in records and reports; default the style's), plus the LLM agents' own
(``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``stop``). Sampling is seeded per call;
calls into one model are serialized with a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gather_envs.optional import require

EXTRA = "trl"
DEFAULT_CONTEXT_TOKENS = 2048
DEFAULT_DEVICE = "cpu"

_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}
_LOCK = threading.Lock()


def _load(path: str, device: str) -> tuple[Any, Any]:
    """The (model, tokenizer) of a checkpoint, loaded once per process and device."""
    key = (str(Path(path).resolve()), device)
    with _LOCK:
        if key not in _MODELS:
            transformers = require("transformers", EXTRA)
            tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            model = transformers.AutoModelForCausalLM.from_pretrained(path).to(device)
            model.eval()
            _MODELS[key] = (model, tokenizer)
        return _MODELS[key]


class TransformersBackend:
    """A ChatBackend over a local transformers checkpoint (greedy at temperature 0)."""

    supports_tools = False

    def __init__(
        self,
        model: str | None = None,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        device: str = DEFAULT_DEVICE,
    ) -> None:
        if model is None:
            from gather_envs.integrations.models import smollm2_checkpoint

            model = str(smollm2_checkpoint())
        self.model_path = str(model)
        self.context_tokens = int(context_tokens)
        self.device = device
        self._model, self._tokenizer = _load(self.model_path, device)
        self._lock = threading.Lock()

    def _prompt_ids(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        ids = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        if hasattr(ids, "input_ids") or isinstance(ids, dict):
            ids = ids["input_ids"]
        return [int(x) for x in ids]

    def count_tokens(self, messages: Sequence[dict[str, Any]]) -> int:
        """Exact prompt size under the checkpoint's chat template."""
        return len(self._prompt_ids(messages))

    def chat(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
        stop: Sequence[str] = (),
        grammar: str | None = None,
        regex: str | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Any:
        """One sampled reply, cut at the first stop string (grammar and tools are not applied)."""
        torch = require("torch", EXTRA)
        from gather_envs.agents.backends import ChatResult

        ids = self._prompt_ids(messages)
        sampling = temperature > 0
        with self._lock, torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            output = self._model.generate(
                input_ids=torch.tensor([ids], device=self.device),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.device),
                max_new_tokens=max_tokens,
                do_sample=sampling,
                temperature=temperature if sampling else None,
                top_p=top_p if sampling else None,
                top_k=None,
                pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
            )
        new = output[0, len(ids) :].tolist()
        text = self._tokenizer.decode(new, skip_special_tokens=True)
        finish = "stop" if new and new[-1] == self._tokenizer.eos_token_id else "length"
        cuts = [text.index(s) for s in stop if s and s in text]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        usage = {
            "prompt_tokens": len(ids),
            "completion_tokens": len(new),
            "total_tokens": len(ids) + len(new),
        }
        return ChatResult(text=text, usage=usage, finish_reason=finish)

    def settings(self) -> dict[str, Any]:
        """What reruns this backend: the checkpoint, context size and device."""
        return {
            "backend": "transformers",
            "model": self.model_path,
            "context_tokens": self.context_tokens,
            "device": self.device,
        }


def _agent(style_name: str, env: Any, **options: Any) -> Any:
    from gather_envs.agents.llm import STYLES, LLMAgent

    backend = TransformersBackend(
        options.pop("model", None),
        int(options.pop("context_tokens", DEFAULT_CONTEXT_TOKENS)),
        str(options.pop("device", DEFAULT_DEVICE)),
    )
    agent_id = options.pop("agent_id", None)
    options.setdefault("grammar", False)  # this backend cannot constrain decoding
    agent = LLMAgent(env, STYLES[style_name], chat_backend=backend, **options)
    if agent_id:
        agent.agent_id = str(agent_id)  # tells runs of one style on different checkpoints apart
    return agent


def react(env: Any, **options: Any) -> Any:
    """The react agent (``search[...]``) on a transformers checkpoint."""
    return _agent("react", env, **options)


def search_r1(env: Any, **options: Any) -> Any:
    """The Search-R1 agent (``<search>...</search>``) on a transformers checkpoint."""
    return _agent("search-r1", env, **options)


def act(env: Any, **options: Any) -> Any:
    """The act agent (one bare ``search[...]`` or ``answer[...]`` a turn, worked examples first)."""
    return _agent("act", env, **options)


def direct(env: Any, **options: Any) -> Any:
    """The closed-book agent on a transformers checkpoint."""
    return _agent("direct", env, **options)
