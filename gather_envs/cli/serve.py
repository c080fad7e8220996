"""``gather-envs serve-retrieval``: serve a corpus's BM25 search over HTTP in Search-R1's protocol."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gather_envs
from gather_envs.cli.common import (
    add_kwarg_option,
    env_kwargs_of,
    int_type,
    kwargs_epilog,
    make_env,
    unwrap,
)
from gather_envs.errors import GatherError

if TYPE_CHECKING:
    from gather_envs.serving import Retriever


def cmd_serve_retrieval(args: argparse.Namespace) -> int:
    from gather_envs.serving import make_server, server_url

    retriever, label = _index_retriever(args) if args.index is not None else _corpus_retriever(args)
    try:
        server = make_server(retriever, args.host, args.port)
    except OSError as exc:
        raise GatherError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
            "pick another --port (0 picks a free one) or --host"
        ) from None
    # The first line says the server is ready and where: scripts (and the tests) read it.
    print(
        f"serving {server_url(server)}  {label} documents={len(retriever.documents)}",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _index_retriever(args: argparse.Namespace) -> tuple[Retriever, str]:
    """A retriever over an on-disk index and its own documents."""
    from gather_envs.retrieval import DiskIndex
    from gather_envs.serving import DEFAULT_TOPK, Retriever

    if args.env is not None or args.corpus is not None or args.kwarg:
        raise GatherError("--index serves the index's own documents; drop --env, --corpus and --kwarg")
    return Retriever(None, args.topk or DEFAULT_TOPK, index=DiskIndex.open(args.index)), f"index={args.index}"


def _corpus_retriever(args: argparse.Namespace) -> tuple[Retriever, str]:
    """A retriever over a corpus's (or an env's) world-scope index."""
    from gather_envs.corpus.frozen import load_directory, load_frozen
    from gather_envs.serving import DEFAULT_TOPK, Retriever

    if args.env is None and args.corpus is not None and not args.kwarg:
        path = Path(args.corpus)
        corpus = load_directory(path) if path.is_dir() else load_frozen(args.corpus)
        topk, split = DEFAULT_TOPK, args.split
        if split not in corpus.splits:
            raise GatherError(
                f"bad --split {split}: corpus {corpus.name!r} has {', '.join(sorted(corpus.splits))}"
            )
    else:
        args.env_id = args.env or gather_envs.ENV_IDS[0]
        kwargs = env_kwargs_of(args)
        if args.corpus is not None:
            kwargs["corpus"] = args.corpus
        kwargs.setdefault("split", args.split)
        env = unwrap(make_env(args.env_id, kwargs))
        if env.scope != "world":
            raise GatherError(
                f"bad --kwarg scope={env.scope}: the server searches the whole corpus (scope=world); "
                "drop the scope kwarg"
            )
        corpus, topk, split = env.corpus, env.top_k, env.split
    return Retriever(corpus, args.topk or topk, split=split), f"corpus={corpus.name} split={split}"


def add_parser(sub: Any) -> None:
    """Declare ``serve-retrieval``."""
    raw = argparse.RawDescriptionHelpFormatter
    from gather_envs.serving import DEFAULT_HOST, DEFAULT_PORT
    from gather_envs.serving.retrieval_server import MAX_TOPK

    serve = sub.add_parser(
        "serve-retrieval",
        help="serve a corpus's BM25 search over HTTP in Search-R1's protocol (POST /retrieve)",
        description='Answer POST /retrieve {"queries": [...], "topk": K, "return_scores": B} as\n'
        "Search-R1's retrieval server does, with the env's exact BM25 hits. Prints its URL, then serves\n"
        "until interrupted.",
        epilog=kwargs_epilog(),
        formatter_class=raw,
    )
    serve.add_argument(
        "--corpus", metavar="NAME_OR_DIR", help="a frozen corpus name or directory (default: the env's)"
    )
    serve.add_argument(
        "--index",
        metavar="DIR",
        help="an on-disk index (gather-envs index build) to serve with its own documents",
    )
    serve.add_argument(
        "--env", metavar="ENV_ID", help=f"serve this env's corpus (default {gather_envs.ENV_IDS[0]})"
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    serve.add_argument(
        "--port",
        type=int_type(0, 65535),
        default=DEFAULT_PORT,
        help="0 picks a free port (default %(default)s)",
    )
    serve.add_argument(
        "--topk",
        type=int_type(1, MAX_TOPK),
        metavar="K",
        help="hits for a request without topk (default: the env's top_k, 3)",
    )
    serve.add_argument(
        "--split",
        default="test",
        help="the split whose world is searched, as an env of that split searches it (default %(default)s)",
    )
    add_kwarg_option(serve)
    serve.set_defaults(func=cmd_serve_retrieval)
