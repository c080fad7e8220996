"""``gather-envs generate``: write a world, corpus and task set from knobs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gather_envs.cli.common import (
    checked,
)
from gather_envs.parameters import parameters_from_signature


def cmd_generate(args: argparse.Namespace) -> int:
    from gather_envs.corpus.frozen import regenerate, write_frozen
    from gather_envs.corpus.synthetic import generate_corpus
    from gather_envs.world.generator import WorldConfig

    out = Path(args.out)
    if args.from_manifest:
        manifest = regenerate(Path(args.from_manifest), out)
    else:
        knobs = checked(args.knob, "--knob", "the world", parameters_from_signature(WorldConfig), "knob")
        corpus, stats = generate_corpus(WorldConfig.from_json(knobs), args.name)
        manifest = write_frozen(corpus, stats, out)
    print(f"wrote {out} content_hash={manifest['content_hash']}")
    for stat in manifest["filter_stats"]:
        split = stat.get("split", "")
        print(
            f"  {split:<5} {stat['family']:<11} kept={stat['kept']} shortcut_rate={stat['shortcut_rate']:.4f}"
        )
    return 0


def add_parser(sub: Any) -> None:
    """Declare ``generate``."""
    generate = sub.add_parser("generate", help="write a world, corpus and task set from knobs")
    generate.add_argument("--out", required=True, help="output directory")
    generate.add_argument("--name", default="procedural", help="corpus name (default %(default)s)")
    generate.add_argument(
        "--knob",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="world knob, repeatable, e.g. --knob seed=1 --knob num_entities=5000 (see: gather-envs docs environments, Knobs)",
    )
    generate.add_argument(
        "--from-manifest", metavar="DIR", help="regenerate a frozen corpus bit for bit from its manifest"
    )
    generate.set_defaults(func=cmd_generate)
