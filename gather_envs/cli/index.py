"""``gather-envs index``: build an exact on-disk BM25 index from a corpus, and describe one.

``index build CORPUS --out DIR`` streams the documents (a wiki-18 or custom JSON-lines passages
file, or a frozen corpus name or directory) into a memory-mapped index directory within
``--memory-budget``; ``index info DIR`` prints its manifest's counts and identity, and with
``--verify`` checks every array's sha256. ``index=DIR`` on the env and ``serve-retrieval --index
DIR`` search it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

DESCRIPTION = """Build an exact BM25 index on disk (scores equal rank_bm25's), or describe one.

Examples: gather-envs index build psgs_w100.jsonl --out wiki18-index --memory-budget 2GB
          gather-envs index build gather-synth-v1 --split test --out synth-test-index
          gather-envs index info wiki18-index --verify
CORPUS is a JSON-lines passages file (Search-R1's wiki-18 rows {"id", "contents"} or custom
documents.jsonl rows {"id", "title", "text"}), or a frozen corpus name or directory."""


def add_parser(subparsers: Any) -> None:
    """Declare ``index build`` and ``index info``."""
    from gather_envs.retrieval.bm25 import DEFAULT_B, DEFAULT_EPSILON, DEFAULT_K1

    parser = subparsers.add_parser(
        "index",
        help="build an exact on-disk BM25 index from a corpus (index build), or describe one (index info)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="stream a corpus into an index directory", description=DESCRIPTION,
                               formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    build.add_argument(
        "corpus", metavar="CORPUS", help="a passages .jsonl file, or a frozen corpus name or directory"
    )
    build.add_argument(
        "--out", required=True, metavar="DIR", help="the index directory to write (replaced if an index)"
    )
    build.add_argument(
        "--memory-budget",
        default="2GB",
        metavar="SIZE",
        help="bytes for the build's buffers, e.g. 2GB or 512MB; the vocabulary comes on top (default %(default)s)",
    )
    build.add_argument(
        "--split", help="a frozen corpus's split: index that split's world only (default: all)"
    )
    build.add_argument("--k1", type=float, default=DEFAULT_K1, help="BM25 k1 (default %(default)s)")
    build.add_argument("--b", type=float, default=DEFAULT_B, help="BM25 b (default %(default)s)")
    build.add_argument(
        "--epsilon", type=float, default=DEFAULT_EPSILON, help="idf floor factor (default %(default)s)"
    )
    build.set_defaults(func=cmd_build)
    info = actions.add_parser("info", help="print an index's counts, parameters and identity")
    info.add_argument("directory", metavar="DIR", help="an index directory")
    info.add_argument(
        "--verify", action="store_true", help="also check every array file's sha256 (reads it all)"
    )
    info.set_defaults(func=cmd_info)


def cmd_build(args: argparse.Namespace) -> int:
    """Build the index and print its counts and size."""
    from gather_envs.corpus.corpus import index_text
    from gather_envs.corpus.passages import corpus_documents, iter_passages
    from gather_envs.errors import ConfigError
    from gather_envs.retrieval.disk_build import build_disk_index, parse_size

    source = Path(args.corpus)
    if source.is_file():
        if args.split is not None:
            raise ConfigError("--split applies to a frozen corpus, not to a passages file")
        documents: Any = iter_passages(source)
        identity: dict[str, Any] = {"kind": "jsonl", "path": str(source.resolve())}
    else:
        documents, identity = corpus_documents(args.corpus, args.split)
    start = time.perf_counter()
    manifest = build_disk_index(
        documents,
        Path(args.out),
        index_text,
        memory_budget=parse_size(args.memory_budget),
        k1=args.k1,
        b=args.b,
        epsilon=args.epsilon,
        corpus=identity,
    )
    size = sum(entry["bytes"] for entry in manifest["files"].values())
    print(
        f"wrote {args.out}: {manifest['n_docs']} documents, {manifest['n_terms']} terms, "
        f"{manifest['n_postings']} postings, {size / 1e6:.1f} MB, {manifest['build']['runs']} runs, "
        f"{time.perf_counter() - start:.1f} s"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print an index's manifest summary (and verify its checksums if asked)."""
    from gather_envs.retrieval.disk_index import DiskIndex

    index = DiskIndex.open(args.directory, verify=args.verify)
    manifest = index.manifest
    size = sum(entry["bytes"] for entry in manifest["files"].values())
    texts = sum(manifest["files"][f"{name}_bytes.npy"]["bytes"] for name in ("doc_ids", "titles", "texts"))
    print(f"index {args.directory}  format {manifest['format']} v{manifest['version']}")
    print(f"  index_hash {index.manifest_hash}")
    print(f"  documents {manifest['n_docs']}  terms {manifest['n_terms']}  postings {manifest['n_postings']}")
    print(f"  k1={manifest['k1']} b={manifest['b']} epsilon={manifest['epsilon']} avgdl={index.avgdl:.3f}")
    print(
        f"  tf {manifest['tf_dtype']}  disk {size / 1e6:.1f} MB ({texts / 1e6:.1f} MB of them ids, titles and texts)"
    )
    print("  corpus " + " ".join(f"{key}={value}" for key, value in sorted(manifest["corpus"].items())))
    if args.verify:
        print("  checksums: all match")
    return 0
