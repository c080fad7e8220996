"""Batched decoding for the transformers backend: left padding, one KV cache, each row stopping on its own.

:func:`decode` runs the prompts of a batch through the model once (prefill, left-padded, with an
attention mask and position ids that start at each row's first real token), then decodes one
token per step for the rows still running, with the KV cache (``past_key_values``). A row ends
at an end-of-sequence token, at its own ``max_tokens``, or when one of its own stop strings
appears in its decoded text; it is then dropped from the batch and its cache rows freed.

Each row samples with its own ``torch.Generator`` seeded from its ``Sampling.seed``
(temperature, then top-p, as transformers' ``generate`` does; argmax at temperature 0), so a
row's random draws do not depend on the other rows. Its logits can: padding and batch shape
change how the matrix products round (see the backend's docstring for what is reproducible).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from os.path import commonprefix
from typing import Any

from gather_envs.agents.backends.base import ChatResult, Sampling
from gather_envs.optional import require

EXTRA = "trl"
FINISH_STOP, FINISH_LENGTH = "stop", "length"
MIN_SHARED_TOKENS = 32
"""A batch's common prompt prefix is computed once when it is at least this many tokens longer than
a stored one (the act agent's system prompt and worked examples: 390 tokens of a 471-token first prompt)."""
PREFIX_SLOTS = 4
COMPACT_SHARE = 0.75
"""Finished rows leave the batch (a copy of its cache) once at most this share of it is still running."""
"""Prefixes kept per backend (SmolLM2-135M: 46 KB of KV cache per token, 18 MB for 390 tokens)."""


@dataclass(frozen=True)
class Row:
    """One request of a batch: its index in the batch, prompt token ids, sampling and token limit."""

    index: int
    ids: list[int]
    sampling: Sampling
    max_new: int


def stop_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The end-of-sequence ids ``generate`` stops at: the generation config's and the tokenizer's."""
    found: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, (list, tuple)):
            found.update(int(v) for v in value)
    return frozenset(found)


def generator(torch: Any, seed: int | None, device: str) -> Any:
    """A random stream of its own for one row: seeded when ``seed`` is given, else from the OS."""
    stream = torch.Generator(device=device)
    if seed is None:
        stream.seed()
    else:
        stream.manual_seed(int(seed))
    return stream


def next_token(torch: Any, logits: Any, sampling: Sampling, stream: Any) -> int:
    """One token from a row's last logits: argmax at temperature 0, else temperature and top-p sampling."""
    if sampling.temperature <= 0:
        return int(torch.argmax(logits))
    scores = logits.float() / sampling.temperature
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(scores)  # ascending, as transformers' TopPLogitsWarper
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= 1 - sampling.top_p
        drop[-1] = False  # the most likely token always stays
        scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    probs = scores.softmax(dim=-1)
    return int(torch.multinomial(probs, 1, generator=stream))


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    cuts = [text.index(stop) for stop in stops if stop and stop in text]
    return min(cuts) if cuts else None


@functools.cache
def _preallocated_layer(transformers: Any) -> type:
    """A ``DynamicLayer`` that writes into a buffer sized once per batch, instead of a copy per step.

    transformers' own layer concatenates the whole cache with each new token: at 16 rows and 300
    cached tokens that copy was a quarter of a decode step on this CPU.
    """

    class PreallocatedLayer(transformers.cache_utils.DynamicLayer):
        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity = capacity
            self.buffers: tuple[Any, Any] | None = None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            old = 0 if self.buffers is None else self.keys.shape[-2]
            new = old + key_states.shape[-2]
            if self.buffers is None or new > self.buffers[0].shape[-2]:
                grown = []
                for states, kept in ((key_states, self.keys), (value_states, self.values)):
                    buffer = states.new_empty((*states.shape[:2], max(new, self.capacity), states.shape[3]))
                    if old:
                        buffer[..., :old, :] = kept
                    grown.append(buffer)
                self.buffers = (grown[0], grown[1])
            keys, values = self.buffers
            keys[..., old:new, :] = key_states
            values[..., old:new, :] = value_states
            self.keys, self.values = keys[..., :new, :], values[..., :new, :]
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            if self.buffers is not None:
                length = self.keys.shape[-2]
                self.buffers = (self.buffers[0][indices], self.buffers[1][indices])
                self.keys, self.values = self.buffers[0][..., :length, :], self.buffers[1][..., :length, :]

    return PreallocatedLayer


def batch_cache(transformers: Any, model: Any, capacity: int, prefix: Prefix | None, rows: int) -> Any:
    """An empty KV cache for ``rows`` rows of up to ``capacity`` tokens, holding ``prefix`` when given."""
    cache = transformers.DynamicCache(config=model.config)
    layer = _preallocated_layer(transformers)
    cache.layers = [layer(capacity) for _ in cache.layers]
    if prefix is not None:
        for target, (keys, values) in zip(cache.layers, prefix.layers):
            target.update(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1))
    return cache


@dataclass(frozen=True)
class Prefix:
    """The KV cache of a token prefix that many prompts share (the system prompt and worked examples)."""

    ids: tuple[int, ...]
    layers: tuple[tuple[Any, Any], ...]  # (keys, values) per layer, batch size 1


