"""``gather-envs import``: freeze your documents.jsonl and tasks.jsonl into a corpus directory.

The directory has the usual manifest and hashes, so ``corpus=DIR`` (or ``--kwarg corpus=DIR`` on
``Gather-v0``) loads it, verified, afterwards.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gather_envs.corpus.custom import DEFAULT_NAME, freeze_custom

DESCRIPTION = """Freeze your own documents and tasks into a corpus directory (manifest + hashes).

Example: gather-envs import --documents documents.jsonl --tasks tasks.jsonl --out my_corpus
then:    gym.make("Gather-v0", corpus="./my_corpus", family="bridge")
The fields of both files are in `gather-envs docs custom`."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``import`` command to an ``add_subparsers()`` object and return its parser."""
    parser = subparsers.add_parser(
        "import",
        help="freeze your documents.jsonl + tasks.jsonl into a corpus directory",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--documents", required=True, metavar="FILE", help="documents.jsonl")
    parser.add_argument("--tasks", required=True, metavar="FILE", help="tasks.jsonl")
    parser.add_argument("--out", required=True, metavar="DIR", help="the corpus directory to write")
    parser.add_argument("--name", default=DEFAULT_NAME, help="corpus name (default %(default)s)")
    parser.set_defaults(func=cmd_import)
    return parser


def cmd_import(args: argparse.Namespace) -> int:
    """Check both files, write the corpus, and print its hash, counts and chance floor."""
    out = Path(args.out)
    manifest = freeze_custom(Path(args.documents), Path(args.tasks), out, args.name)
    print(f"wrote {out} content_hash={manifest['content_hash']}")
    for split, families in sorted(manifest["counts"].items()):
        print(f"  {split}: " + ", ".join(f"{family}={n}" for family, n in sorted(families.items())))
    print(floor_summary(manifest))
    return 0


def floor_summary(manifest: dict[str, Any]) -> str:
    """One line per family: the chance floor at k=1 and its guesser, and what it could not use."""
    if "test" not in manifest["counts"]:
        return "chance floor: none (no 'test' split to measure it on)"
    rules = "question-only rules" + (
        "" if "train" in manifest["counts"] else "; no train split, so no train guesser"
    )
    lines = [f"chance floor PASS@(1, 0) ({rules}):"]
    for family, entry in sorted(manifest["chance_floor"].items()):
        lines.append(
            f"  {family}: {entry['floor']['1']:.4f} by {entry['best_guesser']['1']} over {entry['tasks']} tasks"
        )
    return "\n".join(lines)
