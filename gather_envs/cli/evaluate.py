"""``gather-envs eval``: play a PASS@(k,T) grid and record every episode (resumable)."""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

from gather_envs.agents import agent_names
from gather_envs.agents.backends.base import REDACTED
from gather_envs.cli.common import (
    EXIT_ALL_INFRA_ERRORS,
    EXIT_INTERRUPTED,
    add_kwarg_option,
    agent_options_of,
    agents_epilog,
    check_out,
    env_kwargs_of,
    hidden_argv,
    int_type,
    kwargs_epilog,
    nonnegative_float,
)
from gather_envs.envs.gather_env import MAX_TOOL_CALLS
from gather_envs.errors import GatherError
from gather_envs.evaluation import plan
from gather_envs.runs import Cell, cell_of, read_records

DEFAULT_BUDGETS = ",".join(map(str, plan.DEFAULT_BUDGETS))


def parse_budgets(text: str) -> tuple[int, ...]:
    """``"0,1,2,3,5"`` as budgets; one-line error for anything else."""
    try:
        budgets = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise GatherError(
            f"bad --budgets {text!r}: expected comma-separated ints such as {DEFAULT_BUDGETS}"
        ) from None
    if not budgets:
        raise GatherError("--budgets is empty: give at least one tool-call budget T")
    for budget in budgets:
        if not 0 <= budget <= MAX_TOOL_CALLS:
            raise GatherError(
                f"bad --budgets {text!r}: each T must be in [0, {MAX_TOOL_CALLS}], got {budget}"
            )
    if len(set(budgets)) != len(budgets):
        raise GatherError(f"bad --budgets {text!r}: a budget is given twice")
    return budgets


def _finished_in(out: str) -> set[Cell]:
    """The (task, T, i) cells ``out`` already holds finished episodes of (they will be resumed)."""
    path = Path(out)
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    with warnings.catch_warnings():  # the run reads the file again and warns once, itself
        warnings.simplefilter("ignore")
        records = read_records(path)
    return {cell_of(record) for record in records if not record.is_infra_error}


def read_task_ids(path: str) -> list[str]:
    """The task ids a ``--task-ids`` file lists, one a line (blank lines skipped); one-line errors."""
    try:
        ids = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise GatherError(f"bad --task-ids: cannot read {path}: {exc}") from None
    if not ids:
        raise GatherError(f"bad --task-ids: {path} lists no task ids")
    return ids


def cmd_eval(args: argparse.Namespace) -> int:
    from gather_envs.evaluation import EvaluationInterrupted, evaluate

    budgets, env_kwargs, options = parse_budgets(args.budgets), env_kwargs_of(args), agent_options_of(args)
    check_out(args.out)
    resumed = _finished_in(args.out)
    try:
        records = evaluate(
            args.env_id,
            args.agent,
            n=args.n,
            budgets=budgets,
            tasks=read_task_ids(args.task_ids) if args.task_ids is not None else args.tasks,
            seed=args.seed,
            concurrency=args.concurrency,
            order=args.order,
            out=args.out,
            env_kwargs=env_kwargs,
            agent_options=options,
            progress=not args.quiet,
            record_trajectory=args.trajectories,
            record_actions=args.actions,
            retries=args.retries,
            backoff=args.backoff,
            engine=args.engine,
            ray_address=args.ray_address,
            workers=args.workers,
        )
    except EvaluationInterrupted as exc:
        argv = getattr(args, "argv", [])
        command = shlex.join(["gather-envs", *hidden_argv(argv)])
        if hidden_argv(argv) != list(argv):
            command += f" (the API key is shown as {REDACTED}: put it back, or set GATHER_API_KEY)"
        print(f"gather-envs: {exc}; resume by running the same command again: {command}", file=sys.stderr)
        return EXIT_INTERRUPTED
    infra = sum(record.is_infra_error for record in records)
    finished = len(records) - infra
    rate = (
        sum(record.success for record in records if not record.is_infra_error) / finished if finished else 0.0
    )
    played_now = sum(cell_of(record) not in resumed for record in records)
    print(
        f"{args.out}: {len(records)} episodes ({played_now} played now, {len(records) - played_now} "
        f"resumed from the file, {infra} infrastructure errors), success rate {rate:.3f}; "
        f"next: gather-envs report {shlex.quote(args.out)}"
    )
    if records and not finished:
        first = next((record.infra_error for record in records if record.infra_error), None) or "?"
        print(
            f"gather-envs: error: every one of the {len(records)} episodes is an infrastructure error, "
            f"so nothing was measured (first: {first[:300]}); fix the server and rerun the same "
            f"command to retry them (exit {EXIT_ALL_INFRA_ERRORS})",
            file=sys.stderr,
        )
        return EXIT_ALL_INFRA_ERRORS
    return 0


