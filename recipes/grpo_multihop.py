"""Recipe: GRPO through TRL on Gather-MultiHop-v0's train split, evaluated with PASS@(k,T) on test.

Stages (``--stages``, default all, in this order):

1. ``base``: evaluate the untrained model with ``gather-envs eval`` (the react agent on a
   transformers checkpoint) on a seeded sample of test tasks, ``n`` episodes per task and budget.
2. ``sft``: the control. Play the oracle (the gold path) on the training rows, record its
   trajectories as chat transcripts in the react format, fine-tune on them with TRL's
   ``SFTTrainer`` (loss on the assistant turns only), then evaluate like ``base``.
3. ``grpo``: GRPO with ``GRPOTrainer(rollout_func=...)``: the policy speaks the react dialect
   turn by turn, the env steps every reply and its reward is the only reward; every training
   episode is appended to ``train_records.jsonl`` in the evaluation record format. Then evaluate.
4. ``compare``: ``gather-envs report`` for each run and ``gather-envs compare`` of base against
   GRPO and base against SFT (paired: the same tasks and episode seeds).

Defaults are tiny and run on CPU in a few minutes (a 135M model cannot learn the task in a few
steps; the point is that the pipeline runs end to end). ``--preset gpu`` switches to settings for
one GPU; see recipes/README.md. Everything lands in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

STAGES = ("base", "sft", "grpo", "compare")
AGENTS = {  # the style's agent on a transformers checkpoint, for `gather-envs eval --agent`
    "react": "gather_envs.integrations.transformers_agent:react",
    "act": "gather_envs.integrations.transformers_agent:act",
}
STATIC_TWINS = ("Gather-MultiHop-v0", "Gather-Compare-v0")
"""The ids whose tasks have static twins (``Gather-Static-v0`` poses them closed-book)."""
ORACLE_THOUGHT_SEARCH = "I need the document about {query}."
ORACLE_THOUGHT_ANSWER = "The answer is {answer}."


@dataclass(frozen=True)
class Settings:
    """Every knob of a run (written to ``settings.json`` in the output folder)."""

    model: str | None = None  # a transformers checkpoint; None: SmolLM2-135M converted from its GGUF
    env_id: str = "Gather-MultiHop-v0"
    env_kwargs: tuple[tuple[str, Any], ...] = ()  # e.g. (("top_k", 1),): for training and evaluation
    style: str = "react"  # the agent style: its prompt, dialect and observation turns
    train_tasks: int = 4
    train_budgets: tuple[int, ...] = (4,)  # >= every task's hops, so the oracle's transcripts all answer
    eval_tasks: int = 2
    eval_n: int = 1
    eval_budgets: tuple[int, ...] = (2,)
    eval_max_tokens: int = 48
    eval_temperature: float = 0.7
    eval_concurrency: int = 1
    grpo_steps: int = 2
    grpo_generations: int = 2
    grpo_batch: int = 2
    grpo_learning_rate: float = 1e-5
    grpo_max_completion: int = 256
    grpo_turn_tokens: int = 48
    grpo_temperature: float = 1.0
    grpo_beta: float = 0.0
    grpo_max_minutes: float | None = None  # stop GRPO after this long (the steps done are logged)
    train_layers: int | None = None  # fine-tune only the top N decoder layers (SFT and GRPO); None: all
    sft_examples: int | None = None  # oracle transcripts for SFT: the first N training rows; None: all
    sft_epochs: float = 1.0
    sft_batch: int = 2
    sft_learning_rate: float = 2e-5
    sft_lr_scheduler: str = "linear"  # "constant": each epoch's model equals a run of that many epochs
    sft_max_length: int = 2048
    save_minutes: float = 10.0  # SFT and GRPO save a resumable checkpoint about this often
    eval_static: bool = False  # also evaluate the static twins (Gather-Static-v0, same world) at T = 0
    signal_tasks: int = 0  # train prompts sampled signal_n times at max(eval_budgets): the GRPO signal
    signal_n: int = 8
    examples: str | None = None  # worked example turns (a JSON file) for training and evaluation; None: the style's
    use_vllm: bool = False  # needs `pip install vllm`; generation then goes through vllm_generate
    vllm_mode: str = "colocate"
    bf16: bool = False
    use_cpu: bool = True
    seed: int = 0


PRESETS = {
    "cpu": Settings(),
    # The CPU learning result (recipes/README.md): single-hop questions, one document per search,
    # the act style (bare actions, two worked episodes as chat turns), a 30-minute GRPO budget.
    "cpu-learn": Settings(
        env_id="Gather-SingleHop-v0",
        env_kwargs=(("top_k", 1),),
        style="act",
        train_tasks=300,
        train_budgets=(1, 2),
        eval_tasks=30,
        eval_n=4,
        eval_budgets=(0, 1, 2),
        eval_max_tokens=24,
        grpo_steps=1000,
        grpo_generations=8,
        grpo_batch=8,
        grpo_learning_rate=3e-5,
        grpo_max_completion=320,
        grpo_temperature=0.8,
        grpo_turn_tokens=24,
        grpo_max_minutes=30.0,
        train_layers=8,
        sft_examples=120,
        sft_epochs=1.0,
        sft_batch=4,
        sft_learning_rate=2e-5,
    ),
    "gpu": Settings(
        model="Qwen/Qwen2.5-1.5B-Instruct",
        train_tasks=1000,
        train_budgets=(1, 2, 3, 5),
        eval_tasks=200,
        eval_n=8,
        eval_budgets=(1, 2, 3, 5),
        eval_max_tokens=128,
        eval_concurrency=8,
        grpo_steps=300,
        grpo_generations=8,
        grpo_batch=8,
        grpo_learning_rate=1e-6,
        grpo_max_completion=2048,
        grpo_turn_tokens=128,
        sft_epochs=2.0,
        sft_batch=8,
        sft_max_length=4096,
        use_vllm=False,  # --set use_vllm=true with vLLM installed: much faster rollouts
        bf16=True,
        use_cpu=False,
    ),
}


def log(message: str) -> None:
    print(f"[grpo_multihop {time.strftime('%H:%M:%S')}] {message}", flush=True)


def cli(*args: str, out: Path | None = None) -> str:
    """Run ``gather-envs`` in this interpreter; its stdout (also saved to ``out``)."""
    command = [sys.executable, "-m", "gather_envs.cli", *args]
    log("$ gather-envs " + " ".join(args))
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    if out is not None:
        out.write_text(result.stdout)
    return result.stdout


def base_model(settings: Settings) -> str:
    if settings.model is not None:
        return settings.model
    from gather_envs.integrations.models import smollm2_checkpoint

    return str(smollm2_checkpoint())


def trainable_model(path: str, settings: Settings) -> Any:
    """The checkpoint, with all but its top ``train_layers`` decoder layers (and final norm) frozen.

    On CPU the backward pass dominates a step; stopping it ``train_layers`` layers down halves the
    cost. Embeddings (tied to the output head in SmolLM2) stay frozen too.
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    if settings.train_layers is None:
        return model
    decoder = getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None or not 0 < settings.train_layers <= len(layers):
        raise SystemExit(f"train_layers={settings.train_layers}: {path} has no decoder layers to choose from")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for module in [*layers[-settings.train_layers :], decoder.norm]:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"training the top {settings.train_layers} of {len(layers)} layers: {trained / 1e6:.1f}M parameters")
    return model


