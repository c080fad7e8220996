"""The gather-envs command: list, docs, show, play, generate, eval, report, compare, sample and serve-retrieval.

Errors are one line and exit 2; an interrupted eval exits 130 and says how to resume; an
eval whose every episode is an infrastructure error (the server was down, hung or answered
garbage) exits 3, and report on such a run starts with a warning. No printed line holds an
API key (--agent-option api_key=... is shown as api_key=****).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym
import numpy as np

import gather_envs
from gather_envs.agents import agent_names, agent_options
from gather_envs.agents.backends.base import REDACTED, SECRET_OPTIONS, known_secrets, redact
from gather_envs.corpus.cli_import import add_import_parser
from gather_envs.corpus.datasets import FORMATS
from gather_envs.corpus.datasets.cli_sample import add_sample_parser
from gather_envs.envs.custom_registration import NEEDS as CUSTOM_NEEDS
from gather_envs.envs.dataset_registration import DATASET_ENVS
from gather_envs.envs.gather_env import GatherEnv
from gather_envs.envs.parameters import MAX_TOOL_CALLS, env_parameters
from gather_envs.errors import ConfigError, GatherError
from gather_envs.leaderboard.cli import add_leaderboard_parser
from gather_envs.parameters import Parameter, parameters_from_signature, parse_parameters
from gather_envs.records import EpisodeRecord, read_records

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_ABANDONED = 1  # play: the input ended before the episode did
EXIT_ALL_INFRA_ERRORS = 3
"""``eval`` exit status when every episode of the run is an infrastructure error."""
REPORT_FORMATS = ("table", "md", "csv", "json")
DIVERSITY_KEY = "diversity"
"""Key added to the results (or comparison) JSON printed by ``report``/``compare --format json``."""
RETRIEVAL_KEY = "retrieval"
"""Key added to the results JSON printed by ``report --format json``: the retrieval diagnostics."""
DEFAULT_BUDGETS = "0,1,2,3,5"
DOCS_FOLDER = "_docs"  # where the wheel installs docs/*.md inside the package
API_TO_FLAG = {"pass restrict_to_common=True": "pass --common-tasks"}
"""Library hints in error messages, as the CLI user has to act on them."""
DESCRIPTION = """\
Gymnasium environments for PASS@(k,T): search a corpus within a budget of T tool calls.

Start with:  gather-envs list                          (the ids)
             gather-envs play Gather-MultiHop-v0       (play one episode yourself)
             gather-envs eval Gather-MultiHop-v0 --agent heuristic --out run.jsonl
             gather-envs report run.jsonl
