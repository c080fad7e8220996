"""``gather-envs show ID``: print a task with its gold path."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gather_envs.cli.common import (
    add_kwarg_option,
    env_kwargs_of,
    int_type,
    kwargs_epilog,
    make_env,
    unwrap,
)
from gather_envs.errors import GatherError


def cmd_show(args: argparse.Namespace) -> int:
    env = unwrap(make_env(args.env_id, env_kwargs_of(args)))
    if not args.task and args.index >= len(env.tasks):
        raise GatherError(
            f"bad --index {args.index}: {args.env_id} has {len(env.tasks)} {env.split!r} tasks, "
            f"so --index runs from 0 to {len(env.tasks) - 1}"
        )
    task = env.corpus.task(args.task) if args.task else env.tasks[args.index]
    if args.json:
        print(json.dumps(task.to_json(), indent=2, ensure_ascii=False))
        return 0
    print(f"{task.task_id}  family={task.family} hops={task.hops} kind={task.kind}")
    print(f"Q: {task.question}")
    print(f"A: {task.answer}" + (f"  (aliases: {', '.join(task.aliases)})" if task.aliases else ""))
    for number, step in enumerate(task.gold_path, start=1):
        doc = env.corpus.doc(step.doc_id)
        print(f"  hop {number}: search[{step.query}] -> {doc.doc_id} {doc.title}")
        print(f"         {doc.text}")
    return 0


def add_parser(sub: Any) -> None:
    """Declare ``show``."""
    raw = argparse.RawDescriptionHelpFormatter
    show = sub.add_parser(
        "show", help="print a task with its gold path", epilog=kwargs_epilog(), formatter_class=raw
    )
    show.add_argument("env_id", metavar="ENV_ID", help="a registered id (gather-envs list)")
    show.add_argument("--task", help="task id (default: the task at --index)")
    show.add_argument(
        "--index",
        type=int_type(0),
        default=0,
        help="position of the task in the env's split, from 0 (default %(default)s)",
    )
    show.add_argument("--json", action="store_true", help="print the task record as JSON")
    add_kwarg_option(show)
    show.set_defaults(func=cmd_show)
