"""What every command shares: exit codes, the one-line-error parser, argument types, env kwargs, epilogs."""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym

import gather_envs
from gather_envs.agents import agent_names, agent_options
from gather_envs.agents.backends.base import REDACTED, SECRET_OPTIONS, known_secrets
from gather_envs.envs.dataset_registration import DATASET_ENVS
from gather_envs.envs.gather_env import GatherEnv
from gather_envs.envs.parameters import env_parameters
from gather_envs.errors import ConfigError, GatherError
from gather_envs.json_files import NotJson, loads_bounded
from gather_envs.parameters import Parameter, parse_parameters
from gather_envs.tasks.floor import FloorTable, floor_warnings

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_ABANDONED = 1  # play: the input ended before the episode did
EXIT_ALL_INFRA_ERRORS = 3
"""``eval`` exit status when every episode of the run is an infrastructure error."""
REPORT_FORMATS = ("table", "md", "csv", "json")
MIN_WRAP_WIDTH = 40
DIVERSITY_KEY = "diversity"
"""Key added to the results (or comparison) JSON printed by ``report``/``compare --format json``."""

class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: what was wrong and where to look."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        self.exit(EXIT_ERROR, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


def int_type(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an int within [minimum, maximum], with a message naming the range."""
    expected = f"an int >= {minimum}" if maximum is None else f"an int in [{minimum}, {maximum}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def split_pair(pair: str, flag: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise GatherError(f"bad {flag} {pair!r}: expected KEY=VALUE, e.g. {flag} top_k=5")
    return key, value


def json_or_text(value: str) -> Any:
    try:
        return loads_bounded(value)
    except NotJson:  # too deep or too large counts as text too; the env or agent then refuses it
        return value


def parse_kwargs(pairs: Sequence[str], flag: str = "--kwarg") -> dict:
    """``key=value`` pairs; values are JSON when they parse as JSON, else strings."""
    return {key: json_or_text(value) for key, value in (split_pair(pair, flag) for pair in pairs)}


def checked(
    pairs: Sequence[str], flag: str, owner: str, declared: Sequence[Parameter] | None, noun: str
) -> dict:
    """``key=value`` pairs checked against declared parameters (names, types, ranges), converted.

    A string parameter keeps the text as typed (``model=7`` stays ``"7"``); other values are read
    as JSON when they parse. Undeclared (``None``) means no check: the values pass as JSON or text.
    """
    if declared is None:
        return parse_kwargs(pairs, flag)
    by_name = {p.name: p for p in declared}
    checked = {}
    for pair in pairs:
        key, text = split_pair(pair, flag)
        value: Any = text if key in by_name and by_name[key].kind is str else json_or_text(text)
        try:
            checked.update(parse_parameters(owner, declared, {key: value}, noun=noun))
        except ConfigError as exc:
            if key not in by_name:  # the value is not echoed: it may be a key under a misspelt name
                raise GatherError(f"bad {flag} {key}=...: {exc}") from None
            raise GatherError(f"bad {flag} {pair}: expected {by_name[key].expected()}") from None
    return checked


def check_env_id(env_id: str) -> None:
    if env_id not in gym.registry:
        import difflib

        offered = [*gather_envs.ENV_IDS, *DATASET_ENVS]
        close = difflib.get_close_matches(env_id, offered, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise GatherError(f"unknown env id {env_id!r}{hint}; choose one of {', '.join(offered)}")


def env_kwargs_of(args: argparse.Namespace) -> dict:
    """The ``--kwarg`` pairs of ``args``, checked against the env id's declared kwargs."""
    from gather_envs.world.generator import WorldConfig

    check_env_id(args.env_id)
    kwargs = checked(args.kwarg, "--kwarg", args.env_id, env_parameters(args.env_id), "kwarg")
    if isinstance(kwargs.get("world"), dict):  # the knobs inside world={...}, before a world is built
        try:
            WorldConfig.from_json(kwargs["world"])
        except ConfigError as exc:
            raise GatherError(f"bad --kwarg world=...: {exc}") from None
    return kwargs


def agent_options_of(args: argparse.Namespace) -> dict:
    """The ``--agent-option`` pairs, checked against the agent's declared options."""
    if ":" in args.agent:  # module:attr: the factory checks its own options when it is built
        return parse_kwargs(args.agent_option, "--agent-option")
    if args.agent not in agent_names():
        raise GatherError(
            f"bad --agent {args.agent!r}: unknown agent; choose one of {', '.join(agent_names())}, "
            "or module:attr of an Agent or a factory"
        )
    declared = agent_options(args.agent)
    return checked(args.agent_option, "--agent-option", f"agent {args.agent!r}", declared, "option")


def check_out(out: str) -> None:
    """``--out`` must be a file we can write (checked before a long run starts); missing folders are made."""
    path = Path(out)
    if path.is_dir():
        raise GatherError(f"bad --out {out}: it is a folder; give a file such as {path / 'run.jsonl'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GatherError(f"bad --out {out}: cannot create folder {path.parent} ({exc.strerror})") from None
    existed = path.exists()
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise GatherError(f"bad --out {out}: cannot write there ({exc.strerror})") from None
    if not existed:
        path.unlink()


def argv_secrets(argv: Sequence[str]) -> tuple[str, ...]:
    """The secret option values given on the command line, and the keys in the environment."""
    options = {}
    for token in argv:
        for name in SECRET_OPTIONS:
            _, sep, value = token.partition(f"{name}=")
            if sep:
                options[name] = value
    return known_secrets(options)


def hidden_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of every secret option replaced by ****."""
    hidden = []
    for token in argv:
        for name in SECRET_OPTIONS:
            head, sep, _ = token.partition(f"{name}=")
            if sep:
                token = f"{head}{name}={REDACTED}"
        hidden.append(token)
    return hidden


def make_env(env_id: str, kwargs: dict) -> gym.Env:
    """``gym.make`` with a one-line error for unknown ids."""
    check_env_id(env_id)
    return gym.make(env_id, **kwargs)


def unwrap(env: gym.Env) -> GatherEnv:
    """The GatherEnv inside ``env``'s wrappers."""
    inner = env.unwrapped
    if not isinstance(inner, GatherEnv):
        raise GatherError(f"{env} is not a gather-envs environment")
    return inner


def diversity_json(diversities: dict) -> dict:
    return {agent: diversity.to_json() for agent, diversity in diversities.items()}


def parse_ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",")]
    except ValueError:
        raise GatherError(f"bad --k {text!r}: expected comma-separated ints >= 1, e.g. --k 1,4") from None
    if not ks or min(ks) < 1:
        raise GatherError(f"bad --k {text!r}: expected comma-separated ints >= 1, e.g. --k 1,4")
    return ks


