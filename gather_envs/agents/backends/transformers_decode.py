"""Batched decoding for the transformers backend: one KV cache, each row stopping on its own.

:func:`decode` prefills each prompt alone, reusing the longest token prefix it shares with a
recent prompt (:class:`KVStore`: the system prompt and worked examples every episode shows, and
the episode's own previous prompt, which the next one extends), so neither padding nor a shared
prefix is computed again. The prompts' caches are then left-padded into one batch cache (the gaps
masked) and the rows still running decode one token per step together. A row ends at an
end-of-sequence token, at its own ``max_tokens``, or when one of its own stop strings appears in
its decoded text; finished rows leave the batch.

Each row samples with its own ``torch.Generator`` seeded from its ``Sampling.seed``
(temperature, then top-p, as transformers' ``generate`` does; argmax at temperature 0), so a
row's random draws do not depend on the other rows. Its logits can, by float rounding: the batch's
shape, its padding and a reused prefix change the order of the sums (see the backend's docstring
for what is reproducible).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gather_envs.agents.backends.base import ChatResult, Sampling
from gather_envs.optional import require

EXTRA = "trl"
FINISH_STOP, FINISH_LENGTH = "stop", "length"
MIN_SHARED_TOKENS = 16
"""A stored prompt is reused when it shares at least this many leading tokens with a new one."""
KV_STORE_TOKENS = 40_000
"""Prompt tokens whose KV caches a backend keeps (SmolLM2-135M in fp32: 46 KB a token, 1.8 GB in all)."""
COMPACT_SHARE = 0.75
"""Finished rows leave the batch (a copy of its cache) once at most this share of it is still running."""


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


def cache_argument(model: Any) -> str:
    """The name ``forward`` takes the KV cache under (``cache`` from transformers 5.25, before that
    ``past_key_values``)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def batch_cache(transformers: Any, model: Any, capacity: int) -> Any:
    """An empty KV cache whose layers hold up to ``capacity`` tokens a row without copying per step."""
    cache = transformers.DynamicCache(config=model.config)
    layer = _preallocated_layer(transformers)
    cache.layers = [layer(capacity) for _ in cache.layers]
    return cache


@dataclass(frozen=True)
class Stored:
    """A prompt's KV cache: its token ids and (keys, values) per layer, batch size 1."""

    ids: tuple[int, ...]
    layers: tuple[tuple[Any, Any], ...]


def common_length(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """How many leading tokens ``a`` and ``b`` share (tuple slices compare in C)."""
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    while low < high:  # the longest equal prefix, by bisection
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


class KVStore:
    """The KV caches of recent prompts, so a prompt computes only what no stored prompt shares with it.

    The act agent's prompts share their system prompt and worked examples (390 of 471 tokens on a
    first turn), and an episode's next prompt extends its last one: a new prompt reuses the longest
    common token prefix with any stored prompt and runs only the rest through the model. The least
    recently used prompts go once more than ``max_tokens`` tokens are stored.
    """

    def __init__(self, max_tokens: int = KV_STORE_TOKENS) -> None:
        self.max_tokens = max_tokens
        self.reused_tokens = 0
        """Prompt tokens whose KV came from the store instead of the model (a running total)."""
        self.computed_tokens = 0
        """Prompt tokens the model ran (a running total)."""
        self._items: list[Stored] = []

    def longest(self, ids: tuple[int, ...]) -> tuple[Stored | None, int]:
        """The stored prompt sharing the most leading tokens with ``ids`` (at least one left to run)."""
        best, shared = None, 0
        for item in self._items:
            length = min(common_length(item.ids, ids), len(ids) - 1)
            if length > shared:
                best, shared = item, length
        if best is not None:
            self._items.remove(best)
            self._items.append(best)
        return (best, shared) if shared >= MIN_SHARED_TOKENS else (None, 0)

    def add(self, item: Stored) -> None:
        self._items.append(item)
        total = sum(len(stored.ids) for stored in self._items)
        while total > self.max_tokens and len(self._items) > 1:
            total -= len(self._items.pop(0).ids)


def prefill_row(model: Any, ids: Sequence[int], device: str, store: KVStore | None) -> tuple[Any, Any]:
    """One prompt's KV cache layers and last logits, reusing (and then adding to) ``store``."""
    torch = require("torch", EXTRA, what="the transformers backend")
    transformers = require("transformers", EXTRA, what="the transformers backend")
    key = tuple(ids)
    stored, shared = store.longest(key) if store is not None else (None, 0)
    cache = batch_cache(transformers, model, len(key))
    if stored is not None:
        for layer, (keys, values) in zip(cache.layers, stored.layers):
            layer.update(keys[..., :shared, :], values[..., :shared, :])
    logits = model(
        input_ids=torch.tensor([key[shared:]], device=device),
        position_ids=torch.arange(shared, len(key), device=device)[None],
        use_cache=True,
        logits_to_keep=1,
        **{cache_argument(model): cache},
    ).logits[0, -1, :]
    layers = tuple((layer.keys, layer.values) for layer in cache.layers)
    if store is not None:
        store.add(Stored(key, layers))
        store.reused_tokens += shared
        store.computed_tokens += len(key) - shared
    return layers, logits


def decode(
    model: Any, tokenizer: Any, rows: Sequence[Row], device: str, store: KVStore | None = None
) -> list[ChatResult]:
    """The completions of ``rows`` (in order), decoded as one batch (call under ``torch.no_grad``).

    Each prompt is prefilled alone (no padding runs through the model), reusing what ``store``
    holds; the prompts' caches are then left-padded into one batch cache (the gaps masked) and
    decoded together.
    """
    torch = require("torch", EXTRA, what="the transformers backend")
    transformers = require("transformers", EXTRA, what="the transformers backend")
    eos = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0)
    width = max(len(row.ids) for row in rows)
    prefilled = [prefill_row(model, row.ids, device, store) for row in rows]
    cache = batch_cache(transformers, model, width + max(row.max_new for row in rows))
    for index, layer in enumerate(cache.layers):
        batch = []
        for part in (0, 1):  # keys, then values: each row's right-aligned, zeros (masked) before it
            first = prefilled[0][0][index][part]
            padded = first.new_zeros((len(rows), first.shape[1], width, first.shape[3]))
            for j, (layers, _) in enumerate(prefilled):
                states = layers[index][part]
                padded[j, :, width - states.shape[-2] :, :] = states[0]
            batch.append(padded)
        layer.update(batch[0], batch[1])
    logits = torch.stack([row_logits for _, row_logits in prefilled])
    mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in rows], device=device)
    cache_kwarg = cache_argument(model)
    streams = [generator(torch, row.sampling.seed, device) for row in rows]
    tokens: list[list[int]] = [[] for _ in rows]
    texts = [""] * len(rows)
    finish = [""] * len(rows)
    slots = list(range(len(rows)))  # batch position j holds row slots[j] (finished rows idle in it)
    last = torch.tensor([len(row.ids) - 1 for row in rows], device=device)
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