Documentation: gather-envs docs TOPIC  (topics: {topics})"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: what was wrong and where to look."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        self.exit(EXIT_ERROR, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


def _int_type(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
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


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _split_pair(pair: str, flag: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise GatherError(f"bad {flag} {pair!r}: expected KEY=VALUE, e.g. {flag} top_k=5")
    return key, value


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _parse_kwargs(pairs: Sequence[str], flag: str = "--kwarg") -> dict:
    """``key=value`` pairs; values are JSON when they parse as JSON, else strings."""
    return {key: _json_or_text(value) for key, value in (_split_pair(pair, flag) for pair in pairs)}


def _checked(
    pairs: Sequence[str], flag: str, owner: str, declared: Sequence[Parameter] | None, noun: str
) -> dict:
    """``key=value`` pairs checked against declared parameters (names, types, ranges), converted.

    A string parameter keeps the text as typed (``model=7`` stays ``"7"``); other values are read
    as JSON when they parse. Undeclared (``None``) means no check: the values pass as JSON or text.
    """
    if declared is None:
        return _parse_kwargs(pairs, flag)
    by_name = {p.name: p for p in declared}
    checked = {}
    for pair in pairs:
        key, text = _split_pair(pair, flag)
        value: Any = text if key in by_name and by_name[key].kind is str else _json_or_text(text)
        try:
            checked.update(parse_parameters(owner, declared, {key: value}, noun=noun))
        except ConfigError as exc:
            if key not in by_name:  # the value is not echoed: it may be a key under a misspelt name
                raise GatherError(f"bad {flag} {key}=...: {exc}") from None
            raise GatherError(f"bad {flag} {pair}: expected {by_name[key].expected()}") from None
    return checked


def _check_env_id(env_id: str) -> None:
    if env_id not in gym.registry:
        import difflib

        offered = [*gather_envs.ENV_IDS, *DATASET_ENVS]
        close = difflib.get_close_matches(env_id, offered, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise GatherError(f"unknown env id {env_id!r}{hint}; choose one of {', '.join(offered)}")


def _env_kwargs(args: argparse.Namespace) -> dict:
    """The ``--kwarg`` pairs of ``args``, checked against the env id's declared kwargs."""
    from gather_envs.world.generator import WorldConfig

    _check_env_id(args.env_id)
    kwargs = _checked(args.kwarg, "--kwarg", args.env_id, env_parameters(args.env_id), "kwarg")
    if isinstance(kwargs.get("world"), dict):  # the knobs inside world={...}, before a world is built
        try:
            WorldConfig.from_json(kwargs["world"])
        except ConfigError as exc:
            raise GatherError(f"bad --kwarg world=...: {exc}") from None
    return kwargs


def _agent_options(args: argparse.Namespace) -> dict:
    """The ``--agent-option`` pairs, checked against the agent's declared options."""
    if ":" in args.agent:  # module:attr: the factory checks its own options when it is built
        return _parse_kwargs(args.agent_option, "--agent-option")
    if args.agent not in agent_names():
        raise GatherError(
            f"bad --agent {args.agent!r}: unknown agent; choose one of {', '.join(agent_names())}, "
            "or module:attr of an Agent or a factory"
        )
    declared = agent_options(args.agent)
    return _checked(args.agent_option, "--agent-option", f"agent {args.agent!r}", declared, "option")


def _check_out(out: str) -> None:
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


def _argv_secrets(argv: Sequence[str]) -> tuple[str, ...]:
    """The secret option values given on the command line, and the keys in the environment."""
    options = {}
    for token in argv:
        for name in SECRET_OPTIONS:
            _, sep, value = token.partition(f"{name}=")
            if sep:
                options[name] = value
    return known_secrets(options)


def _hidden(argv: Sequence[str]) -> list[str]:
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
    _check_env_id(env_id)
    return gym.make(env_id, **kwargs)


def unwrap(env: gym.Env) -> GatherEnv:
    """The GatherEnv inside ``env``'s wrappers."""
    inner = env.unwrapped
    if not isinstance(inner, GatherEnv):
        raise GatherError(f"{env} is not a gather-envs environment")
    return inner


def docs_root() -> Path:
    """Where the docs live: inside the installed wheel, else the source tree's docs/."""
    package = Path(__file__).resolve().parent
    installed = package / DOCS_FOLDER
    return installed if installed.is_dir() else package.parent / "docs"


def doc_topics() -> list[str]:
    root = docs_root()
    return sorted(p.stem for p in root.glob("*.md")) if root.is_dir() else []


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for env_id in gather_envs.ENV_IDS:
        env = unwrap(gym.make(env_id))
        splits = {s: len(env.corpus.tasks(s, env.family)) for s in sorted(env.corpus.splits)}
        rows.append((env_id, env.family, env.max_tool_calls, splits, env.corpus.name))
    print(f"{'id':<22} {'family':<11} {'T':>2}  {'tasks per split':<22} corpus")
    for env_id, family, budget, splits, corpus in rows:
        sizes = ", ".join(f"{s}={n}" for s, n in splits.items())
        print(f"{env_id:<22} {family:<11} {budget:>2}  {sizes:<22} {corpus}")
    print("\nReal-data ids (need path= to a file you supply; see `gather-envs docs datasets`):")
    for env_id, name in DATASET_ENVS.items():
        print(f"{env_id:<22} format={name:<9} e.g. path=.../{FORMATS[name].example_file}")
    print("\nYour own data (see `gather-envs docs custom`):")
    for env_id, needs in CUSTOM_NEEDS.items():
        print(f"{env_id:<22} {needs}")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    if args.topic is None:
        for topic in doc_topics():
            lines = (docs_root() / f"{topic}.md").read_text(encoding="utf-8").splitlines()
            title = next((line.lstrip("# ") for line in lines if line.startswith("#")), "")
            print(f"{topic:<14} {title}")
        print("\nprint one with: gather-envs docs TOPIC")
        return 0
    print((docs_root() / f"{args.topic}.md").read_text(encoding="utf-8"), end="")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    env = unwrap(make_env(args.env_id, _env_kwargs(args)))
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
MIN_WRAP_WIDTH = 40


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
    env = make_env(args.env_id, _env_kwargs(args))
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


def cmd_generate(args: argparse.Namespace) -> int:
    from gather_envs.corpus.frozen import regenerate, write_frozen
    from gather_envs.corpus.synthetic import generate_corpus
    from gather_envs.world.generator import WorldConfig

    out = Path(args.out)
    if args.from_manifest:
        manifest = regenerate(Path(args.from_manifest), out)
    else:
        knobs = _checked(args.knob, "--knob", "the world", parameters_from_signature(WorldConfig), "knob")
        corpus, stats = generate_corpus(WorldConfig.from_json(knobs), args.name)
        manifest = write_frozen(corpus, stats, out)
    print(f"wrote {out} content_hash={manifest['content_hash']}")
    for stat in manifest["filter_stats"]:
        split = stat.get("split", "")
        print(
            f"  {split:<5} {stat['family']:<11} kept={stat['kept']} shortcut_rate={stat['shortcut_rate']:.4f}"
        )
    return 0


def _parse_budgets(text: str) -> tuple[int, ...]:
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


def _finished_in(out: str) -> set[tuple[str, int, int]]:
    """The (task, T, i) cells ``out`` already holds finished episodes of (they will be resumed)."""
    path = Path(out)
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    with warnings.catch_warnings():  # the run reads the file again and warns once, itself
        warnings.simplefilter("ignore")
        records = read_records(path)
    return {_cell(record) for record in records if not record.is_infra_error}


def _cell(record: EpisodeRecord) -> tuple[str, int, int]:
    return (record.task_id, record.budget, record.episode_index)


def cmd_eval(args: argparse.Namespace) -> int:
    from gather_envs.evaluation import EvaluationInterrupted, evaluate

    budgets, env_kwargs, options = _parse_budgets(args.budgets), _env_kwargs(args), _agent_options(args)
    _check_out(args.out)
    resumed = _finished_in(args.out)
    try:
        records = evaluate(
            args.env_id,
            args.agent,
            n=args.n,
            budgets=budgets,
            tasks=args.tasks,
            seed=args.seed,
            concurrency=args.concurrency,
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
        command = shlex.join(["gather-envs", *_hidden(argv)])
        if _hidden(argv) != list(argv):
            command += f" (the API key is shown as {REDACTED}: put it back, or set GATHER_API_KEY)"
        print(f"gather-envs: {exc}; resume by running the same command again: {command}", file=sys.stderr)
        return EXIT_INTERRUPTED
    infra = sum(record.is_infra_error for record in records)
    finished = len(records) - infra
    rate = (
        sum(record.success for record in records if not record.is_infra_error) / finished if finished else 0.0
    )
    played_now = sum(_cell(record) not in resumed for record in records)
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


def _diversity_json(diversities: dict) -> dict:
    return {agent: diversity.to_json() for agent, diversity in diversities.items()}


def cmd_report(args: argparse.Namespace) -> int:
    from gather_envs.analysis import retrieval_by_agent
    from gather_envs.metrics import diversity_by_agent, results_from_records
    from gather_envs.metrics.floor import chance_floor_of
    from gather_envs.records.cells import check_unique_cells, read_located
    from gather_envs.reports import (
        plot_results,
        render_diversity,
        render_results,
        render_retrieval,
        require_matplotlib,
    )
    from gather_envs.reports.analysis_plots import plot_retrieval

    if args.plot:
        require_matplotlib()  # fail before printing anything
    records, places = read_located(args.records)
    check_unique_cells(records, places)
    if records and all(record.is_infra_error for record in records):
        warning = (
            f"WARNING: all {len(records)} records are infrastructure errors: no episode was played "
            "and every figure below is empty; rerun the eval command once the server works"
        )
        print(warning, file=sys.stderr if args.format in ("json", "csv") else sys.stdout)
    results = results_from_records(
        records, bootstrap=args.bootstrap, seed=args.seed, chance_floor=chance_floor_of(records)
    )
    diversities = diversity_by_agent(records)
    retrieval = retrieval_by_agent(records)
    if args.format == "json":
        data = results.to_json()
        data[DIVERSITY_KEY] = _diversity_json(diversities)
        data[RETRIEVAL_KEY] = {agent: d.to_json() for agent, d in retrieval.items()}
        print(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False))
    elif args.format == "csv":
        print(render_results(results, "csv"), end="")
    else:
        print(render_results(results, args.format))
        if diversities:
            print(render_diversity(diversities, args.format))
        if retrieval:
            print(render_retrieval(retrieval, args.format), end="")
    if args.plot:
        for path in plot_results(results, args.plot):
            print(f"wrote {path}", file=sys.stderr)
        if retrieval:
            print(f"wrote {plot_retrieval(retrieval, args.plot)}", file=sys.stderr)
    return 0


VERDICT_KEY = "verdict"
"""Key added to the comparison JSON printed by ``compare --format json``: the one-line verdict."""


def cmd_compare(args: argparse.Namespace) -> int:
    from gather_envs.metrics import compare_runs, diversity_by_agent
    from gather_envs.metrics.floor import chance_floor_of
    from gather_envs.records.cells import check_unique_cells, read_located
    from gather_envs.reports import (
        comparison_verdict,
        plot_comparison,
        render_comparison,
        render_diversity,
        render_verdict,
        require_matplotlib,
    )

    if args.plot:
        require_matplotlib()  # fail before printing anything
    (records_a, places_a), (records_b, places_b) = read_located(args.a), read_located(args.b)
    check_unique_cells(records_a, places_a)
    check_unique_cells(records_b, places_b)
    comparison = compare_runs(
        records_a,
        records_b,
        bootstrap=args.bootstrap,
        seed=args.seed,
        restrict_to_common=args.common_tasks,
        sources=(args.a, args.b),
        chance_floor=chance_floor_of(records_a),
    )
    # compare_runs checked one agent per run: label each side's diversity with its run label.
    diversities = {}
    for label, records in ((comparison.label_a, records_a), (comparison.label_b, records_b)):
        for diversity in diversity_by_agent(records).values():
            diversities[label] = diversity
    if args.format == "json":
        data = comparison.to_json()
        data[DIVERSITY_KEY] = _diversity_json(diversities)
        data[VERDICT_KEY] = comparison_verdict(comparison)
        print(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False))
    elif args.format == "csv":
        print(render_comparison(comparison, "csv"), end="")
    else:
        print(render_comparison(comparison, args.format, verdict=False))
        if diversities:
            print(render_diversity(diversities, args.format))
        print(render_verdict(comparison, args.format), end="")
    if args.plot:
        for path in plot_comparison(comparison, args.plot):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_analyze_coverage(args: argparse.Namespace) -> int:
    from gather_envs.analysis.coverage import coverage
    from gather_envs.records.cells import check_unique_cells, read_located
    from gather_envs.reports import require_matplotlib
    from gather_envs.reports.analysis import render_coverage
    from gather_envs.reports.analysis_plots import plot_coverage

    (records_a, places_a), (records_b, places_b) = read_located(args.a), read_located(args.b)
    check_unique_cells(records_a, places_a)
    check_unique_cells(records_b, places_b)
    if args.plot:
        require_matplotlib()  # fail before printing anything
    result = coverage(records_a, records_b, bootstrap=args.bootstrap, seed=args.seed)
    print(render_coverage(result, args.format), end="" if args.format == "csv" else "\n")
    if args.plot:
        print(f"wrote {plot_coverage(result, args.plot)}", file=sys.stderr)
    return 0


def cmd_analyze_swap(args: argparse.Namespace) -> int:
    from gather_envs.analysis.swap import swap_table
    from gather_envs.records.cells import check_unique_cells, read_located
    from gather_envs.reports import require_matplotlib
    from gather_envs.reports.analysis import render_swap
    from gather_envs.reports.analysis_plots import plot_swap

    if args.plot:
        require_matplotlib()  # fail before printing anything
    runs = []
    for path in args.runs:
        records, places = read_located([path])
        check_unique_cells(records, places)
        runs.append(records)
    rows = swap_table(runs, ks=_parse_ks(args.k), bootstrap=args.bootstrap, seed=args.seed)
    print(render_swap(rows, args.format), end="" if args.format == "csv" else "\n")
    if args.plot:
        for path in plot_swap(rows, args.plot):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_analyze_perplexity(args: argparse.Namespace) -> int:
    from gather_envs.analysis.perplexity import (
        SCORER_OPTIONS,
        compare_perplexity,
        make_scorer,
        require_trajectories,
        run_perplexity,
    )
    from gather_envs.records.cells import check_unique_cells, read_located
    from gather_envs.reports import require_matplotlib
    from gather_envs.reports.analysis import render_perplexity
    from gather_envs.reports.analysis_plots import plot_perplexity

    options = _checked(args.scorer, "--scorer", "the scorer", SCORER_OPTIONS, "option")
    if args.plot:
        require_matplotlib()  # fail before a model loads
    runs = []
    for path in [args.records, *([args.against] if args.against else [])]:
        records, places = read_located([path])
        check_unique_cells(records, places)
        require_trajectories(records)  # before a model loads
        runs.append(records)
    scorer = make_scorer(options)
    scored = [run_perplexity(records, scorer, bootstrap=args.bootstrap, seed=args.seed) for records in runs]
    differences = (
        compare_perplexity(scored[0], scored[1], bootstrap=args.bootstrap, seed=args.seed)
        if len(scored) == 2
        else []
    )
    print(render_perplexity(scored, differences, args.format), end="" if args.format == "csv" else "\n")
    if args.plot:
        print(f"wrote {plot_perplexity(scored, args.plot)}", file=sys.stderr)
    return 0


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",")]
    except ValueError:
        raise GatherError(f"bad --k {text!r}: expected comma-separated ints >= 1, e.g. --k 1,4") from None
    if not ks or min(ks) < 1:
        raise GatherError(f"bad --k {text!r}: expected comma-separated ints >= 1, e.g. --k 1,4")
    return ks


def _add_analyze_parser(sub: Any) -> None:
    """``gather-envs analyze coverage|swap|perplexity``: the mechanism analyses (docs/analysis.md)."""
    from gather_envs.metrics import DEFAULT_BOOTSTRAP

    analyze = sub.add_parser("analyze", help="mechanism analyses: coverage, policy swaps, query perplexity")
    kinds = analyze.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    cover = kinds.add_parser(
        "coverage", help="how much of B's boundary A solves within n tries, and the tasks only one solves"
    )
    cover.add_argument("a", metavar="A.jsonl", help="records of run A (the one given more tries)")
    cover.add_argument("b", metavar="B.jsonl", help="records of run B (whose boundary is covered)")
    swap = kinds.add_parser(
        "swap", help="swap runs (--agent swap) against the pure runs of their two policies"
    )
    swap.add_argument(
        "runs",
        nargs="+",
        metavar="RUN.jsonl",
        help="one records file per run: the pure runs and the swap runs",
    )
    swap.add_argument(
        "--k", default="1", metavar="K[,K...]", help="k of PASS@(k,T) to tabulate (default %(default)s)"
    )
    swap.set_defaults(func=cmd_analyze_swap)
    perplexity = kinds.add_parser(
        "perplexity", help="per-token NLL of the queries vs the reasoning of a run under a reference model"
    )
    perplexity.add_argument("records", metavar="RECORDS", help="records of one run, with --trajectories")
    perplexity.add_argument("--against", metavar="B.jsonl", help="a second run: its NLL minus the first's")
    perplexity.add_argument(
        "--scorer",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reference model: base_url=... model=... (an OpenAI-compatible /v1 server), or "
        "model_path=FILE.gguf; default: the embedded SmolLM2",
    )
    perplexity.set_defaults(func=cmd_analyze_perplexity)
    for parser in (cover, swap, perplexity):
        parser.add_argument("--format", choices=REPORT_FORMATS, default="table", help="default: %(default)s")
        parser.add_argument(
            "--bootstrap", type=_int_type(0), default=DEFAULT_BOOTSTRAP, metavar="B",
            help="bootstrap resamples over tasks for the 95%% intervals (0: none; default %(default)s)",
        )  # fmt: skip
        parser.add_argument(
            "--seed", type=_int_type(0), default=0, help="bootstrap seed (default %(default)s)"
        )
    cover.set_defaults(func=cmd_analyze_coverage)
    for parser in (cover, swap, perplexity):
        parser.add_argument("--plot", metavar="DIR", help="also write PNG plots into DIR (needs matplotlib)")


def _add_stats_options(parser: argparse.ArgumentParser) -> None:
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
        type=_int_type(0),
        default=DEFAULT_BOOTSTRAP,
        metavar="B",
        help="bootstrap resamples for the 95%% intervals (0: none; default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=_int_type(0), default=0, help="seed of the bootstrap resamples (default %(default)s)"
    )


