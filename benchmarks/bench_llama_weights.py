"""llama.cpp token rates of SmolLM2-135M per weight format: the shipped Q4_1 and its local re-encodings.

For each format (re-encoded once by :mod:`gather_envs.agents.backends.llama_weights`, no download),
on ``--threads`` threads, the best of ``--repeats`` interleaved runs of: reading a 256-token prompt
(``Llama.eval``), generating 24 tokens one at a time, and 12 decode steps of 16 sequences in one
batch (a context with 16 KV streams, as ``chat_batch`` uses). Best-of-n because the machine is
shared: the other jobs only ever slow a run down. Prints a table and the load average; asserts
nothing.

    nice python benchmarks/bench_llama_weights.py [--formats shipped Q8_0 F16 F32] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gather_envs.agents.backends.llama_embedded import load_llama, smollm2_model_path  # noqa: E402
from gather_envs.agents.backends.llama_weights import SHIPPED, WEIGHT_FORMATS, weights_path  # noqa: E402
from gather_envs.files import PathLike  # noqa: E402

PROMPT_TOKENS = 256
SINGLE_TOKENS = 24
SEQUENCES = 16
BATCH_STEPS = 12
SHARED_TOKENS = 300
CONTEXT_TOKENS = 2048
TEXT = b"The quick brown fox jumps over the lazy dog. " * 120


def batch_rate(llama_cpp: Any, llm: Any, tokens: list[int], threads: int) -> float:
    """Generated tokens/s of SEQUENCES sequences decoded together, one token each per step."""
    from llama_cpp import _internals

    params = llama_cpp.llama_context_default_params()
    for name, _ in llama_cpp.llama_context_params._fields_:
        setattr(params, name, getattr(llm.context_params, name))
    params.n_ctx, params.n_seq_max, params.kv_unified = 1024 * SEQUENCES, SEQUENCES, False
    params.n_threads = params.n_threads_batch = threads
    ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
    batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
    try:
        batch.set_batch(tokens[:SHARED_TOKENS], 0, False)
        ctx.decode(batch)
        for seq in range(1, SEQUENCES):
            ctx.kv_cache_seq_cp(0, seq, -1, -1)
        start = time.perf_counter()
        raw = batch.batch
        for step in range(BATCH_STEPS):
            for seq in range(SEQUENCES):
                raw.token[seq], raw.pos[seq] = tokens[SHARED_TOKENS + step], SHARED_TOKENS + step
                raw.n_seq_id[seq], raw.seq_id[seq][0], raw.logits[seq] = 1, seq, True
            raw.n_tokens = SEQUENCES
            ctx.decode(batch)
        return SEQUENCES * BATCH_STEPS / (time.perf_counter() - start)
    finally:
        batch.close()
        ctx.close()


def rates(llama_cpp: Any, llm: Any, threads: int) -> dict[str, float]:
    """One run of the three measurements on a loaded model."""
    tokens = llm.tokenize(TEXT, add_bos=False)
    llm.reset()
    start = time.perf_counter()
    llm.eval(tokens[:PROMPT_TOKENS])
    prompt = PROMPT_TOKENS / (time.perf_counter() - start)
    llm.reset()
    llm.eval(tokens[:SHARED_TOKENS])
    start = time.perf_counter()
    for token in tokens[SHARED_TOKENS : SHARED_TOKENS + SINGLE_TOKENS]:
        llm.eval([token])
    single = SINGLE_TOKENS / (time.perf_counter() - start)
    return {"prompt": prompt, "gen_1": single, f"gen_{SEQUENCES}": batch_rate(llama_cpp, llm, tokens, threads)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--formats", nargs="+", default=[SHIPPED, *WEIGHT_FORMATS], choices=[SHIPPED, *WEIGHT_FORMATS])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import llama_cpp

    from gather_envs.agents.backends.llama_embedded import file_sha256

    source = smollm2_model_path()
    paths: dict[str, PathLike] = {f: weights_path(llama_cpp, source, file_sha256(source), f) for f in args.formats}
    models = {f: load_llama(llama_cpp, Path(p), CONTEXT_TOKENS, args.threads) for f, p in paths.items()}
    best: dict[str, dict[str, float]] = {f: {} for f in models}
    for _ in range(args.repeats):
        for name, llm in models.items():
            for key, value in rates(llama_cpp, llm, args.threads).items():
                best[name][key] = max(best[name].get(key, 0.0), value)
    print(f"threads={args.threads} best of {args.repeats}, load average {os.getloadavg()[0]:.1f} (tokens/s)")
    print(f"{'weights':8} {'prompt':>8} {'gen_1':>8} {f'gen_{SEQUENCES}':>8}")
    for name, figures in best.items():
        print(f"{name:8} " + " ".join(f"{value:8.0f}" for value in figures.values()))
    for llm in models.values():
        llm.close()


if __name__ == "__main__":
    main()
