"""Many chat completions at once on one llama.cpp model: one KV sequence per slot, prefixes kept.

The embedded backend's ``chat`` goes through ``Llama.create_chat_completion``, one completion at a
time. :class:`BatchDecoder` does what that call does for many requests together, on a second
llama.cpp context that holds ``slots`` sequences (``n_seq_max``), each in its own KV stream:

* every request's prompt is rendered by the model's own chat template and tokenized as
  ``create_chat_completion`` does, and sampled by the same sampler chain
  (``Llama._init_sampler``) with its own seed, grammar, stop strings and ``max_tokens``;
* each decode step sends one token of every generating sequence plus chunks of the prompts still
  to read, so generation is batched across sequences;
* a slot keeps its tokens' KV after a call. A request continues from the slot whose tokens share
  the longest prefix with its prompt: its own previous turn (a turn's prompt extends the last
  one), or a copy (``seq_cp``) of another slot holding the shared system prompt and examples.
  Prompt reading, which dominates on a CPU, is then paid once per new token.

At temperature 0 the tokens are the greedy ones, as in ``chat``; at temperature > 0 a request
with a seed draws from its own sampler seeded with it, so its text depends only on its prompt,
sampling options and seed, not on the other requests in the batch or on the call order. Whether
llama.cpp's logits are bit-identical across batch layouts is an empirical fact of the build: the
tests compare batched and one-at-a-time completions on the real model.
"""

from __future__ import annotations

import importlib
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gather_envs.agents.backends.base import ChatResult, Message, Sampling, usage_from
from gather_envs.errors import BackendError

# What ``Llama.create_chat_completion`` passes to the sampler when ``chat`` gives only
# temperature, top_p, max_tokens, seed, stop and grammar (its defaults in llama-cpp-python 0.3.36).
HANDLER_TOP_K = 40
HANDLER_MIN_P = 0.05
HANDLER_TYPICAL_P = 1.0
HANDLER_REPEAT_PENALTY = 1.0
SEED_RANGE = 2**32
SHARED_PREFIX_MIN_TOKENS = 32
"""A waiting prompt that shares this many more tokens with a prompt being read than with any
slot waits for that prompt to be read and copies it, rather than reading them again."""
UTF8_LEAD_PATTERNS = ((2, 192), (3, 224), (4, 240))  # (sequence length, lead-byte mask)
COUNTS = ("prompt_tokens_read", "prompt_tokens_cached", "generated_tokens_read", "decode_calls")
DEFAULT_TEMPLATE = "chat_template.default"
"""The chat format ``Llama`` picks for a GGUF with a template: the only one the decoder renders."""


@dataclass
class _Slot:
    """One KV sequence of the batch context: the tokens whose keys and values it holds."""

    tokens: list[int] = field(default_factory=list)
    last_used: int = -1
    busy: bool = False