def _kwarg_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="env kwarg, repeatable, e.g. --kwarg top_k=5 --kwarg dialect=tags (names: see the end)",
    )


def _kwargs_epilog() -> str:
    """The env kwargs of the synthetic and the real-data ids, for the end of a command's help."""
    synthetic = env_parameters(gather_envs.ENV_IDS[0]) or ()
    real = env_parameters(next(iter(DATASET_ENVS))) or ()
    extra = [p for p in real if p.name not in {q.name for q in synthetic}]
    return _listing(
        "env kwargs (--kwarg KEY=VALUE):",
        [
            ("Gather-*", ", ".join(p.describe() for p in synthetic)),
            ("real-data ids also", ", ".join(p.describe() for p in extra)),
        ],
    )


def _agents_epilog() -> str:
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
    return _listing("agents (--agent NAME, options as --agent-option KEY=VALUE):", rows)


def _listing(title: str, rows: Sequence[tuple[str, str]]) -> str:
    width = max(MIN_WRAP_WIDTH, min(shutil.get_terminal_size().columns, 100) - 2)
    lines = [title]
    for name, text in rows:
        lines.append(textwrap.fill(text, width, initial_indent=f"  {name}: ", subsequent_indent="      "))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gather-envs",
        description=DESCRIPTION.format(topics=", ".join(doc_topics())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=gather_envs.__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    sub.add_parser("list", help="registered ids, families, task counts, default T").set_defaults(
        func=cmd_list
    )

    docs = sub.add_parser("docs", help="print a documentation page (agents, datasets, metric, ...)")
    docs.add_argument("topic", nargs="?", choices=doc_topics(), help="the page (omit to list them)")
    docs.set_defaults(func=cmd_docs)

    show = sub.add_parser(
        "show", help="print a task with its gold path", epilog=_kwargs_epilog(), formatter_class=raw
    )
    show.add_argument("env_id", metavar="ENV_ID", help="a registered id (gather-envs list)")
    show.add_argument("--task", help="task id (default: the task at --index)")
    show.add_argument(
        "--index",
        type=_int_type(0),
        default=0,
        help="position of the task in the env's split, from 0 (default %(default)s)",
    )
    show.add_argument("--json", action="store_true", help="print the task record as JSON")
    _kwarg_option(show)
    show.set_defaults(func=cmd_show)

    play = sub.add_parser(
        "play",
        help="play one episode yourself in the terminal",
        description="Play one episode: the env prints the question, you type actions. "
        ":help, :task and :quit cost nothing.",
        epilog=_kwargs_epilog(),
        formatter_class=raw,
    )
    play.add_argument("env_id", metavar="ENV_ID", help="a registered id (gather-envs list)")
    play.add_argument("--task", help="task id (default: drawn with --seed)")
    play.add_argument(
        "--seed", type=_int_type(0), default=None, help="episode seed (default: a fresh one, shown)"
    )
    _kwarg_option(play)
    play.set_defaults(func=cmd_play)

    generate = sub.add_parser("generate", help="write a world, corpus and task set from knobs")
    generate.add_argument("--out", required=True, help="output directory")
    generate.add_argument("--name", default="procedural", help="corpus name (default %(default)s)")
    generate.add_argument(
        "--knob",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="world knob, repeatable, e.g. --knob seed=1 --knob num_entities=5000 (see the README's Knobs)",
    )
    generate.add_argument(
        "--from-manifest", metavar="DIR", help="regenerate a frozen corpus bit for bit from its manifest"
    )
    generate.set_defaults(func=cmd_generate)

    from gather_envs.evaluation.runner import (
        DEFAULT_BACKOFF_S,
        DEFAULT_N,
        DEFAULT_RETRIES,
        ENGINE_LOCAL,
        ENGINES,
    )

    evaluate = sub.add_parser(
        "eval",
        help="run an agent on a PASS@(k,T) grid of tasks x budgets x n episodes (resumable)",
        description="Play n episodes per task and budget T and append one JSON line per episode to\n"
        "--out. Pointed at an existing file it runs only the missing episodes. Exits 3 when every\n"
        "episode is an infrastructure error (nothing was measured).",
        epilog=_agents_epilog() + "\n\n" + _kwargs_epilog(),
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
        "--n", type=_int_type(1), default=DEFAULT_N, help="episodes per task and budget (default %(default)s)"
    )
    evaluate.add_argument(
        "--budgets",
        default=DEFAULT_BUDGETS,
        metavar="T,T,...",
        help=f"comma-separated tool-call budgets T, each in [0, {MAX_TOOL_CALLS}] (default %(default)s)",
    )
    evaluate.add_argument(
        "--tasks", type=_int_type(1), metavar="N", help="a seeded sample of N tasks (default: all)"
    )
    evaluate.add_argument(
        "--seed",
        type=_int_type(0),
        default=0,
        help="base seed of the task sample and episode seeds (default %(default)s)",
    )
    evaluate.add_argument(
        "--concurrency",
        type=_int_type(1),
        metavar="N",
        default=1,
        help="episodes played at once, in threads (default %(default)s)",
    )
    _kwarg_option(evaluate)
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
        type=_int_type(0),
        metavar="N",
        default=DEFAULT_RETRIES,
        help="retries of an infrastructure error such as a server timeout (default %(default)s)",
    )
    evaluate.add_argument(
        "--backoff",
        type=_nonnegative_float,
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

    report = sub.add_parser(
        "report", help="PASS@(k,T) table with intervals, |B_T|, T* and strategy diversity of a run"
    )
    report.add_argument("records", nargs="+", metavar="RECORDS", help="records files of one run")
    _add_stats_options(report)
    report.set_defaults(func=cmd_report)

    compare = sub.add_parser(
        "compare", help="agent A against agent B: paired differences, crossing k*, boundary sets"
    )
    compare.add_argument("a", metavar="A.jsonl", help="records of run A")
    compare.add_argument("b", metavar="B.jsonl", help="records of run B")
    compare.add_argument(
        "--common-tasks", action="store_true", help="compare on the tasks and budgets both runs share"
    )
    _add_stats_options(compare)
    compare.set_defaults(func=cmd_compare)
    add_sample_parser(sub)
    add_import_parser(sub)
    add_leaderboard_parser(sub)

    from gather_envs.serving import DEFAULT_HOST, DEFAULT_PORT
    from gather_envs.serving.retrieval_server import MAX_TOPK

    serve = sub.add_parser(
        "serve-retrieval",
        help="serve a corpus's BM25 search over HTTP in Search-R1's protocol (POST /retrieve)",
        description='Answer POST /retrieve {"queries": [...], "topk": K, "return_scores": B} as\n'
        "Search-R1's retrieval server does, with the env's exact BM25 hits. Prints its URL, then serves\n"
        "until interrupted.",
        epilog=_kwargs_epilog(),
        formatter_class=raw,
    )
    serve.add_argument(
        "--corpus", metavar="NAME_OR_DIR", help="a frozen corpus name or directory (default: the env's)"
    )
    serve.add_argument(
        "--env", metavar="ENV_ID", help=f"serve this env's corpus (default {gather_envs.ENV_IDS[0]})"
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    serve.add_argument(
        "--port",
        type=_int_type(0, 65535),
        default=DEFAULT_PORT,
        help="0 picks a free port (default %(default)s)",
    )
    serve.add_argument(
        "--topk",
        type=_int_type(1, MAX_TOPK),
        metavar="K",
        help="hits for a request without topk (default: the env's top_k, 3)",
    )
    serve.add_argument(
        "--split",
        default="test",
        help="the split whose world is searched, as an env of that split searches it (default %(default)s)",
    )
    _kwarg_option(serve)
    serve.set_defaults(func=cmd_serve_retrieval)
    _add_analyze_parser(sub)
    return parser


def cmd_serve_retrieval(args: argparse.Namespace) -> int:
    from gather_envs.corpus.frozen import load_directory, load_frozen
    from gather_envs.serving import DEFAULT_TOPK, Retriever, make_server, server_url

    if args.env is None and args.corpus is not None and not args.kwarg:
        path = Path(args.corpus)
        corpus = load_directory(path) if path.is_dir() else load_frozen(args.corpus)
        topk, split = DEFAULT_TOPK, args.split
        if split not in corpus.splits:
            raise GatherError(
                f"bad --split {split}: corpus {corpus.name!r} has {', '.join(sorted(corpus.splits))}"
            )
    else:
        args.env_id = args.env or gather_envs.ENV_IDS[0]
        kwargs = _env_kwargs(args)
        if args.corpus is not None:
            kwargs["corpus"] = args.corpus
        kwargs.setdefault("split", args.split)
        env = unwrap(make_env(args.env_id, kwargs))
        if env.scope != "world":
            raise GatherError(
                f"bad --kwarg scope={env.scope}: the server searches the whole corpus (scope=world); "
                "drop the scope kwarg"
            )
        corpus, topk, split = env.corpus, env.top_k, env.split
    retriever = Retriever(corpus, args.topk or topk, split=split)
    try:
        server = make_server(retriever, args.host, args.port)
    except OSError as exc:
        raise GatherError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
            "pick another --port (0 picks a free one) or --host"
        ) from None
    # The first line says the server is ready and where: scripts (and the tests) read it.
    print(
        f"serving {server_url(server)}  corpus={corpus.name} split={split} documents={len(retriever.documents)}",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _for_the_cli(message: str) -> str:
    """An error message with library hints replaced by the flags that do the same, on one line."""
    for api, flag in API_TO_FLAG.items():
        message = message.replace(api, flag)
    return " ".join(message.split())


def _one_line_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> str:
    """Warnings as the CLI's own one-line notes, without Python's file, line and source text."""
    return f"gather-envs: warning: {' '.join(str(message).split())}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except (GatherError, gym.error.Error) as exc:
        print(
            f"gather-envs: error: {redact(_for_the_cli(str(exc)), _argv_secrets(args.argv))}", file=sys.stderr
        )
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


if __name__ == "__main__":
    sys.exit(main())
