"""``gather-envs play ID``: play one episode yourself in the terminal."""

from __future__ import annotations

import argparse
import shutil
import textwrap
from typing import Any

import numpy as np

from gather_envs.cli.common import (
    EXIT_ABANDONED,
    MIN_WRAP_WIDTH,
    add_kwarg_option,
    env_kwargs_of,
    int_type,
    kwargs_epilog,
    make_env,
)

PLAY_HELP = """\
Type one action per line, written as the prompt shows, e.g. search[a name] or answer[your answer].
Commands, which cost nothing:
  :task   the task id, seed, searches used and invalid actions so far
  :help   this text
  :quit   give up (Ctrl-D too)
An empty line costs nothing; any other text is an action (a malformed one counts as invalid)."""
META_ALIASES = {
    ":help": ":help", ":h": ":help", "help": ":help", "?": ":help",
    ":quit": ":quit", ":q": ":quit", "quit": ":quit", "exit": ":quit",
    ":task": ":task", ":t": ":task",
}  # fmt: skip
"""Meta-commands of ``play``; the bare words are never valid actions, so they are safe aliases."""


def _fresh_seed() -> int:
    """A new episode seed from the OS's entropy (shown, so the episode can be replayed)."""
    return int(np.random.SeedSequence().generate_state(1)[0])


def _wrap(text: str, width: int) -> str:
    """``text`` word-wrapped at ``width``, each line's continuation under its own first word."""
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        lead = line[: len(line) - len(stripped)]
        marker = stripped.split(" ", 1)[0]
        hang = lead + " " * (len(marker) + 1) if marker.rstrip(".").isdigit() else lead
        lines.append(
            textwrap.fill(
                stripped,
                width,
                initial_indent=lead,
                subsequent_indent=hang,
                break_long_words=False,
                break_on_hyphens=False,  # ids and commands stay whole, to be copied
            )
            or line
        )
    return "\n".join(lines)


def cmd_play(args: argparse.Namespace) -> int:
    env = make_env(args.env_id, env_kwargs_of(args))
    seed = args.seed if args.seed is not None else _fresh_seed()
    options = {"task_id": args.task} if args.task else None
    observation, info = env.reset(seed=seed, options=options)
    width = max(MIN_WRAP_WIDTH, shutil.get_terminal_size().columns - 1)
    replay = f"gather-envs play {args.env_id} --task {info['task_id']} --seed {seed}"

    def show(text: str) -> None:
        print(_wrap(text, width), flush=True)

    def describe_task() -> str:
        return (
            f"task {info['task_id']} (family {info['family']}, {info['hops']} hops), seed {seed}; "
            f"searches used {info['tool_calls_used']} of {info['max_tool_calls']}, "
            f"invalid actions {info['invalid_actions']}\nreplay: {replay}"
        )

    show(f"{describe_task()}\nType :help for help, :quit to give up.\n")
    show(observation)
    done = False
    reward = 0.0
    while not done:
        try:
            line = input("> ")
        except EOFError:
            show(f"\n(input ended; episode abandoned; replay: {replay})")
            return EXIT_ABANDONED
        if not line.strip():
            continue
        command = META_ALIASES.get(line.strip().lower())
        if command == ":help":
            show(PLAY_HELP)
        elif command == ":task":
            show(describe_task())
        elif command == ":quit":
            show(f"episode abandoned; replay: {replay}")
            return 0
        elif line.strip().startswith(":"):
            show(f"unknown command {line.strip()!r}; commands: :help, :task, :quit (nothing was used up)")
        else:
            observation, reward, terminated, truncated, info = env.step(line)
            show(observation)
            done = terminated or truncated
    show(
        f"reward={reward} answer={info.get('answer')!r} gold={info['gold_answer']!r} "
        f"tool_calls={info['tool_calls_used']} termination={info['termination']}"
    )
    return 0


def add_parser(sub: Any) -> None:
    """Declare ``play``."""
    raw = argparse.RawDescriptionHelpFormatter
    play = sub.add_parser(
        "play",
        help="play one episode yourself in the terminal",
        description="Play one episode: the env prints the question, you type actions. "
        ":help, :task and :quit cost nothing.",
        epilog=kwargs_epilog(),
        formatter_class=raw,
    )
    play.add_argument("env_id", metavar="ENV_ID", help="a registered id (gather-envs list)")
    play.add_argument("--task", help="task id (default: drawn with --seed)")
    play.add_argument(
        "--seed", type=int_type(0), default=None, help="episode seed (default: a fresh one, shown)"
    )
    add_kwarg_option(play)
    play.set_defaults(func=cmd_play)