def train_rows(settings: Settings) -> list[dict[str, Any]]:
    """Training rows: the react prompt and the env's first observation, for each task and budget."""
    from gather_envs.integrations.dataset import task_rows, to_layout

    rows = task_rows(
        settings.env_id,
        "train",
        style=settings.style,
        budgets=list(settings.train_budgets),
        env_kwargs=dict(settings.env_kwargs),
        limit=settings.train_tasks,
        seed=settings.seed,
        examples=settings.examples,
    )
    return to_layout(rows, "trl")


def evaluate(model: str, name: str, settings: Settings, out: Path) -> Path:
    """PASS@(k,T) records of one model on the test sample (resumable: reruns play what is missing).

    With ``eval_static`` the same model also plays the static twins of the sampled tasks
    (``{name}-static.jsonl``, T = 0, every document in the prompt); with ``signal_tasks`` it samples
    ``signal_n`` episodes of that many train prompts at the largest budget (``{name}-signal.jsonl``):
    the share whose samples disagree is the share of GRPO groups with a non-zero advantage.
    """
    records = out / f"{name}.jsonl"
    _eval(model, name, settings, records, settings.env_id, ("--tasks", str(settings.eval_tasks)))
    if settings.eval_static:
        if settings.env_id not in STATIC_TWINS:
            raise SystemExit(f"eval_static: {settings.env_id} has no static twins; use one of {STATIC_TWINS}")
        twins = out / f"{name}-static-tasks.txt"
        ids = sorted({json.loads(line)["task_id"] for line in records.read_text().splitlines() if line.strip()})
        twins.write_text("".join(f"static-{task_id}\n" for task_id in ids))
        static = replace(settings, eval_budgets=(0,))
        _eval(model, name, static, out / f"{name}-static.jsonl", "Gather-Static-v0", ("--task-ids", str(twins)))
    if settings.signal_tasks:
        signal = replace(
            settings,
            env_kwargs=(*settings.env_kwargs, ("split", "train")),
            eval_n=settings.signal_n,
            eval_budgets=(max(settings.eval_budgets),),
        )
        tasks = ("--tasks", str(settings.signal_tasks))
        _eval(model, name, signal, out / f"{name}-signal.jsonl", settings.env_id, tasks)
    return records


