"""``gather-envs report``: the PASS@(k,T) table of a run, with intervals, |B_T|, T* and diversity."""

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

RETRIEVAL_KEY = "retrieval"
"""Key added to the results JSON printed by ``report --format json``: the retrieval diagnostics."""


def cmd_report(args: argparse.Namespace) -> int:
    from gather_envs.analysis import retrieval_by_agent
    from gather_envs.envs.floor import run_floor
    from gather_envs.metrics import diversity_by_agent, results_from_records
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
    records = load_run(args.records).records
    if records and all(record.is_infra_error for record in records):
        warning = (
            f"WARNING: all {len(records)} records are infrastructure errors: no episode was played "
            "and every figure below is empty; rerun the eval command once the server works"
        )
        print(warning, file=sys.stderr if args.format in ("json", "csv") else sys.stdout)
    floor = run_floor(records)
    print_floor_warnings(floor, args.format)
    results = results_from_records(
        records, bootstrap=args.bootstrap, seed=args.seed, chance_floor=None if floor is None else floor.floor
    )
    diversities = diversity_by_agent(records)
    retrieval = retrieval_by_agent(records)
    if args.format == "json":
        data = results.to_json()
        data[DIVERSITY_KEY] = diversity_json(diversities)
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


def add_parser(sub: Any) -> None:
    """Declare ``report``."""
    report = sub.add_parser(
        "report", help="PASS@(k,T) table with intervals, |B_T|, T* and strategy diversity of a run"
    )
    report.add_argument("records", nargs="+", metavar="RECORDS", help="records files of one run")
    add_stats_options(report)
    report.set_defaults(func=cmd_report)
