"""The gather-envs command: one module per command, each declaring its own parser.

Errors are one line and exit 2; an interrupted eval exits 130 and says how to resume; an
eval whose every episode is an infrastructure error (the server was down, hung or answered
garbage) exits 3, and report on such a run starts with a warning. No printed line holds an
API key (--agent-option api_key=... is shown as api_key=****).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

import gather_envs
from gather_envs.agents.backends.base import redact
from gather_envs.cli import (
    analyze,
    compare,
    docs,
    evaluate,
    generate,
    import_corpus,
    index,
    leaderboard,
    list_ids,
    play,
    report,
    sample,
    serve,
    show,
)
from gather_envs.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, Parser, argv_secrets
from gather_envs.cli.docs import doc_topics
from gather_envs.errors import GatherError

COMMANDS = (
    list_ids, docs, show, play, generate, evaluate, report, compare, sample, import_corpus, index, leaderboard,
    serve, analyze,
)  # fmt: skip
"""The command modules, in the order ``--help`` lists them; each declares itself in ``add_parser``."""
DESCRIPTION = """\
Gymnasium environments for PASS@(k,T): search a corpus within a budget of T tool calls.

Start with:  gather-envs list                          (the ids)
             gather-envs play Gather-MultiHop-v0       (play one episode yourself)
             gather-envs eval Gather-MultiHop-v0 --agent heuristic --out run.jsonl
             gather-envs report run.jsonl
Documentation: gather-envs docs TOPIC  (topics: {topics})"""


def build_parser() -> argparse.ArgumentParser:
    """The ``gather-envs`` parser, built from each command module's own declaration."""
    parser = Parser(
        prog="gather-envs",
        description=DESCRIPTION.format(topics=", ".join(doc_topics())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=gather_envs.__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> str:
    """Warnings as the CLI's own one-line notes, without Python's file, line and source text."""
    return f"gather-envs: warning: {' '.join(str(message).split())}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status."""
    warnings.formatwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except (GatherError, gym.error.Error) as exc:
        one_line = " ".join(str(exc).split())
        print(f"gather-envs: error: {redact(one_line, argv_secrets(args.argv))}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # output piped into `head` and friends
        _silence_stdout()
        return 0
    except OSError as exc:  # a path the user gave cannot be read or written
        where = f" {exc.filename}" if exc.filename else ""
        print(f"gather-envs: error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gather-envs: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
