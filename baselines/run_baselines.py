"""Run the published baselines with ``gather-envs eval`` and write their PASS@(k,T) results.

Each ``baselines/*.json`` defines one baseline (agent, options, envs, budgets, n, tasks, seed).
For every baseline and env this runs::

    python -m gather_envs.cli eval ENV --agent AGENT --out RECORDS.jsonl --n N --budgets B --tasks K \\
        --seed S [--kwarg k=v ...] [--agent-option k=v ...] --quiet
    python -m gather_envs.cli report RECORDS.jsonl --format json > results/NAME/ENV.json
    python -m gather_envs.cli report RECORDS.jsonl --format md   > results/NAME/ENV.md

Records go to ``baselines/records/`` (large, so git-ignored by a ``.gitignore`` the script writes
there; resumable: rerunning continues an interrupted run), results to ``baselines/results/``. Usage::

    python baselines/run_baselines.py                  # every definition
    python baselines/run_baselines.py heuristic oracle # some of them
    python baselines/run_baselines.py --dry-run        # print the commands only
    python baselines/run_baselines.py --summary-only   # rewrite results/SUMMARY.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_RECORDS = HERE / "records"
DEFAULT_RESULTS = HERE / "results"
REQUIRED = ("name", "agent", "envs", "budgets", "n", "seed")
CLI = [sys.executable, "-m", "gather_envs.cli"]
SUMMARY_NOTE = (
    "Mean over the sampled test tasks of the unbiased pass@k estimate, for k = 1 and k = n; "
    "the per-env JSON and markdown reports beside this file have every k, 95% bootstrap intervals, "
    "|B_T| and T*. The `chance floor` row is the best question-only guesser's PASS@(k,0) over all "
    "test tasks (from the corpus manifest's `chance_floor`; it never searches, so it is the same "
    "at every T). Written by `python baselines/run_baselines.py`."
)
FLOOR_KS = (1, 64)


def load_definitions(names: list[str]) -> list[dict[str, Any]]:
    """The definitions to run: the named ones, or every ``*.json`` beside this script."""
    paths = [HERE / f"{name}.json" for name in names] if names else sorted(HERE.glob("*.json"))
    definitions = []
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"run_baselines: no definition {path}")
        definition = json.loads(path.read_text(encoding="utf-8"))
        missing = [key for key in REQUIRED if key not in definition]
        if missing:
            raise SystemExit(f"run_baselines: {path} lacks {', '.join(missing)}")
        definitions.append(definition)
    return definitions


def _pairs(flag: str, values: dict[str, Any]) -> list[str]:
    """``--flag key=value`` for each item; values are written as JSON unless they are strings."""
    args = []
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        args += [flag, f"{key}={text}"]
    return args


def eval_command(definition: dict[str, Any], env_id: str, records: Path) -> list[str]:
    """The ``gather-envs eval`` command line of one baseline on one env."""
    command = [*CLI, "eval", env_id, "--agent", definition["agent"], "--out", str(records)]
    command += ["--n", str(definition["n"]), "--budgets", ",".join(map(str, definition["budgets"]))]
    command += ["--seed", str(definition["seed"]), "--concurrency", str(definition.get("concurrency", 1))]
    if definition.get("tasks") is not None:
        command += ["--tasks", str(definition["tasks"])]
    command += _pairs("--kwarg", definition.get("env_kwargs") or {})
    command += _pairs("--agent-option", definition.get("agent_options") or {})
    return [*command, "--quiet"]


def run(definition: dict[str, Any], records_dir: Path, results_dir: Path, dry_run: bool) -> None:
    """Evaluate one baseline on each of its envs, then write its reports."""
    name = definition["name"]
    for env_id in definition["envs"]:
        records = records_dir / name / f"{env_id}.jsonl"
        results = results_dir / name
        command = eval_command(definition, env_id, records)
        print("$ " + shlex.join(command), flush=True)
        if dry_run:
            continue
        records.parent.mkdir(parents=True, exist_ok=True)
        ignore = records_dir / ".gitignore"  # records are large and reproducible: never commit them
        if not ignore.exists():
            ignore.write_text("*\n", encoding="utf-8")
        results.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        subprocess.run(command, check=True)
        print(f"  {name} on {env_id}: {time.perf_counter() - started:.0f} s", flush=True)
        for fmt in ("json", "md"):
            report = subprocess.run(
                [*CLI, "report", str(records), "--format", fmt], check=True, capture_output=True, text=True
            )
            (results / f"{env_id}.{fmt}").write_text(report.stdout, encoding="utf-8")


def summarize(results_dir: Path) -> str:
    """A markdown table per env: pass@1 and pass@n of every baseline at every budget T."""
    by_env: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(results_dir.glob("*/*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["baseline"] = path.parent.name  # the definition's name, e.g. react-smollm2
        by_env.setdefault(data["env_id"], []).append(data)
    lines = ["# Baseline PASS@(k,T)", "", SUMMARY_NOTE, ""]
    for env_id in sorted(by_env):
        runs = sorted(by_env[env_id], key=lambda d: d["baseline"])
        budgets = sorted({b for run in runs for b in run["budgets"]})
        lines += [f"## {env_id}", ""]
        lines.append("| baseline | n | tasks | k | " + " | ".join(f"T={b}" for b in budgets) + " |")
        lines.append("|---" * (4 + len(budgets)) + "|")
        lines += _floor_rows(env_id, budgets)
        for run in runs:
            cells = {(row["T"], row["k"]): row["pass"] for row in run["table"]}
            for k in sorted({1, max(run["ks"])}):
                values = [f"{cells[(b, k)]:.3f}" if (b, k) in cells else "—" for b in budgets]
                lines.append(
                    f"| {run['baseline']} | {run['n']} | {run['num_tasks']} | {k} | "
                    + " | ".join(values)
                    + " |"
                )
        lines.append("")
    return "\n".join(lines)


def _floor_rows(env_id: str, budgets: list[int]) -> list[str]:
    """The chance-floor rows of one env's table, read from the default corpus's manifest."""
    from gather_envs.corpus.frozen import DEFAULT_CORPUS, corpora_root
    from gather_envs.envs.registration import SYNTHETIC_ENVS

    if env_id not in SYNTHETIC_ENVS:
        return []
    manifest = json.loads((corpora_root() / DEFAULT_CORPUS / "manifest.json").read_text(encoding="utf-8"))
    floor = manifest["chance_floor"][SYNTHETIC_ENVS[env_id]["family"]]
    rows = []
    for k in FLOOR_KS:
        value, guesser = floor["floor"][str(k)], floor["best_guesser"][str(k)]
        rows.append(
            f"| chance floor ({guesser}) | — | {floor['tasks']} | {k} | "
            + " | ".join(f"{value:.3f}" for _ in budgets)
            + " |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="definition names (default: all baselines/*.json)")
    parser.add_argument("--records", type=Path, default=DEFAULT_RECORDS, help="where records files go")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where results files go")
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    parser.add_argument("--summary-only", action="store_true", help="only rewrite results/SUMMARY.md")
    args = parser.parse_args(argv)
    if not args.summary_only:
        for definition in load_definitions(args.names):
            run(definition, args.records, args.results, args.dry_run)
    if not args.dry_run:
        summary = args.results / "SUMMARY.md"
        summary.write_text(summarize(args.results), encoding="utf-8")
        print(f"wrote {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