def add_parser(sub: Any) -> None:
    """Declare ``eval``."""
    raw = argparse.RawDescriptionHelpFormatter
    from gather_envs.evaluation.plan import DEFAULT_N
    from gather_envs.evaluation.runner import DEFAULT_BACKOFF_S, DEFAULT_RETRIES, ENGINE_LOCAL, ENGINES

    evaluate = sub.add_parser(
        "eval",
        help="run an agent on a PASS@(k,T) grid of tasks x budgets x n episodes (resumable)",
        description="Play n episodes per task and budget T and append one JSON line per episode to\n"
        "--out. Pointed at an existing file it runs only the missing episodes. Exits 3 when every\n"
        "episode is an infrastructure error (nothing was measured).",
        epilog=agents_epilog() + "\n\n" + kwargs_epilog(),
        formatter_class=raw,
    )
    evaluate.add_argument("env_id", metavar="ENV_ID", help="a registered id (gather-envs list)")
    evaluate.add_argument(
        "--agent",
        required=True,
        metavar="NAME",
        help=f"one of {', '.join(agent_names())}, or module:attr (options: see the end)",
    )
    evaluate.add_argument(
        "--out", required=True, metavar="RUN.jsonl", help="records file (resumed if it exists)"
    )
    evaluate.add_argument(
        "--n", type=int_type(1), default=DEFAULT_N, help="episodes per task and budget (default %(default)s)"
    )
    evaluate.add_argument(
        "--budgets",
        default=DEFAULT_BUDGETS,
        metavar="T,T,...",
        help=f"comma-separated tool-call budgets T, each in [0, {MAX_TOOL_CALLS}] (default %(default)s)",
    )
    which = evaluate.add_mutually_exclusive_group()
    which.add_argument("--tasks", type=int_type(1), metavar="N", help="a seeded sample of N tasks (default: all)")
    which.add_argument(
        "--task-ids", metavar="FILE", help="exactly these tasks: a file of task ids, one a line"
    )
    evaluate.add_argument(
        "--seed",
        type=int_type(0),
        default=0,
        help="base seed of the task sample and episode seeds (default %(default)s)",
    )
    evaluate.add_argument(
        "--concurrency",
        type=int_type(1),
        metavar="N",
        default=1,
        help="episodes played at once, in threads (default %(default)s)",
    )
    evaluate.add_argument(
        "--order",
        choices=plan.ORDERS,
        default=plan.ORDER_EPISODES,
        help="play episode index first (balanced when stopped early; the default) or each (task, T)'s "
        "n episodes together (a local model's prefix cache then computes their first prompt once); "
        "the records are the same",
    )
    add_kwarg_option(evaluate)
    evaluate.add_argument(
        "--agent-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="agent option, repeatable, e.g. --agent-option temperature=0.7 (names: see the end)",
    )
    evaluate.add_argument("--trajectories", action="store_true", help="record every action and observation")
    evaluate.add_argument(
        "--actions",
        action="store_true",
        help="record every raw action (not the observations): what a leaderboard submission needs to be replayed",
    )
    evaluate.add_argument(
        "--retries",
        type=int_type(0),
        metavar="N",
        default=DEFAULT_RETRIES,
        help="retries of an infrastructure error such as a server timeout (default %(default)s)",
    )
    evaluate.add_argument(
        "--backoff",
        type=nonnegative_float,
        default=DEFAULT_BACKOFF_S,
        metavar="SECONDS",
        help="first retry delay, doubled on each retry (default %(default)s)",
    )
    evaluate.add_argument(
        "--engine", choices=ENGINES, default=ENGINE_LOCAL, help="who plays: this process, or Ray actors"
    )
    evaluate.add_argument(
        "--ray-address", metavar="ADDR", help="Ray cluster to join (default: start a local instance)"
    )
    evaluate.add_argument(
        "--workers", type=int, metavar="N", help="Ray actors, --concurrency episodes each (default: 1/node)"
    )
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar or notes")
    evaluate.set_defaults(func=cmd_eval)
