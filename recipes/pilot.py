"""The pilot before the sequential contrast: which warm start puts SmolLM2-135M inside the gate?

Every variant runs through ``grpo_multihop.py``'s own functions (settings saved in its folder):

- ``base`` and ``examples-2hop``: the untrained model with the shipped act examples, and with
  two 2-hop worked episodes instead (``pilot/examples_2hop.json``, invented names);
- ``sft-top8`` and ``sft-all``: SFT on 600 train-world oracle transcripts (T = 3, no worked
  examples in the prompt), the top 8 decoder layers or all of them, two epochs at a constant
  learning rate, so the epoch-1 model (``-e1``) equals a one-epoch run and the epoch-2 model
  (``-e2``) a two-epoch run.

Each model plays ``eval_tasks`` test tasks × ``eval_n`` episodes at T ∈ {1, 2, 3}, the static twins
of the same tasks at T = 0, and ``signal_n`` samples of ``signal_tasks`` train prompts (the share
whose samples disagree is the share of GRPO groups that carry a gradient). ``table`` prints the
pilot table and the gate (see ``GATE``). Every stage resumes: training from its last checkpoint,
evaluation from the records already written. Commands (each resumes; ``all`` runs them in order)::

    python recipes/pilot.py --out runs/pilot train sft-top8
    python recipes/pilot.py --out runs/pilot eval sft-top8-e1
    python recipes/pilot.py --out runs/pilot table > recipes/pilot-table.md

The contrast (``contrast.md``) runs from here too: ``train grpo`` trains the GRPO arm from the warm
start ``WARM_START`` with the settings of ``CONTRAST``, ``eval grpo`` evaluates it like every pilot
model, and ``contrast.py`` tests the endpoints on the records.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpo_multihop as recipe  # noqa: E402 (the recipe next to this file)

HERE = Path(__file__).resolve().parent
WORLD = {
    "seed": 11,
    "min_hops": 2,
    "max_hops": 2,
    "num_distractors": 5,
    "doc_length": 0,
    "tasks_per_family": 150,
    "train_tasks_per_family": 1000,
}
"""Two-hop bridges only, short documents (``doc_length`` 0): the world PILOTS.md's pilot 3 learned."""

COMMON = replace(
    recipe.PRESETS["cpu-learn"],
    env_id="Gather-MultiHop-v0",
    env_kwargs=(("top_k", 1), ("world", WORLD)),
    train_budgets=(3,),
    train_tasks=600,
    sft_examples=600,
    sft_epochs=2.0,
    sft_learning_rate=5e-5,
    sft_lr_scheduler="constant",
    eval_tasks=60,
    eval_n=16,
    eval_budgets=(1, 2, 3),
    eval_concurrency=16,
    eval_static=True,
    signal_tasks=60,
    signal_n=8,
)
NO_EXAMPLES = str(HERE / "pilot" / "no_examples.json")
TRAININGS = {
    "sft-top8": replace(COMMON, train_layers=8, examples=NO_EXAMPLES),
    "sft-all": replace(COMMON, train_layers=None, examples=NO_EXAMPLES),
}
"""The SFT warm starts: name -> settings (each trains in ``OUT/name``). A fine-tuned model needs no
worked examples: its transcripts and evaluations leave them out, which halves every prompt."""

WARM_START = ("sft-top8", 1)
"""The contrast's base W: sft-top8 after epoch 1 (see contrast.md). Its epoch-2 model is the SFT arm:
W plus one more epoch on the same 600 training tasks' oracle transcripts."""
CONTRAST = {
    "grpo": replace(TRAININGS["sft-top8"], grpo_steps=150, grpo_max_minutes=None),
}
"""The contrast's GRPO arm from W (trains in ``OUT/grpo``): the recipe's CPU settings (8 rollouts of one
training prompt a step, lr 3e-5, temperature 0.8, beta 0, top 8 layers) for 150 steps, on the pilot's
world and 600 training tasks at T = 3, binary reward. Fixed before its first step (contrast.md)."""

GATE = {"pass_16_3_min": 0.2, "pass_1_3_max": 0.5, "signal_min": 0.3}
"""A base for the contrast: PASS@(16,3) >= 0.2, PASS@(1,3) <= 0.5, samples disagree on >= 30% of prompts."""


def models(out: Path) -> dict[str, tuple[str | None, recipe.Settings]]:
    """Every evaluated model: name -> (checkpoint or None for the base model, settings)."""
    found: dict[str, tuple[str | None, recipe.Settings]] = {
        "base": (None, COMMON),
        "examples-2hop": (None, replace(COMMON, examples=str(HERE / "pilot" / "examples_2hop.json"))),
    }
    for name, settings in TRAININGS.items():
        for epoch in (1, 2):
            found[f"{name}-e{epoch}"] = (str(out / name / f"sft-epoch-{epoch}"), settings)
    for name, settings in CONTRAST.items():
        found[name] = (str(out / name / "grpo-model"), settings)
    return found


def warm_start(out: Path) -> Path:
    """The contrast's base W (a trained SFT epoch model)."""
    name, epoch = WARM_START
    return out / name / f"sft-epoch-{epoch}"


