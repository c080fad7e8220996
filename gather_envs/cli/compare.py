"""``gather-envs compare A B``: paired differences, the crossing k* and boundary sets of two runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gather_envs.cli.common import (
    DIVERSITY_KEY,
    add_stats_options,
    diversity_json,
    print_floor_warnings,
)
from gather_envs.runs import load_run

VERDICT_KEY = "verdict"
"""Key added to the comparison JSON printed by ``compare --format json``: the one-line verdict."""


def cmd_compare(args: argparse.Namespace) -> int:
    from gather_envs.envs.floor import run_floor
    from gather_envs.metrics import compare_runs, diversity_by_agent
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
    records_a, records_b = load_run(args.a).records, load_run(args.b).records
    floor = run_floor(records_a)
    print_floor_warnings(floor, args.format)
    comparison = compare_runs(
        records_a,
        records_b,
        bootstrap=args.bootstrap,
        seed=args.seed,
        restrict_to_common=args.common_tasks,
        common_hint="pass --common-tasks",
        sources=(args.a, args.b),
        chance_floor=None if floor is None else floor.floor,
        primary=args.primary,
    )
    # compare_runs checked one agent per run: label each side's diversity with its run label.
    diversities = {}
    for label, records in ((comparison.label_a, records_a), (comparison.label_b, records_b)):
        for diversity in diversity_by_agent(records).values():
            diversities[label] = diversity
    if args.format == "json":
        data = comparison.to_json()
        data[DIVERSITY_KEY] = diversity_json(diversities)
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


def primary_type(text: str) -> tuple[int, int]:
    """``T=1,k=1`` as (1, 1) for ``compare --primary``."""
    fields = dict(part.split("=", 1) for part in text.replace(" ", "").split(",") if "=" in part)
    try:
        budget, k = int(fields["T"]), int(fields["k"])
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"expected T=<budget>,k=<k> (e.g. T=1,k=1), got {text!r}") from None
    if set(fields) != {"T", "k"} or budget < 0 or k < 1:
        raise argparse.ArgumentTypeError(
            f"expected T=<budget >= 0>,k=<k >= 1> and nothing else, got {text!r}"
        )
    return budget, k


def add_parser(sub: Any) -> None:
    """Declare ``compare``."""
    compare = sub.add_parser(
        "compare", help="agent A against agent B: paired differences, crossing k*, boundary sets"
    )
    compare.add_argument("a", metavar="A.jsonl", help="records of run A")
    compare.add_argument("b", metavar="B.jsonl", help="records of run B")
    compare.add_argument(
        "--common-tasks", action="store_true", help="compare on the tasks and budgets both runs share"
    )
    compare.add_argument(
        "--primary",
        type=primary_type,
        metavar="T=..,k=..",
        help="the primary endpoint, named before looking: reported first and tested alone (uncorrected); "
        "every other test is Holm-corrected",
    )
    add_stats_options(compare)
    compare.set_defaults(func=cmd_compare)
