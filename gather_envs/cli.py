"""The ``gather-envs`` command: list, play, show, generate, eval, report and compare.

Errors are one line and exit 2; an interrupted ``eval`` exits 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym

import gather_envs
from gather_envs.corpus.datasets import FORMATS
from gather_envs.corpus.datasets.cli_sample import add_sample_parser
from gather_envs.envs.dataset_registration import DATASET_ENVS
from gather_envs.envs.gather_env import GatherEnv
from gather_envs.errors import GatherError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
REPORT_FORMATS = ("table", "md", "csv", "json")
DIVERSITY_KEY = "diversity"
"""Key added to the results (or comparison) JSON printed by ``report``/``compare --format json``."""


def _parse_kwargs(pairs: Sequence[str], flag: str = "--kwarg") -> dict:
    """``key=value`` pairs; values are JSON when they parse as JSON, else strings."""
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GatherError(f"bad {flag} {pair!r}: expected key=value")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return kwargs


def make_env(env_id: str, kwargs: dict) -> gym.Env:
    """``gym.make`` with a one-line error for unknown ids."""
    if env_id not in gym.registry:
        raise GatherError(f"unknown env id {env_id!r}; `gather-envs list` shows the ids")
    return gym.make(env_id, **kwargs)


def unwrap(env: gym.Env) -> GatherEnv:
    """The GatherEnv inside ``env``'s wrappers."""
    inner = env.unwrapped
    if not isinstance(inner, GatherEnv):
        raise GatherError(f"{env} is not a gather-envs environment")
    return inner


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
    print("\nReal-data ids (need path= to a file you supply; see docs/datasets.md):")
    for env_id, name in DATASET_ENVS.items():
        print(f"{env_id:<22} format={name:<9} e.g. path=.../{FORMATS[name].example_file}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    env = unwrap(make_env(args.env_id, _parse_kwargs(args.kwarg)))
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


def cmd_play(args: argparse.Namespace) -> int:
    env = make_env(args.env_id, _parse_kwargs(args.kwarg))
    options = {"task_id": args.task} if args.task else None
    observation, info = env.reset(seed=args.seed, options=options)
    print(observation)
    done = False
    while not done:
        try:
            action = input("> ")
        except EOFError:
            print("\n(input ended; episode abandoned)")
            return 1
        observation, reward, terminated, truncated, info = env.step(action)
        print(observation)
        done = terminated or truncated
    print(
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
        knobs = _parse_kwargs(args.knob)
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
            f"bad --budgets {text!r}: expected comma-separated ints such as 0,1,2,3,5"
        ) from None
    if not budgets:
        raise GatherError("--budgets is empty: give at least one tool-call budget T")
    return budgets


def cmd_eval(args: argparse.Namespace) -> int:
    from gather_envs.evaluation import EvaluationInterrupted, evaluate

    try:
        records = evaluate(
            args.env_id,
            args.agent,
            n=args.n,
            budgets=_parse_budgets(args.budgets),
            tasks=args.tasks,
            seed=args.seed,
            concurrency=args.concurrency,
            out=args.out,
            env_kwargs=_parse_kwargs(args.kwarg),
            agent_options=_parse_kwargs(args.agent_option, "--agent-option"),
            progress=not args.quiet,
            record_trajectory=args.trajectories,
            retries=args.retries,
            backoff=args.backoff,
        )
    except EvaluationInterrupted as exc:
        command = shlex.join(["gather-envs", *getattr(args, "argv", [])])
        print(f"gather-envs: {exc}; resume by running the same command again: {command}", file=sys.stderr)
        return EXIT_INTERRUPTED
    infra = sum(record.is_infra_error for record in records)
    played = len(records) - infra
    rate = sum(record.success for record in records if not record.is_infra_error) / played if played else 0.0
    print(
        f"{args.out}: {len(records)} episodes ({played} played, {infra} infrastructure errors), "
        f"success rate {rate:.3f}; next: gather-envs report {shlex.quote(args.out)}"
    )
    return 0


def _diversity_json(diversities: dict) -> dict:
    return {agent: diversity.to_json() for agent, diversity in diversities.items()}


def cmd_report(args: argparse.Namespace) -> int:
    from gather_envs.metrics import diversity_by_agent, results_from_records
    from gather_envs.records import read_records
    from gather_envs.reports import plot_results, render_diversity, render_results

    records = read_records(args.records)
    results = results_from_records(records, bootstrap=args.bootstrap, seed=args.seed)
    diversities = diversity_by_agent(records)
    if args.format == "json":
        data = results.to_json()
        data[DIVERSITY_KEY] = _diversity_json(diversities)
        print(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False))
    elif args.format == "csv":
        print(render_results(results, "csv"), end="")
    else:
        print(render_results(results, args.format))
        if diversities:
            print(render_diversity(diversities, args.format), end="")
    if args.plot:
        for path in plot_results(results, args.plot):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from gather_envs.metrics import compare_runs, diversity_by_agent
    from gather_envs.records import read_records
    from gather_envs.reports import plot_comparison, render_comparison, render_diversity

    records_a, records_b = read_records(args.a), read_records(args.b)
    comparison = compare_runs(
        records_a,
        records_b,
        bootstrap=args.bootstrap,
        seed=args.seed,
        restrict_to_common=args.common_tasks,
    )
    side_a, side_b = diversity_by_agent(records_a), diversity_by_agent(records_b)
    if set(side_a) & set(side_b):  # the same agent id on both sides: label by side
        side_a = {f"A: {agent}": d for agent, d in side_a.items()}
        side_b = {f"B: {agent}": d for agent, d in side_b.items()}
    diversities = {**side_a, **side_b}
    if args.format == "json":
        data = comparison.to_json()
        data[DIVERSITY_KEY] = _diversity_json(diversities)
        print(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False))
    elif args.format == "csv":
        print(render_comparison(comparison, "csv"), end="")
    else:
        print(render_comparison(comparison, args.format))
        if diversities:
            print(render_diversity(diversities, args.format), end="")
    if args.plot:
        for path in plot_comparison(comparison, args.plot):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _add_stats_options(parser: argparse.ArgumentParser) -> None:
    from gather_envs.metrics import DEFAULT_BOOTSTRAP

    parser.add_argument(
        "--format",
        choices=REPORT_FORMATS,
        default="table",
        help="table (terminal), md, csv (the PASS@(k,T) rows only) or json (results JSON + diversity)",
    )
    parser.add_argument("--plot", metavar="DIR", help="also write PNG plots into DIR (needs matplotlib)")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_BOOTSTRAP,
        metavar="B",
        help=f"bootstrap resamples for the 95%% intervals (0: none; default {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gather-envs", description=__doc__)
    parser.add_argument("--version", action="version", version=gather_envs.__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="registered ids, families, task counts, default T").set_defaults(
        func=cmd_list
    )

    show = sub.add_parser("show", help="print a task with its gold path")
    show.add_argument("env_id")
    show.add_argument("--task", help="task id (default: --index)")
    show.add_argument("--index", type=int, default=0)
    show.add_argument("--json", action="store_true", help="print the task record as JSON")
    show.add_argument("--kwarg", action="append", default=[], metavar="KEY=VALUE")
    show.set_defaults(func=cmd_show)

    play = sub.add_parser("play", help="play one episode in the terminal")
    play.add_argument("env_id")
    play.add_argument("--task", help="task id (default: drawn with --seed)")
    play.add_argument("--seed", type=int, default=None)
    play.add_argument("--kwarg", action="append", default=[], metavar="KEY=VALUE")
    play.set_defaults(func=cmd_play)

    generate = sub.add_parser("generate", help="write a world, corpus and task set from knobs")
    generate.add_argument("--out", required=True, help="output directory")
    generate.add_argument("--name", default="procedural")
    generate.add_argument(
        "--knob",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="world knob, e.g. seed=1 num_entities=5000 (see WorldConfig)",
    )
    generate.add_argument(
        "--from-manifest", metavar="DIR", help="regenerate a frozen corpus bit for bit from its manifest"
    )
    generate.set_defaults(func=cmd_generate)

    from gather_envs.evaluation.runner import DEFAULT_BACKOFF_S, DEFAULT_N, DEFAULT_RETRIES

    evaluate = sub.add_parser(
        "eval",
        help="run an agent on a PASS@(k,T) grid of tasks x budgets x n episodes (resumable)",
        description="Play n episodes per task and budget T and append one JSON line per episode to "
        "--out. Pointed at an existing file it runs only the missing episodes.",
    )
    evaluate.add_argument("env_id")
    evaluate.add_argument(
        "--agent", required=True, help="a registered agent name, or module:attr of an Agent or a factory"
    )
    evaluate.add_argument(
        "--out", required=True, metavar="RUN.jsonl", help="records file (resumed if it exists)"
    )
    evaluate.add_argument("--n", type=int, default=DEFAULT_N, help="episodes per task and budget")
    evaluate.add_argument("--budgets", default="0,1,2,3,5", help="comma-separated tool-call budgets T")
    evaluate.add_argument("--tasks", type=int, metavar="N", help="a seeded sample of N tasks (default: all)")
    evaluate.add_argument("--seed", type=int, default=0, help="base seed of task sample and episode seeds")
    evaluate.add_argument("--concurrency", type=int, default=1, help="episodes played at once (threads)")
    evaluate.add_argument("--kwarg", action="append", default=[], metavar="KEY=VALUE", help="env kwarg")
    evaluate.add_argument(
        "--agent-option", action="append", default=[], metavar="KEY=VALUE", help="agent option"
    )
    evaluate.add_argument("--trajectories", action="store_true", help="record every action and observation")
    evaluate.add_argument(
        "--retries", type=int, default=DEFAULT_RETRIES, help="retries of an infrastructure error"
    )
    evaluate.add_argument(
        "--backoff", type=float, default=DEFAULT_BACKOFF_S, help="first retry delay in seconds (doubles)"
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
    compare.add_argument("a", metavar="A.jsonl")
    compare.add_argument("b", metavar="B.jsonl")
    compare.add_argument(
        "--common-tasks", action="store_true", help="compare on the tasks and budgets both runs share"
    )
    _add_stats_options(compare)
    compare.set_defaults(func=cmd_compare)
    add_sample_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except (GatherError, gym.error.Error) as exc:
        print(f"gather-envs: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # output piped into `head` and friends
        return 0
    except KeyboardInterrupt:
        print("gather-envs: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
