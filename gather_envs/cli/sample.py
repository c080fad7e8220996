"""``gather-envs sample``: write a seeded sample of a dataset file in the same layout.

Example: ``gather-envs sample --format hotpotqa --in hotpot_dev_distractor_v1.json --out small.json
--per-type 100 --seed 0`` keeps 100 comparison and 100 bridge questions, exactly those that
``dataset={"per_type": 100, "seed": 0}`` picks from the full file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gather_envs.corpus.datasets import FORMATS
from gather_envs.corpus.datasets.sample import DEFAULT_SEED, sample_file

DESCRIPTION = """Write a seeded sample of a dataset file in the same layout.

Example: gather-envs sample --format hotpotqa --in hotpot_dev_distractor_v1.json \\
             --out hotpot_200.json --per-type 100 --seed 0
keeps 100 comparison and 100 bridge questions: exactly those that the env kwargs
per_type=100, seed=0 pick from the full file."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sample`` command to an ``add_subparsers()`` object and return its parser."""
    parser = subparsers.add_parser(
        "sample",
        help="write a seeded sample of a HotpotQA / 2Wiki / MuSiQue / MATH file in the same layout",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), help="the file's layout")
    parser.add_argument("--in", dest="source", required=True, metavar="FILE", help="the full data file")
    parser.add_argument("--out", required=True, metavar="FILE", help="where to write the sample")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--per-type", type=int, metavar="N", help="N questions of each type")
    size.add_argument("--total", type=int, metavar="N", help="N questions in all")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--type", action="append", metavar="TYPE", help="keep only this type (repeatable)")
    parser.add_argument("--level", action="append", metavar="LEVEL", help="keep only this level (repeatable)")
    parser.add_argument(
        "--no-strict",
        dest="strict",
        action="store_false",
        help="skip malformed items (with a warning) instead of failing on the first",
    )
    parser.set_defaults(func=cmd_sample)
    return parser


def cmd_sample(args: argparse.Namespace) -> int:
    """Run ``gather-envs sample``; errors are GatherErrors that ``main`` prints on one line."""
    report = sample_file(
        FORMATS[args.format],
        Path(args.source).expanduser(),
        Path(args.out).expanduser(),
        per_type=args.per_type,
        total=args.total,
        seed=args.seed,
        types=tuple(sorted(set(args.type))) if args.type else None,
        levels=tuple(sorted(set(args.level))) if args.level else None,
        strict=args.strict,
    )
    counts = ", ".join(f"{name}={count}" for name, count in report.counts.items())
    print(
        f"wrote {report.out}: {sum(report.counts.values())} of {report.valid} questions ({counts})"
        + (f"; skipped {report.skipped} malformed item(s)" if report.skipped else "")
    )
    return 0
