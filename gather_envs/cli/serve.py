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
from gather_envs.optional import require


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds in (0, 1e6)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 1e6), got {text}")
    return value

if TYPE_CHECKING:
    from gather_envs.serving import Retriever


def cmd_serve_retrieval(args: argparse.Namespace) -> int:
    require("uvicorn", "serve", "gather-envs serve-retrieval")
    from gather_envs.serving.limits import ServiceLimits
    from gather_envs.serving.service import bind_socket, serve, server_url

    limits = ServiceLimits(
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        send_timeout_s=args.send_timeout,
        max_connections=args.max_connections,
    )
    # The index is built or opened before the workers fork, so they share it.
    retriever, label = _index_retriever(args) if args.index is not None else _corpus_retriever(args)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        raise GatherError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
            "pick another --port (0 picks a free one) or --host"
        ) from None
    # The first line says the server is ready and where: scripts (and the tests) read it.
    print(
        f"serving {server_url(sock)}  {label} documents={len(retriever.documents)} workers={args.workers}",
        flush=True,
    )
    try:
        serve(retriever, sock, args.workers, limits)
    finally:
        sock.close()
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
    from gather_envs.corpus.wiki18 import WIKI18_SUFFIX, load_wiki18
    from gather_envs.serving import DEFAULT_TOPK, Retriever

    if args.env is None and args.corpus is not None and not args.kwarg:
        path = Path(args.corpus)
        if path.is_file() and path.suffix == WIKI18_SUFFIX:  # Search-R1's wiki-18 passages
            corpus = load_wiki18(path)
        else:
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
    from gather_envs.serving.limits import (
        DEFAULT_BODY_TIMEOUT_S,
        DEFAULT_HEADER_TIMEOUT_S,
        DEFAULT_MAX_CONNECTIONS,
        DEFAULT_SEND_TIMEOUT_S,
        MAX_WORKERS,
    )
    from gather_envs.serving.retrieval_server import MAX_TOPK

    serve = sub.add_parser(
        "serve-retrieval",
        help="serve a corpus's BM25 search over HTTP in Search-R1's protocol (POST /retrieve)",
        description='Answer POST /retrieve {"queries": [...], "topk": K, "return_scores": B} as\n'
        "Search-R1's retrieval server does, with the env's exact BM25 hits, on uvicorn with deadlines and\n"
        "caps against slow or hostile clients. Prints its URL, then serves until interrupted.",
        epilog=kwargs_epilog(),
        formatter_class=raw,
    )
    serve.add_argument(
        "--corpus",
        metavar="NAME_OR_DIR",
        help="a frozen corpus name or directory, or a wiki-18 passages file (.jsonl) (default: the env's)",
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
    serve.add_argument(
        "--workers",
        type=int_type(1, MAX_WORKERS),
        default=1,
        metavar="N",
        help="server processes sharing the index, forked after it is built (default %(default)s)",
    )
    serve.add_argument(
        "--header-timeout",
        type=positive_seconds,
        default=DEFAULT_HEADER_TIMEOUT_S,
        metavar="S",
        help="seconds a client has to send a request's headers, from connect or its last answer (default %(default)g)",
    )
    serve.add_argument(
        "--body-timeout",
        type=positive_seconds,
        default=DEFAULT_BODY_TIMEOUT_S,
        metavar="S",
        help="seconds a client has to send a body once its headers are in (default %(default)g)",
    )
    serve.add_argument(
        "--send-timeout",
        type=positive_seconds,
        default=DEFAULT_SEND_TIMEOUT_S,
        metavar="S",
        help="seconds a client has to read an answer once it starts; then the connection is dropped "
        "(default %(default)g)",
    )
    serve.add_argument(
        "--max-connections",
        type=int_type(1),
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="connections per worker; at the cap the longest-waiting idle or slow one is dropped "
        "(default %(default)s)",
    )
    add_kwarg_option(serve)
    serve.set_defaults(func=cmd_serve_retrieval)
