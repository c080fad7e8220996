"""Episodes/s of the act agent on a local model, with 1, 8, 16 and 32 episodes in flight.

The act agent (SmolLM2-135M-Instruct, default sampling: temperature 0.7, top_p 0.95, up to 256
tokens a reply, no grammar on transformers) plays ``Gather-MultiHop-v0`` at T = 3 with
``top_k=1`` through the real runner (records written, resume-ready), ``--concurrency`` episodes in
flight; each row is one run of ``max(2 x in flight, --min-episodes)`` episodes (the tasks are the
first of a seeded sample, one episode each; with ``--n N``, N episodes of each task played cell by
cell, the way a PASS@(k,T) evaluation with ``--order cells`` plays them). Beside them, the model's raw prompt and generation
token rates, measured in the same process after a warm-up pass: one act prompt (the system prompt,
the worked examples and a task, first turn) prefilled alone, then 32 tokens decoded one by one.

* ``--backend transformers`` (run it with torch installed): the converted checkpoint
  (:func:`gather_envs.integrations.models.smollm2_checkpoint`), fp32 on CPU. Rows: ``generate``,
  the backend as it was before batching (``model.generate`` one call at a time under the model's
  lock), then the batched backend (micro-batcher, one decode per batch, the shared prompt prefix
  computed once), with ``--no-share-prefix`` as a further row set.
* ``--backend embedded`` (run it with llama-cpp-python installed): the GGUF model on llama.cpp. It is
  batched through the same micro-batcher when the backend offers ``chat_batch``; until then it runs
  one call at a time under its lock, and the rows say so.

Prints a table and the load average; asserts nothing.

    nice python benchmarks/bench_local_models.py --backend transformers [--in-flight 1 8 16 32]
    nice python benchmarks/bench_local_models.py --backend embedded --in-flight 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gather_envs  # noqa: E402,F401  (registers the ids)
from gather_envs.agents.backends import ChatBackend, ChatResult, Message, Sampling  # noqa: E402
from gather_envs.agents.backends.batching import MicroBatcher  # noqa: E402
from gather_envs.agents.llm import STYLES, LLMAgent  # noqa: E402
from gather_envs.evaluation import evaluate  # noqa: E402

ENV_ID = "Gather-MultiHop-v0"
ENV_KWARGS = {"top_k": 1}
BUDGET = 3
DECODE_TOKENS = 32
SEED = 0


class OneAtATime:
    """A backend with its ``chat_batch`` hidden: every call runs alone (how the backends ran before)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.supports_tools = backend.supports_tools
        self.context_tokens = backend.context_tokens

    def chat(self, messages: Sequence[Message], sampling: Sampling) -> ChatResult:
        return self.backend.chat(messages, sampling)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.backend.count_tokens(messages)

    def settings(self) -> dict[str, Any]:
        return self.backend.settings()


class Generate(OneAtATime):
    """The transformers backend before batching: ``model.generate`` per call, under the model's lock."""

    def chat(self, messages: Sequence[Message], sampling: Sampling) -> ChatResult:
        import torch

        backend = self.backend
        ids = backend._prompt_ids(messages)
        sample = sampling.temperature > 0
        with backend._lock, torch.no_grad():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            output = backend._model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=sampling.max_tokens,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                top_k=None,
                pad_token_id=backend._tokenizer.pad_token_id or backend._tokenizer.eos_token_id,
            )
        new = output[0, len(ids) :].tolist()
        usage = {
            "prompt_tokens": len(ids),
            "completion_tokens": len(new),
            "total_tokens": len(ids) + len(new),
        }
        return ChatResult(backend._tokenizer.decode(new, skip_special_tokens=True), usage)


def act_prompt(backend: ChatBackend) -> list[Message]:
    """The act agent's first prompt on a MultiHop task: system prompt, worked examples, the task."""
    env = gym.make(ENV_ID, **ENV_KWARGS)
    agent = LLMAgent(env.unwrapped, STYLES["act"], chat_backend=OneAtATime(backend), grammar=False)
    observation, _ = env.reset(seed=SEED)
    return [
        {"role": "system", "content": agent.system_prompt},
        *agent.examples,
        {"role": "user", "content": observation},
    ]


def transformers_rates(backend: Any) -> tuple[int, float, float]:
    """(prompt tokens, prompt tokens/s, generated tokens/s) of the model alone, batch of one."""
    import torch

    from gather_envs.agents.backends.transformers_decode import batch_cache, cache_argument

    ids = backend._prompt_ids(act_prompt(backend))
    model = backend._model
    import transformers

    with torch.no_grad():
        model(input_ids=torch.tensor([ids]), logits_to_keep=1)  # warm-up: first-touch costs are not the rate
        cache = batch_cache(transformers, model, len(ids) + DECODE_TOKENS + 1)
        started = time.perf_counter()
        logits = model(
            input_ids=torch.tensor([ids]), use_cache=True, logits_to_keep=1, **{cache_argument(model): cache}
        ).logits
        prefill = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(DECODE_TOKENS):
            token = logits[:, -1].argmax(-1)[:, None]
            logits = model(input_ids=token, use_cache=True, **{cache_argument(model): cache}).logits
        decode = time.perf_counter() - started
    return len(ids), len(ids) / prefill, DECODE_TOKENS / decode


