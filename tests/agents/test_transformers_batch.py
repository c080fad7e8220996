"""The transformers backend's batched decoding, on a tiny random-weight Llama made here from a config.

The checkpoint (a byte-level BPE tokenizer trained on a few sentences, a 2-layer Llama with random
weights) takes well under a second to build and run, so these tests check the decode loop itself:
padding, the KV cache, the shared prefix, per-row stops and seeds, failures of one row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from gather_envs.agents.backends import ChatResult, Sampling  # noqa: E402
from gather_envs.agents.backends.batching import MicroBatcher  # noqa: E402
from gather_envs.agents.backends.transformers_local import TransformersBackend  # noqa: E402
from gather_envs.errors import BackendError  # noqa: E402
from gather_envs.evaluation import evaluate  # noqa: E402
from gather_envs.integrations import transformers_agent  # noqa: E402

SPECIAL = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TRAINING_TEXT = [
    "Search the documents and answer the question. search[query] answer[name]",
    "Who founded the company that employs the mayor of the town by the river?",
    "The observatory was built in 1874 by an engineer from the northern province.",
]
SYSTEM = "You answer questions by searching. " * 12  # a long prefix shared by every prompt below


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama and a byte-level BPE tokenizer with a chat template, saved as a checkpoint."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(TRAINING_TEXT, trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|pad|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = TEMPLATE
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def prompt(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


PROMPTS = [
    prompt("Who?"),
    prompt("Who founded the observatory by the river in 1874?"),
    prompt("Search the town."),
]


def test_a_batch_gives_each_row_its_tokens_alone_greedy_and_sampled(checkpoint: Path) -> None:
    """Same seed, same tokens, alone or in a batch with other prompts of other lengths."""
    for temperature, top_p in ((0.0, 1.0), (1.0, 0.9), (1.3, 1.0)):
        samplings = [Sampling(temperature, top_p, max_tokens=12, seed=11 + i) for i in range(len(PROMPTS))]
        alone_backend = TransformersBackend(checkpoint)
        alone = [alone_backend.chat(p, s) for p, s in zip(PROMPTS, samplings)]
        batched = TransformersBackend(checkpoint).chat_batch(list(zip(PROMPTS, samplings)))
        assert batched == alone, (temperature, top_p)
    seeds = [
        TransformersBackend(checkpoint).chat(PROMPTS[1], Sampling(1.0, 1.0, 12, seed=s)).text for s in (1, 2)
    ]
    assert seeds[0] != seeds[1]  # the seed does reach the sampler


def test_reused_prompt_caches_change_no_token(checkpoint: Path) -> None:
    samplings = [Sampling(0.8, 0.95, max_tokens=10, seed=i) for i in range(len(PROMPTS))]
    requests = list(zip(PROMPTS, samplings))
    shared = TransformersBackend(checkpoint).chat_batch(requests)
    assert shared == TransformersBackend(checkpoint, share_prefix=False).chat_batch(requests)
    backend = TransformersBackend(checkpoint)
    assert backend.kv_store is not None
    backend.chat_batch(requests)
    first_batch = backend.kv_store.reused_tokens
    assert first_batch > 0  # the second and third prompts reused the first one's system prompt
    assert backend.chat_batch(requests[:1]) == shared[:1]  # a later batch of one reuses a whole prompt
    assert backend.kv_store.reused_tokens - first_batch == backend.count_tokens(PROMPTS[0]) - 1


def test_stop_strings_and_max_tokens_apply_to_their_own_row(checkpoint: Path) -> None:
    backend = TransformersBackend(checkpoint)
    samplings = [Sampling(1.0, 1.0, max_tokens=16, seed=3) for _ in PROMPTS]
    free = [backend.chat(p, s) for p, s in zip(PROMPTS, samplings)]
    text = free[0].text
    at = next(
        k for k in range(2, len(text) - 2) if text[k : k + 2].isascii() and text.index(text[k : k + 2]) == k
    )
    stop = text[at : at + 2]
    rows = [
        (PROMPTS[0], Sampling(1.0, 1.0, max_tokens=16, seed=3, stop=(stop,))),
        (PROMPTS[1], Sampling(1.0, 1.0, max_tokens=5, seed=3)),
        (PROMPTS[2], samplings[2]),
    ]
    cut, short, untouched = TransformersBackend(checkpoint).chat_batch(rows)
    assert isinstance(cut, ChatResult) and isinstance(short, ChatResult)
    assert cut.text == text[:at] and cut.finish_reason == "stop"
    assert cut.usage["completion_tokens"] < free[0].usage["completion_tokens"]  # it stopped decoding there
    assert short.usage["completion_tokens"] == 5 and short.finish_reason == "length"
    assert free[1].text.startswith(short.text)
    assert untouched == free[2]


def test_a_prompt_over_the_context_fails_alone(checkpoint: Path) -> None:
    backend = TransformersBackend(checkpoint, context_tokens=300)
    sampling = Sampling(0.0, 1.0, max_tokens=8)
    too_long = prompt("river " * 400)
    first, failed, last = backend.chat_batch(
        [(PROMPTS[0], sampling), (too_long, sampling), (PROMPTS[2], sampling)]
    )
    assert isinstance(failed, BackendError) and "context" in str(failed)
    assert first == backend.chat(PROMPTS[0], sampling) and last == backend.chat(PROMPTS[2], sampling)
    with pytest.raises(BackendError, match="context_tokens"):
        backend.chat(too_long, sampling)


def test_a_batch_that_fails_as_a_whole_is_retried_row_by_row(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gather_envs.agents.backends import transformers_local

    real = transformers_local.decode

    def fails_in_batches_and_on_one_row(model: Any, tokenizer: Any, rows: Any, *args: Any) -> Any:
        if len(rows) > 1 or rows[0].index == 1:
            raise RuntimeError("out of memory (injected)")
        return real(model, tokenizer, rows, *args)

    monkeypatch.setattr(transformers_local, "decode", fails_in_batches_and_on_one_row)
    sampling = Sampling(0.0, 1.0, max_tokens=6)
    results = TransformersBackend(checkpoint).chat_batch([(p, sampling) for p in PROMPTS])
    assert isinstance(results[1], BackendError) and "injected" in str(results[1])
    assert all(not isinstance(results[i], BackendError) for i in (0, 2))


def run(checkpoint: Path, concurrency: int, temperature: float) -> tuple[list[dict[str, Any]], list[int]]:
    env = gym.make("Gather-MultiHop-v0", top_k=1)
    agent = transformers_agent.act(
        env.unwrapped, model=str(checkpoint), temperature=temperature, max_tokens=8, seed=5
    )
    assert isinstance(agent.backend, MicroBatcher)
    records = evaluate(
        "Gather-MultiHop-v0",
        agent,
        n=2,
        budgets=(3,),
        tasks=4,
        concurrency=concurrency,
        env_kwargs={"top_k": 1},
        progress=False,
        record_trajectory=True,
        retries=0,
    )
    assert not any(record.is_infra_error for record in records)
    return [{**record.to_json(), "wall_time": None} for record in records], agent.backend.batch_sizes


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_the_runner_gives_the_same_records_with_8_episodes_in_flight_as_one_at_a_time(
    checkpoint: Path, temperature: float
) -> None:
    batched, sizes = run(checkpoint, 8, temperature)
    alone, alone_sizes = run(checkpoint, 1, temperature)
    assert batched == alone
    assert max(sizes) > 1 and max(alone_sizes) == 1