def add_stats_options(parser: argparse.ArgumentParser) -> None:
    from gather_envs.metrics import DEFAULT_BOOTSTRAP

    parser.add_argument(
        "--format",
        choices=REPORT_FORMATS,
        default="table",
        help="table (terminal), md, csv (the PASS@(k,T) rows only) or json (results JSON + diversity); "
        "default: %(default)s",
    )
    parser.add_argument("--plot", metavar="DIR", help="also write PNG plots into DIR (needs matplotlib)")
    parser.add_argument(
        "--bootstrap",
        type=int_type(0),
        default=DEFAULT_BOOTSTRAP,
        metavar="B",
        help="bootstrap resamples for the 95%% intervals (0: none; default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int_type(0), default=0, help="seed of the bootstrap resamples (default %(default)s)"
    )


def add_kwarg_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="env kwarg, repeatable, e.g. --kwarg top_k=5 --kwarg dialect=tags (names: see the end)",
    )


def kwargs_epilog() -> str:
    """The env kwargs of the synthetic and the real-data ids, for the end of a command's help."""
    synthetic = env_parameters(gather_envs.ENV_IDS[0]) or ()
    real = env_parameters(next(iter(DATASET_ENVS))) or ()
    extra = [p for p in real if p.name not in {q.name for q in synthetic}]
    return listing(
        "env kwargs (--kwarg KEY=VALUE):",
        [
            ("Gather-*", ", ".join(p.describe() for p in synthetic)),
            ("real-data ids also", ", ".join(p.describe() for p in extra)),
        ],
    )


def agents_epilog() -> str:
    """Every registered agent with its options, for the end of ``eval --help``."""
    rows, shared = [], {}
    for name in agent_names():
        declared = agent_options(name)
        if declared is None:
            rows.append((name, "options not declared"))
        elif len(declared) > 4:  # the LLM agents share one long list: show it once
            shared.setdefault(tuple(p.name for p in declared), []).append(name)
        else:
            rows.append((name, ", ".join(p.describe() for p in declared) or "no options"))
    for names, agents in shared.items():
        rows.append((", ".join(agents), ", ".join(names) + "  (gather-envs docs agents)"))
    rows.append(("module:attr", "an Agent, or a factory called as factory(env, **options)"))
    return listing("agents (--agent NAME, options as --agent-option KEY=VALUE):", rows)


def listing(title: str, rows: Sequence[tuple[str, str]]) -> str:
    width = max(MIN_WRAP_WIDTH, min(shutil.get_terminal_size().columns, 100) - 2)
    lines = [title]
    for name, text in rows:
        lines.append(textwrap.fill(text, width, initial_indent=f"  {name}: ", subsequent_indent="      "))
    return "\n".join(lines)


def print_floor_warnings(floor: FloorTable | None, fmt: str) -> None:
    """One line per family a question-only guess solves too often (stderr when stdout is data)."""
    for line in [] if floor is None else floor_warnings(floor):
        print(line, file=sys.stderr if fmt in ("json", "csv") else sys.stdout)