def cache_argument(model: Any) -> str:
    """The name ``forward`` takes the KV cache under (``cache`` from transformers 5.25, before that
    ``past_key_values``)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def prefix_cache(model: Any, ids: Sequence[int], device: str) -> Prefix:
    """Run ``ids`` through the model alone and keep its KV cache (call under ``torch.no_grad``)."""
    torch = require("torch", EXTRA, what="the transformers backend")
    transformers = require("transformers", EXTRA, what="the transformers backend")
    cache = transformers.DynamicCache(config=model.config)
    model(
        input_ids=torch.tensor([list(ids)], device=device),
        use_cache=True,
        logits_to_keep=1,
        **{cache_argument(model): cache},
    )
    return Prefix(tuple(ids), tuple((layer.keys, layer.values) for layer in cache.layers))


class PrefixStore:
    """The KV caches of the last few token prefixes that whole batches shared, newest last.

    A batch of two or more prompts whose common prefix is at least ``min_tokens`` longer than any
    stored one that fits computes that prefix once and stores it; any batch (one prompt included)
    reuses the longest stored prefix that all its prompts extend.
    """

    def __init__(self, slots: int = PREFIX_SLOTS, min_tokens: int = MIN_SHARED_TOKENS) -> None:
        self.slots = slots
        self.min_tokens = min_tokens
        self._items: list[Prefix] = []

    def for_batch(self, model: Any, prompts: Sequence[Sequence[int]], device: str) -> Prefix | None:
        """The prefix to reuse for these prompts (computed and stored when worth it), or None."""
        common = tuple(commonprefix([list(ids) for ids in prompts]))[: min(len(ids) for ids in prompts) - 1]
        fitting = [p for p in self._items if len(p.ids) <= len(common) and common[: len(p.ids)] == p.ids]
        best = max(fitting, key=lambda p: len(p.ids), default=None)
        known = len(best.ids) if best is not None else 0
        if len(prompts) >= 2 and len(common) - known >= self.min_tokens:
            best = prefix_cache(model, common, device)
        if best is not None:
            self._items = [p for p in self._items if p is not best][-(self.slots - 1) :] + [best]
        return best


def decode(
    model: Any, tokenizer: Any, rows: Sequence[Row], device: str, prefix: Prefix | None = None
) -> list[ChatResult]:
    """The completions of ``rows`` (in order), decoded as one batch (call under ``torch.no_grad``).

    With ``prefix`` (which every row's ids must start with, and extend), only the rest of each
    prompt is computed: the batch is laid out as [prefix][padding][rest of the prompt].
    """
    torch = require("torch", EXTRA, what="the transformers backend")
    transformers = require("transformers", EXTRA, what="the transformers backend")
    eos = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0)
    shared = len(prefix.ids) if prefix is not None else 0
    rests = [row.ids[shared:] for row in rows]
    width = max(len(rest) for rest in rests)
    input_ids = torch.tensor([[pad] * (width - len(rest)) + rest for rest in rests], device=device)
    real = torch.tensor([[0] * (width - len(rest)) + [1] * len(rest) for rest in rests], device=device)
    positions = shared + (real.cumsum(-1) - 1).clamp(min=0)
    mask = torch.cat([real.new_ones((len(rows), shared)), real], dim=-1)
    capacity = shared + width + max(row.max_new for row in rows)
    cache = batch_cache(transformers, model, capacity, prefix, len(rows))
    cache_kwarg = cache_argument(model)
    logits = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **{cache_kwarg: cache},
    ).logits[:, -1, :]
    streams = [generator(torch, row.sampling.seed, device) for row in rows]
    tokens: list[list[int]] = [[] for _ in rows]
    texts = [""] * len(rows)
    finish = [""] * len(rows)
    slots = list(range(len(rows)))  # batch position j holds row slots[j] (finished rows idle in it)
    last = positions[:, -1]
    while True:
        step: list[int] = []
        for j, r in enumerate(slots):
            row = rows[r]
            if finish[r]:
                step.append(pad)  # an idle row until the batch is compacted; its output is ignored
                continue
            token = next_token(torch, logits[j], row.sampling, streams[r])
            tokens[r].append(token)
            step.append(token)
            if row.sampling.stop:
                texts[r] = tokenizer.decode(tokens[r], skip_special_tokens=True)
            if token in eos or (row.sampling.stop and _first_stop(texts[r], row.sampling.stop) is not None):
                finish[r] = FINISH_STOP
            elif len(tokens[r]) >= row.max_new:
                finish[r] = FINISH_LENGTH
        keep = [j for j, r in enumerate(slots) if not finish[r]]
        if not keep:
            break
        if len(keep) <= COMPACT_SHARE * len(slots):
            chosen = torch.tensor(keep, device=device)
            cache.batch_select_indices(chosen)
            mask, last = mask[chosen], last[chosen]
            step = [step[j] for j in keep]
            slots = [slots[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones((len(slots), 1))], dim=-1)
        last = last + 1
        logits = model(
            input_ids=torch.tensor(step, device=device)[:, None],
            attention_mask=mask,
            position_ids=last[:, None],
            use_cache=True,
            **{cache_kwarg: cache},
        ).logits[:, -1, :]
    return [_result(tokenizer, row, tokens[r], finish[r]) for r, row in enumerate(rows)]


def _result(tokenizer: Any, row: Row, tokens: list[int], finish: str) -> ChatResult:
    """A row's ChatResult: its text cut at the first stop string, and its token counts."""
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    cut = _first_stop(text, row.sampling.stop)
    if cut is not None:
        text, finish = text[:cut], FINISH_STOP
    usage = {
        "prompt_tokens": len(row.ids),
        "completion_tokens": len(tokens),
        "total_tokens": len(row.ids) + len(tokens),
    }
    return ChatResult(text=text, usage=usage, finish_reason=finish)