def embedded_rates(backend: Any) -> tuple[int, float, float]:
    """The same rates on the backend's llama.cpp model: ``eval`` of the prompt, then of 32 single tokens."""
    messages = act_prompt(backend)
    with backend._model_lock:
        llm = backend._llm
        tokens = llm.tokenize("\n".join(str(m["content"]) for m in messages).encode("utf-8"))
        llm.reset()
        llm.eval(tokens[:64])  # warm-up: first-touch costs are not the rate
        llm.reset()
        started = time.perf_counter()
        llm.eval(tokens)
        prefill = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(DECODE_TOKENS):
            llm.eval([tokens[-1]])
        decode = time.perf_counter() - started
        llm.reset()  # the next call must not reuse this context's prefix
    return len(tokens), len(tokens) / prefill, DECODE_TOKENS / decode


def episodes_per_s(backend: ChatBackend, in_flight: int, episodes: int, n: int = 1) -> tuple[float, float, str]:
    """(episodes/s, mean calls per batch, batch sizes seen) of one run of ``episodes`` episodes.

    ``n`` > 1: ``episodes / n`` tasks × ``n`` episodes each, played cell by cell (``order="cells"``),
    as a PASS@(k,T) evaluation plays them: the episodes in flight share their first prompt.
    """
    env = gym.make(ENV_ID, **ENV_KWARGS)
    agent = LLMAgent(env.unwrapped, STYLES["act"], chat_backend=backend, grammar=False)
    started = time.perf_counter()
    records = evaluate(
        ENV_ID,
        agent,
        n=n,
        budgets=(BUDGET,),
        tasks=episodes // n,
        seed=SEED,
        concurrency=in_flight,
        order="cells" if n > 1 else "episodes",
        env_kwargs=ENV_KWARGS,
        progress=False,
        retries=0,
    )
    wall = time.perf_counter() - started
    assert len(records) == episodes and not any(r.is_infra_error for r in records)
    sizes = agent.backend.batch_sizes if isinstance(agent.backend, MicroBatcher) else [1]
    return episodes / wall, sum(sizes) / len(sizes), f"max {max(sizes)}"


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=("transformers", "embedded"), required=True)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--min-episodes", type=int, default=8)
    parser.add_argument(
        "--n", type=int, default=1, help="episodes per task, played cell by cell (an evaluation's n); default 1"
    )
    parser.add_argument("--no-share-prefix", action="store_true", help="also run the batched rows without it")
    parser.add_argument("--skip-generate", action="store_true", help="skip the pre-batching generate() row")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average (1/5/15 min) at start {load()}", flush=True)
    rows: list[tuple[str, Any]] = []
    if args.backend == "transformers":
        from gather_envs.agents.backends.transformers_local import TransformersBackend
        from gather_envs.integrations.models import smollm2_checkpoint

        model = str(smollm2_checkpoint())
        base = TransformersBackend(model)
        tokens, prompt_rate, gen_rate = transformers_rates(base)
        if not args.skip_generate:
            rows.append(("generate, one at a time (before)", lambda: Generate(TransformersBackend(model))))
        rows.append(("batched, shared prefix", lambda: TransformersBackend(model)))
        if args.no_share_prefix:
            rows.append(("batched, no shared prefix", lambda: TransformersBackend(model, share_prefix=False)))
    else:
        from gather_envs.agents.backends.llama_embedded import LlamaEmbeddedBackend

        base = LlamaEmbeddedBackend()
        tokens, prompt_rate, gen_rate = embedded_rates(base)
        label = "batched" if hasattr(base, "chat_batch") else "one at a time (no chat_batch yet)"
        rows.append((f"llama.cpp, {label}", lambda: LlamaEmbeddedBackend()))
    print(
        f"raw model rates ({args.backend}, batch of 1): act prompt of {tokens} tokens prefilled at "
        f"{prompt_rate:.0f} tokens/s; generation {gen_rate:.1f} tokens/s",
        flush=True,
    )
    print(f"{'backend':38} {'in flight':>9} {'episodes':>8} {'episodes/s':>10} {'calls/batch':>11}  load")
    for label, build in rows:
        for in_flight in args.in_flight:
            if label.startswith("generate") and in_flight > 1:
                continue  # one at a time under a lock: more in flight only queue
            episodes = -(-max(2 * in_flight, args.min_episodes) // args.n) * args.n  # whole tasks
            rate, per_batch, sizes = episodes_per_s(build(), in_flight, episodes, args.n)
            print(
                f"{label:38} {in_flight:>9} {episodes:>8} {rate:>10.3f} {per_batch:>11.1f}  {load()} ({sizes})",
                flush=True,
            )
    print(f"load average (1/5/15 min) at end {load()}")


if __name__ == "__main__":
    main()
