"""``gather-envs docs [TOPIC]``: print a documentation page shipped in the wheel."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DOCS_FOLDER = "_docs"  # where the wheel installs docs/*.md inside the package
BENCHMARKS_TOPIC = "benchmarks"
"""The topic of benchmarks/README.md (every performance figure), shipped as _docs/benchmarks.md."""


def docs_root() -> Path:
    """Where the docs live: inside the installed wheel, else the source tree's docs/."""
    package = Path(__file__).resolve().parent.parent  # gather_envs/
    installed = package / DOCS_FOLDER
    return installed if installed.is_dir() else package.parent / "docs"


def doc_pages() -> dict[str, Path]:
    """Each documentation topic and its file: docs/*.md, plus benchmarks/README.md as ``benchmarks``."""
    root = docs_root()
    pages = {p.stem: p for p in root.glob("*.md")} if root.is_dir() else {}
    benchmarks = root.parent / BENCHMARKS_TOPIC / "README.md"  # a source checkout
    if BENCHMARKS_TOPIC not in pages and benchmarks.is_file():
        pages[BENCHMARKS_TOPIC] = benchmarks
    return dict(sorted(pages.items()))


def doc_topics() -> list[str]:
    """The topics ``gather-envs docs`` lists, sorted."""
    return list(doc_pages())


def cmd_docs(args: argparse.Namespace) -> int:
    pages = doc_pages()
    if args.topic is None:
        width = max(map(len, pages), default=0)
        for topic, path in pages.items():
            lines = path.read_text(encoding="utf-8").splitlines()
            title = next((line.lstrip("# ") for line in lines if line.startswith("#")), "")
            print(f"{topic:<{width}}  {title}")
        print("\nprint one with: gather-envs docs TOPIC")
        return 0
    print(pages[args.topic].read_text(encoding="utf-8"), end="")
    return 0


def add_parser(sub: Any) -> None:
    """Declare ``docs``."""
    docs = sub.add_parser("docs", help="print a documentation page (agents, datasets, metric, ...)")
    docs.add_argument("topic", nargs="?", choices=doc_topics(), help="the page (omit to list them)")
    docs.set_defaults(func=cmd_docs)