def kwarg_text(value: Any) -> str:
    """An env kwarg as ``--kwarg`` reads it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _eval(model: str, name: str, settings: Settings, records: Path, env_id: str, tasks: tuple[str, str]) -> None:
    """One ``gather-envs eval`` of the style's agent on ``model`` (resumable) into ``records``."""
    kwargs = [arg for key, value in settings.env_kwargs for arg in ("--kwarg", f"{key}={kwarg_text(value)}")]
    examples = ("--agent-option", f"examples={settings.examples}") if settings.examples else ()
    cli(
        "eval",
        env_id,
        *kwargs,
        "--agent",
        AGENTS[settings.style],
        "--agent-option",
        f"model={model}",
        "--agent-option",
        f"max_tokens={settings.eval_max_tokens}",
        "--agent-option",
        f"temperature={settings.eval_temperature}",
        "--agent-option",
        f"seed={settings.seed}",
        "--agent-option",
        f"agent_id={name}",
        *examples,
        "--n",
        str(settings.eval_n),
        "--budgets",
        ",".join(str(b) for b in settings.eval_budgets),
        *tasks,
        "--seed",
        str(settings.seed),
        "--concurrency",
        str(settings.eval_concurrency),
        "--order",  # a task's episodes together: the model's prefix cache computes their prompt once
        "cells",
        "--out",
        str(records),
        "--quiet",
    )


# -- SFT on oracle trajectories ---------------------------------------------------------------


def oracle_conversations(rows: list[dict[str, Any]], records: Path, style: str) -> list[dict[str, Any]]:
    """The oracle's episodes on the training rows as react chat transcripts (and as records)."""
    import gymnasium as gym

    from gather_envs.agents.scripted import OracleAgent, action_text
    from gather_envs.envs.actions import parse_action
    from gather_envs.integrations import chat
    from gather_envs.integrations.episodes import EpisodeDriver, parse_env_kwargs

    driver = EpisodeDriver(records_path=records, agent_id="oracle")
    examples = []
    for row in rows:
        observation, info = driver.reset(row)
        env = gym.make(row["env_id"], **parse_env_kwargs(row["env_kwargs"]))
        policy = OracleAgent(env.unwrapped).start(int(row["seed"]))
        messages = list(row["prompt"])
        while not driver.done:
            action = parse_action(policy.act(observation, info))
            text = action_text("react", action.kind, action.argument)
            if style == "react":  # the react style writes a thought before each action
                thought = (
                    ORACLE_THOUGHT_SEARCH if action.kind == "search" else ORACLE_THOUGHT_ANSWER
                ).format(query=action.argument, answer=action.argument)
                text = f"Thought: {thought}\nAction: {text}"
            messages.append({"role": "assistant", "content": text})
            result = driver.step(text)
            observation, info = result.observation, result.info
            if not driver.done:
                messages.append(chat.observation_message(style, observation))
        env.close()
        examples.append({"messages": messages})
    driver.close()
    return examples