def train(name: str, out: Path) -> Path:
    """Train one SFT warm start, or the contrast's GRPO arm from W (each resumes); its folder."""
    settings = TRAININGS.get(name) or CONTRAST[name]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    if name in CONTRAST:
        base = warm_start(out)
        if not (base / recipe.DONE).exists():
            raise SystemExit(f"{name}: the warm start {base} is not trained yet: run `train {WARM_START[0]}` first")
        settings = replace(settings, model=str(base))
        (folder / "settings.json").write_text(json.dumps(asdict(settings), indent=2))
        recipe.train_grpo(str(base), settings, folder)
        return folder
    (folder / "settings.json").write_text(json.dumps(asdict(settings), indent=2))
    recipe.train_sft(recipe.base_model(settings), settings, folder)
    return folder


def evaluate(name: str, out: Path) -> Path:
    """Evaluate one model (resumes); its sequential records."""
    checkpoint, settings = models(out)[name]
    if checkpoint is not None and not (Path(checkpoint) / recipe.DONE).exists():
        raise SystemExit(f"{name}: {checkpoint} is not trained yet: run `train` first")
    folder = out / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.settings.json").write_text(json.dumps(asdict(settings), indent=2))
    return recipe.evaluate(checkpoint or recipe.base_model(settings), name, settings, folder)


def row(name: str, out: Path) -> dict[str, Any] | None:
    """One model's pilot figures from its records (None when nothing was evaluated yet)."""
    from gather_envs.analysis.retrieval import retrieval_diagnostics
    from gather_envs.metrics import count_episodes, pass_at_k
    from gather_envs.runs import read_records

    folder = out / "eval"
    sequential = folder / f"{name}.jsonl"
    if not sequential.exists():
        return None
    result: dict[str, Any] = {"model": name}
    records = read_records(sequential)
    for budget, counts in count_episodes(records).items():
        for k in (1, 16):
            if counts.n and min(counts.n) >= k:
                result[f"pass@({k},{budget})"] = float(pass_at_k(list(counts.n), list(counts.c), k).mean())
        result[f"tasks@{budget}"] = len(counts.n)
    at_3 = [r for r in records if r.budget == 3]
    result["evidence_recall@3"] = retrieval_diagnostics(at_3).mean_recall
    static = folder / f"{name}-static.jsonl"
    if static.exists():
        for budget, counts in count_episodes(read_records(static)).items():
            for k in (1, 16):
                if counts.n and min(counts.n) >= k:
                    result[f"static pass@({k},{budget})"] = float(pass_at_k(list(counts.n), list(counts.c), k).mean())
    signal = folder / f"{name}-signal.jsonl"
    if signal.exists():
        counts = next(iter(count_episodes(read_records(signal)).values()))
        mixed = sum(0 < c < n for n, c in zip(counts.n, counts.c, strict=True))
        result["signal"] = mixed / len(counts.n)
        result["signal_tasks"] = len(counts.n)
    return result


def gate(result: dict[str, Any]) -> str:
    """The gate's verdict for one row: "pass", or what fails / is missing."""
    checks = [
        ("PASS@(16,3)", result.get("pass@(16,3)"), lambda v: v >= GATE["pass_16_3_min"]),
        ("PASS@(1,3)", result.get("pass@(1,3)"), lambda v: v <= GATE["pass_1_3_max"]),
        ("signal", result.get("signal"), lambda v: v >= GATE["signal_min"]),
    ]
    missing = [label for label, value, _ in checks if value is None]
    failed = [label for label, value, ok in checks if value is not None and not ok(value)]
    if missing and not failed:
        return "not measured: " + ", ".join(missing)
    verdict = "pass" if not failed else "fails " + ", ".join(failed)
    short = [
        f"{label} on {result.get(key, 0)} of {want}"
        for label, key, want in (("T = 3", "tasks@3", COMMON.eval_tasks), ("signal", "signal_tasks", COMMON.signal_tasks))
        if result.get(key, 0) < want
    ]
    return verdict if not short else f"{verdict} (preliminary: {', '.join(short)} tasks)"


def table(out: Path) -> str:
    """The pilot table (Markdown) over every model evaluated so far."""
    columns = [
        "pass@(1,1)", "pass@(16,1)", "pass@(1,2)", "pass@(16,2)", "pass@(1,3)", "pass@(16,3)",
        "static pass@(1,0)", "static pass@(16,0)", "evidence_recall@3", "signal",
    ]  # fmt: skip
    lines = [
        "| model | tasks | " + " | ".join(columns) + " | gate |",
        "|---" * (len(columns) + 3) + "|",
    ]
    for name in models(out):
        result = row(name, out)
        if result is None:
            lines.append(f"| {name} | not evaluated |" + " |" * (len(columns) + 1))
            continue
        cells = [f"{result[c]:.3f}" if isinstance(result.get(c), float) else "–" for c in columns]
        lines.append(f"| {name} | {result.get('tasks@3', '–')} | " + " | ".join(cells) + f" | {gate(result)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/pilot"))
    parser.add_argument("stage", choices=("train", "eval", "table", "all"))
    parser.add_argument("names", nargs="*", help="trainings (train: sft-top8, sft-all, grpo) or models (eval); default: all")
    args = parser.parse_args(argv)
    if args.stage in ("train", "all"):
        for name in args.names if args.stage == "train" and args.names else [*TRAININGS, *CONTRAST]:
            train(name, args.out)
    if args.stage in ("eval", "all"):
        for name in args.names if args.stage == "eval" and args.names else models(args.out):
            evaluate(name, args.out)
    if args.stage in ("table", "all"):
        print(table(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