@dataclass
class _Sequence:
    """One request being completed: its slot, the tokens still to decode and what it has produced."""

    index: int
    slot: int
    prompt: list[int]
    todo: list[int]
    sampler: Any
    max_tokens: int
    stop: list[bytes]
    completion: list[int] = field(default_factory=list)
    text: bytes = b""
    multibyte: int = 0
    finish_reason: str = ""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists.

    >>> common_prefix([1, 2, 3], [1, 2, 4, 5])
    2
    """
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class BatchDecoder:
    """Completes batches of chat requests on ``llm``'s model in a context of ``slots`` sequences.

    Not thread-safe: the backend calls it under the model's lock.
    """

    def __init__(self, llama_cpp: Any, llm: Any, *, slots: int, context_tokens: int, n_threads: int) -> None:
        internals = importlib.import_module("llama_cpp._internals")
        chat_format = importlib.import_module("llama_cpp.llama_chat_format")
        if llm.chat_format != DEFAULT_TEMPLATE:
            raise BackendError(
                f"batched decoding renders the GGUF's own chat template, but this model uses the "
                f"{llm.chat_format!r} chat format"
            )
        self._llama_cpp = llama_cpp
        self._llm = llm
        self.slots = int(slots)
        self.context_tokens = int(context_tokens)
        eos_id, bos_id = llm.token_eos(), llm.token_bos()
        eos_token = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
        bos_token = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
        self._formatter = chat_format.Jinja2ChatFormatter(
            template=llm.metadata["tokenizer.chat_template"],
            eos_token=eos_token,
            bos_token=bos_token,
            stop_token_ids=[eos_id],
        )
        params = llama_cpp.llama_context_default_params()
        for name, _ in llama_cpp.llama_context_params._fields_:
            setattr(params, name, getattr(llm.context_params, name))
        params.n_seq_max = self.slots
        params.n_ctx = self.context_tokens * self.slots
        params.kv_unified = False  # a stream per sequence: attention reads only its own tokens
        params.n_threads = params.n_threads_batch = int(n_threads)
        self._ctx = internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.n_batch = int(params.n_batch)
        self._batch = internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1, verbose=False)
        self._slots = [_Slot() for _ in range(self.slots)]
        self._calls = 0
        self.counts = dict.fromkeys(COUNTS, 0)
        """Totals since the decoder was built, for benchmarks: prompt tokens read and taken from
        the slots' KV, generated tokens read back, ``llama_decode`` calls."""

    def close(self) -> None:
        """Free the batch and the context (the model belongs to ``llm``)."""
        self._batch.close()
        self._ctx.close()

    def prompt_tokens(self, messages: Sequence[Message]) -> tuple[list[int], list[str]]:
        """The tokens ``create_chat_completion`` would read for ``messages``, and the template's stops."""
        plain = [{"role": m["role"], "content": str(m.get("content") or "")} for m in messages]
        rendered = self._formatter(messages=plain)
        tokens = self._llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        stops = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop] if rendered.stop else []
        return list(tokens), [str(stop) for stop in stops]

    def complete(self, requests: Sequence[tuple[Sequence[Message], Sampling, Any]]) -> list[ChatResult | BackendError]:
        """One result or BackendError per ``(messages, sampling, compiled grammar or None)``, in order."""
        self._calls += 1
        results: list[ChatResult | BackendError | None] = [None] * len(requests)
        waiting: deque[_Sequence] = deque()
        for index, (messages, sampling, grammar) in enumerate(requests):
            try:
                waiting.append(self._prepare(index, messages, sampling, grammar))
            except (BackendError, ValueError, RuntimeError) as error:
                results[index] = error if isinstance(error, BackendError) else self._error(error)
        active: list[_Sequence] = []
        while waiting or active:
            waiting = self._admit_waiting(waiting, active)
            batched = self._fill_batch(active)
            self.counts["decode_calls"] += 1
            try:
                self._ctx.decode(self._batch)
            except RuntimeError as error:  # the batch's sequences fail; their slots start empty
                for sequence, _ in batched:
                    results[sequence.index] = self._error(error)
                    self._release(sequence, keep=False)
                active = [s for s in active if results[s.index] is None]
                continue
            for sequence, logits_at in batched:
                if logits_at is not None and self._sample(sequence, logits_at):
                    results[sequence.index] = self._result(sequence)
                    self._release(sequence, keep=True)
            active = [s for s in active if results[s.index] is None]
        finished = [result for result in results if result is not None]
        assert len(finished) == len(requests), "every admitted sequence ends with a result"
        return finished

    def _error(self, error: Exception) -> BackendError:
        return BackendError(f"llama.cpp failed on {self._llm.model_path}: {error}")

    def _prepare(self, index: int, messages: Sequence[Message], sampling: Sampling, grammar: Any) -> _Sequence:
        """A request's tokens, limits and sampler, or the ValueError ``create_chat_completion`` raises."""
        prompt, template_stops = self.prompt_tokens(messages)
        if len(prompt) >= self.context_tokens:
            raise ValueError(f"Requested tokens ({len(prompt)}) exceed context window of {self.context_tokens}")
        max_tokens = sampling.max_tokens
        if max_tokens is None or max_tokens <= 0:
            max_tokens = self.context_tokens - len(prompt)
        max_tokens = min(max_tokens, self.context_tokens - len(prompt))
        llm = self._llm
        if sampling.seed is not None:
            llm.set_seed(sampling.seed)
        else:  # as create_chat_completion does without a seed: not reproducible
            llm.set_seed(random.Random(llm._seed).randint(0, SEED_RANGE))
        # The sampler chain chat() gets (penalties, grammar, then greedy or the seeded draw); a
        # private method of Llama, used so that both paths build the same chain.
        sampler = llm._init_sampler(
            top_k=HANDLER_TOP_K,
            top_p=sampling.top_p,
            min_p=HANDLER_MIN_P,
            typical_p=HANDLER_TYPICAL_P,
            temp=sampling.temperature,
            repeat_penalty=HANDLER_REPEAT_PENALTY,
            grammar=grammar,
        )
        stops = [stop.encode("utf-8") for stop in [*sampling.stop, *template_stops]]
        return _Sequence(index, -1, prompt, [], sampler, max_tokens, stops)

    def _admit_waiting(self, waiting: deque[_Sequence], active: list[_Sequence]) -> deque[_Sequence]:
        """Admit waiting sequences into free slots; returns those still waiting.

        A sequence whose prompt shares more with a prompt being read now than with any slot's
        tokens waits until that prompt is read, then copies it: the first turns of many episodes
        read the shared system prompt and examples once, not once each.
        """
        still: deque[_Sequence] = deque()
        for sequence in waiting:
            if all(slot.busy for slot in self._slots):
                still.append(sequence)
                continue
            cached = max(common_prefix(slot.tokens, sequence.prompt) for slot in self._slots)
            reading = [common_prefix(other.prompt, sequence.prompt) for other in active if len(other.todo) > 1]
            if reading and max(reading) >= cached + SHARED_PREFIX_MIN_TOKENS:
                still.append(sequence)
            else:
                active.append(self._admit(sequence))
        return still

    def _admit(self, sequence: _Sequence) -> _Sequence:
        """Give the sequence a free slot, reusing the longest cached prefix of its prompt."""
        free = [i for i, slot in enumerate(self._slots) if not slot.busy]
        prompt = sequence.prompt
        own = max(free, key=lambda i: (common_prefix(self._slots[i].tokens, prompt), self._slots[i].last_used))
        source = max(range(self.slots), key=lambda i: common_prefix(self._slots[i].tokens, prompt))
        own_prefix = common_prefix(self._slots[own].tokens, prompt)
        source_prefix = common_prefix(self._slots[source].tokens, prompt)
        memory = self._ctx
        if source_prefix > own_prefix:
            # Another slot holds more of this prompt (the shared system prompt and examples): take
            # the least recently used free slot and copy that sequence into it. Across KV streams
            # llama.cpp copies whole sequences only, so the tail past the prefix is then removed.
            target = min(free, key=lambda i: self._slots[i].last_used)
            memory.kv_cache_seq_cp(source, target, -1, -1)
            self._slots[target].tokens = list(self._slots[source].tokens)
            own, own_prefix = target, source_prefix
        keep = min(own_prefix, len(prompt) - 1)  # the last prompt token is read again for its logits
        slot = self._slots[own]
        if keep < len(slot.tokens):
            memory.kv_cache_seq_rm(own, keep, -1)
            del slot.tokens[keep:]
        slot.busy, slot.last_used = True, self._calls
        sequence.slot, sequence.todo = own, prompt[keep:]
        self.counts["prompt_tokens_cached"] += keep
        return sequence

    def _fill_batch(self, active: list[_Sequence]) -> list[tuple[_Sequence, int | None]]:
        """Put every generating sequence's next token, then prompt chunks, into the batch.

        Returns each sequence in the batch with the batch index of its logits (None while its
        prompt is only partly read).
        """
        batch = self._batch.batch
        batch.n_tokens = 0
        placed: list[tuple[_Sequence, int | None]] = []
        room = self.n_batch
        for sequence in sorted(active, key=lambda s: (len(s.todo) > 1, s.index)):
            if room == 0:
                break
            take = sequence.todo[:room]
            slot = self._slots[sequence.slot]
            for token in take:
                i = batch.n_tokens
                batch.token[i] = token
                batch.pos[i] = len(slot.tokens)
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = sequence.slot
                batch.logits[i] = False
                slot.tokens.append(token)
                batch.n_tokens += 1
            del sequence.todo[: len(take)]
            room -= len(take)
            self.counts["generated_tokens_read" if sequence.completion else "prompt_tokens_read"] += len(take)
            logits_at = batch.n_tokens - 1 if not sequence.todo else None
            if logits_at is not None:
                batch.logits[logits_at] = True
            placed.append((sequence, logits_at))
        return placed

    def _sample(self, sequence: _Sequence, logits_at: int) -> bool:
        """Sample the sequence's next token and apply stops; True when the sequence is finished.

        Mirrors ``Llama._create_completion``: an end-of-generation token stops without being
        kept, a stop string cuts the text before it, incomplete UTF-8 waits for its next bytes,
        and ``max_tokens`` ends with "length".
        """
        llm = self._llm
        token = sequence.sampler.sample(self._ctx, logits_at)
        if self._llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            sequence.text = llm.detokenize(sequence.completion, prev_tokens=sequence.prompt)
            sequence.finish_reason = "stop"
            return True
        sequence.completion.append(token)
        text = llm.detokenize(sequence.completion, prev_tokens=sequence.prompt)
        for k, char in enumerate(text[-3:]):
            k = 3 - k
            for num, pattern in UTF8_LEAD_PATTERNS:
                if num > k and pattern & char == pattern:
                    sequence.multibyte = num - k
        if sequence.multibyte > 0:  # as in create_chat_completion, neither stops nor the length apply yet
            sequence.multibyte -= 1
            sequence.todo = [token]
            return False
        found = [stop for stop in sequence.stop if stop in text]
        if found:
            sequence.text = text[: text.index(found[0])]
            sequence.finish_reason = "stop"
            return True
        if len(sequence.completion) >= sequence.max_tokens:
            sequence.text = text
            sequence.finish_reason = "length"
            return True
        sequence.todo = [token]
        return False

    def _result(self, sequence: _Sequence) -> ChatResult:
        usage = {"prompt_tokens": len(sequence.prompt), "completion_tokens": len(sequence.completion)}
        return ChatResult(
            text=sequence.text.decode("utf-8", errors="ignore"),
            usage=usage_from(usage),
            finish_reason=sequence.finish_reason,
        )

    def _release(self, sequence: _Sequence, *, keep: bool) -> None:
        """Free the sequence's slot; its KV stays for the next request unless ``keep`` is False."""
        slot = self._slots[sequence.slot]
        slot.busy = False
        if not keep:
            self._ctx.kv_cache_seq_rm(sequence.slot, -1, -1)
            slot.tokens = []
