"""``gather-envs analyze coverage|swap|perplexity``: the mechanism analyses (docs/analysis.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gather_envs.cli.common import (
    REPORT_FORMATS,
    checked,
    int_type,
    parse_ks,
)
from gather_envs.runs import load_run


def cmd_analyze_coverage(args: argparse.Namespace) -> int:
    from gather_envs.analysis.coverage import coverage
    from gather_envs.reports import require_matplotlib
    from gather_envs.reports.analysis import render_coverage
    from gather_envs.reports.analysis_plots import plot_coverage

    records_a, records_b = load_run(args.a).records, load_run(args.b).records
    if args.plot:
        require_matplotlib()  # fail before printing anything
    result = coverage(records_a, records_b, bootstrap=args.bootstrap, seed=args.seed)
    print(render_coverage(result, args.format), end="" if args.format == "csv" else "\n")
    if args.plot:
        print(f"wrote {plot_coverage(result, args.plot)}", file=sys.stderr)
    return 0


def cmd_analyze_swap(args: argparse.Namespace) -> int:
    from gather_envs.analysis.swap import swap_table
    from gather_envs.reports import require_matplotlib
    from gather_envs.reports.analysis import render_swap
    from gather_envs.reports.analysis_plots import plot_swap

    if args.plot:
        require_matplotlib()  # fail before printing anything
    runs = []
    for path in args.runs:
        records = load_run(path).records
        runs.append(records)
    rows = swap_table(runs, ks=parse_ks(args.k), bootstrap=args.bootstrap, seed=args.seed)
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
    from gather_envs.reports import require_matplotlib
    from gather_envs.reports.analysis import render_perplexity
    from gather_envs.reports.analysis_plots import plot_perplexity

    options = checked(args.scorer, "--scorer", "the scorer", SCORER_OPTIONS, "option")
    if args.plot:
        require_matplotlib()  # fail before a model loads
    runs = []
    for path in [args.records, *([args.against] if args.against else [])]:
        records = load_run(path).records
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


def add_parser(sub: Any) -> None:
    """Declare ``analyze`` and its three analyses."""
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
            "--bootstrap", type=int_type(0), default=DEFAULT_BOOTSTRAP, metavar="B",
            help="bootstrap resamples over tasks for the 95%% intervals (0: none; default %(default)s)",
        )  # fmt: skip
        parser.add_argument(
            "--seed", type=int_type(0), default=0, help="bootstrap seed (default %(default)s)"
        )
    cover.set_defaults(func=cmd_analyze_coverage)
    for parser in (cover, swap, perplexity):
        parser.add_argument("--plot", metavar="DIR", help="also write PNG plots into DIR (needs matplotlib)")