def train_sft(model: str, settings: Settings, out: Path) -> Path:
    """Fine-tune on the oracle transcripts (assistant turns only); the saved checkpoint's folder.

    Resumable: a finished run (``sft-model/``) is reused, an interrupted one continues from its last
    checkpoint in ``sft-trainer/`` (saved every ``save_minutes``). Each epoch's model is kept as
    ``sft-epoch-N/``; under ``sft_lr_scheduler="constant"`` it equals a run of N epochs.
    """
    folder = out / "sft-model"
    if (folder / DONE).exists():
        log(f"SFT already done: {folder}")
        return folder
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from gather_envs.integrations.models import tool_chat_template

    rows = train_rows(settings)[: settings.sft_examples]
    examples = oracle_conversations(rows, out / "oracle_train.jsonl", settings.style)
    tokenizer = AutoTokenizer.from_pretrained(model)
    inference_template = tokenizer.chat_template
    if tokenizer.chat_template == tool_chat_template():  # the training variant marks assistant turns
        from importlib import resources

        tokenizer.chat_template = (
            resources.files("trl") / "chat_templates" / "qwen2_5_training.jinja"
        ).read_text()
    trainer_dir = out / "sft-trainer"
    trainer = SFTTrainer(
        model=trainable_model(model, settings),
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(examples),
        args=SFTConfig(
            output_dir=str(trainer_dir),
            num_train_epochs=settings.sft_epochs,
            per_device_train_batch_size=settings.sft_batch,
            learning_rate=settings.sft_learning_rate,
            lr_scheduler_type=settings.sft_lr_scheduler,
            max_length=settings.sft_max_length,
            assistant_only_loss="{% generation %}" in (tokenizer.chat_template or ""),
            gradient_checkpointing=False,
            use_cpu=settings.use_cpu,
            bf16=settings.bf16,
            report_to="none",
            save_strategy="no",  # checkpoints come from the clock (save_every) and each epoch's end
            save_total_limit=1,
            logging_steps=1,
            seed=settings.seed,
        ),
        callbacks=[save_every(settings.save_minutes), save_epochs(out, "sft-epoch", tokenizer, inference_template)],
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(trainer_dir))
    (out / "sft_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))
    tokenizer.chat_template = inference_template
    save_model(trainer.model, tokenizer, folder)
    return folder


DONE = "complete.json"
"""Written last into a saved model folder: a folder without it is an interrupted save."""


def save_model(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save weights and tokenizer to ``folder`` whole or not at all (a temporary folder, renamed)."""
    import shutil

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    (partial / DONE).write_text(json.dumps({"saved": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def last_checkpoint(trainer_dir: Path) -> str | None:
    """The trainer's newest ``checkpoint-N`` folder to resume from, or None for a fresh start."""
    from transformers.trainer_utils import get_last_checkpoint

    if not trainer_dir.is_dir():
        return None
    found = get_last_checkpoint(str(trainer_dir))
    if found:
        log(f"resuming from {found}")
    return found


def save_every(minutes: float) -> Any:
    """A trainer callback that asks for a resumable checkpoint every ``minutes`` of training."""
    from transformers import TrainerCallback

    class SaveEvery(TrainerCallback):
        last = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            self.last = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if time.monotonic() - self.last >= 60 * minutes:
                self.last = time.monotonic()
                control.should_save = True
            return control

    return SaveEvery()


def save_epochs(out: Path, prefix: str, tokenizer: Any, template: Any) -> Any:
    """A trainer callback that keeps each finished epoch's model as ``{prefix}-N/`` (for inference)."""
    from transformers import TrainerCallback

    class SaveEpochs(TrainerCallback):
        def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
            epoch = round(state.epoch or 0)
            folder = out / f"{prefix}-{epoch}"
            if model is not None and not (folder / DONE).exists():
                training_template, tokenizer.chat_template = tokenizer.chat_template, template
                save_model(model, tokenizer, folder)
                tokenizer.chat_template = training_template
                log(f"epoch {epoch}: saved {folder}")
            control.should_save = True  # and a resumable checkpoint at the epoch boundary
            return control

    return SaveEpochs()


# -- GRPO ---------------------------------------------------------------------------------------


def time_limit(minutes: float) -> Any:
    """A trainer callback that ends training ``minutes`` after it began (checked after each step)."""
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        deadline = float("inf")

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            self.deadline = time.monotonic() + 60 * minutes

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if time.monotonic() >= self.deadline:
                log(f"GRPO time limit of {minutes} min reached after {state.global_step} steps")
                control.should_training_stop = True
            return control

    return TimeLimit()


def plot_rewards(history: list[dict[str, Any]], path: Path, settings: Settings, window: int = 10) -> None:
    """The training reward per GRPO step (the mean over its rollouts) and its running mean."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install 'gather-envs[plot]'): no reward plot")
        return
    points = [(entry["step"], entry["reward"]) for entry in history if "reward" in entry and "step" in entry]
    if not points:
        return
    steps, rewards = zip(*points)
    running = [
        sum(rewards[max(0, i - window + 1) : i + 1]) / len(rewards[max(0, i - window + 1) : i + 1])
        for i in range(len(rewards))
    ]
    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.plot(steps, rewards, ".", alpha=0.35, label="mean reward of the step's rollouts")
    axes.plot(steps, running, "-", label=f"running mean over {window} steps")
    axes.set_xlabel("GRPO step")
    axes.set_ylabel("reward (success rate)")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(
        f"GRPO on {settings.env_id} (train split), {settings.grpo_generations} rollouts per step, "
        f"T in {list(settings.train_budgets)}",
        fontsize=9,
    )
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def train_grpo(model: str, settings: Settings, out: Path) -> Path:
    """GRPO with the env's reward through the rollout function; the saved checkpoint's folder.

    Resumable like :func:`train_sft`: a finished run is reused, an interrupted one continues from
    its last checkpoint (``grpo_max_minutes`` then counts from the restart).
    """
    folder = out / "grpo-model"
    if (folder / DONE).exists():
        log(f"GRPO already done: {folder}")
        return folder
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from gather_envs.integrations.trl import env_reward, make_rollout_func, vllm_generate

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    rows = train_rows(settings)
    groups = settings.grpo_batch // settings.grpo_generations
    rows = rows[: max(groups, len(rows) // groups * groups)]  # whole batches only (huggingface/trl#6137)
    tokenizer = AutoTokenizer.from_pretrained(model)
    trainer_dir = out / "grpo-trainer"
    config = GRPOConfig(
        output_dir=str(trainer_dir),
        max_steps=settings.grpo_steps,
        per_device_train_batch_size=settings.grpo_batch,
        num_generations=settings.grpo_generations,
        max_completion_length=settings.grpo_max_completion,
        learning_rate=settings.grpo_learning_rate,
        temperature=settings.grpo_temperature,
        beta=settings.grpo_beta,
        use_vllm=settings.use_vllm,
        **({"vllm_mode": settings.vllm_mode} if settings.use_vllm else {}),
        gradient_checkpointing=not settings.use_cpu,
        use_cpu=settings.use_cpu,
        bf16=settings.bf16,
        report_to="none",
        save_strategy="no",  # checkpoints come from the clock (save_every)
        save_total_limit=1,
        logging_steps=1,
        seed=settings.seed,
    )
    rollout = make_rollout_func(
        rows,
        records_path=out / "train_records.jsonl",
        agent_id="grpo",
        generate=vllm_generate if settings.use_vllm else None,
        turn_tokens=settings.grpo_turn_tokens,
        agent_settings={"recipe": "grpo_multihop", **asdict(settings)},
    )
    trainer = GRPOTrainer(
        model=trainable_model(model, settings),
        reward_funcs=[env_reward],
        processing_class=tokenizer,
        args=config,
        train_dataset=Dataset.from_list(rows),
        rollout_func=rollout,
        callbacks=[
            save_every(settings.save_minutes),
            *([time_limit(settings.grpo_max_minutes)] if settings.grpo_max_minutes else []),
        ],
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(trainer_dir))
    (out / "grpo_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))
    plot_rewards(trainer.state.log_history, out / "grpo_rewards.png", settings)
    save_model(trainer.model, tokenizer, folder)
    return folder


def compare(out: Path, runs: dict[str, Path]) -> None:
    """Reports of each run and paired comparisons against the base model, saved next to them."""
    for name, records in runs.items():
        print(cli("report", str(records), out=out / f"report-{name}.md"))
    for name in ("grpo", "sft"):
        if name in runs and "base" in runs:
            plots = str(out / "plots" / f"base-vs-{name}")  # both curves and their difference, as PNGs
            compared = (str(runs["base"]), str(runs[name]))
            print(cli("compare", *compared, "--plot", plots, out=out / f"compare-base-{name}.md"))


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/grpo-multihop"), help="output folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {STAGES}")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="override a setting, e.g. --set grpo_steps=10 (JSON values: --set eval_budgets=[1,3])",
    )
    args = parser.parse_args(argv)
    settings = PRESETS[args.preset]
    fields = Settings.__dataclass_fields__
    for item in args.set:
        key, _, raw = item.partition("=")
        if key not in fields:
            parser.error(f"unknown setting {key!r}; known: {', '.join(fields)}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        settings = replace(settings, **{key: tuple(value) if isinstance(value, list) else value})
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
    return args, settings


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_args(argv)
    stages = [s for s in STAGES if s in args.stages.split(",")]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(asdict(settings), indent=2))
    model = base_model(settings)
    runs: dict[str, Path] = {}
    started = time.perf_counter()
    if "base" in stages:
        log(f"evaluating the base model {model}")
        runs["base"] = evaluate(model, "base", settings, out)
    if "sft" in stages:
        log("SFT control on oracle trajectories")
        runs["sft"] = evaluate(str(train_sft(model, settings, out)), "sft", settings, out)
    if "grpo" in stages:
        log("GRPO on the train split")
        runs["grpo"] = evaluate(str(train_grpo(model, settings, out)), "grpo", settings, out)
    if "compare" in stages:
        for name in ("base", "sft", "grpo"):
            if name not in runs and (out / f"{name}.jsonl").exists():
                runs[name] = out / f"{name}.jsonl"
        compare(out, runs)
    log(f"done in {time.perf_counter() - started:.0f} s; everything is in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
