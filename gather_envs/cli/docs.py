"""``gather-envs docs [TOPIC]``: print a documentation page shipped in the wheel."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DOCS_FOLDER = "_docs"  # where the wheel installs docs/*.md inside the package


def docs_root() -> Path:
    """Where the docs live: inside the installed wheel, else the source tree's docs/."""
    package = Path(__file__).resolve().parent.parent  # gather_envs/
    installed = package / DOCS_FOLDER
    return installed if installed.is_dir() else package.parent / "docs"


def doc_topics() -> list[str]:
    """The documentation pages, by name."""
    root = docs_root()
    return sorted(p.stem for p in root.glob("*.md")) if root.is_dir() else []


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


def add_parser(sub: Any) -> None:
    """Declare ``docs``."""
    docs = sub.add_parser("docs", help="print a documentation page (agents, datasets, metric, ...)")
    docs.add_argument("topic", nargs="?", choices=doc_topics(), help="the page (omit to list them)")
    docs.set_defaults(func=cmd_docs)
