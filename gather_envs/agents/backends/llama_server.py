"""``python -m gather_envs.agents.backends.llama_server``: llama-cpp-python's OpenAI server, crash-guarded.

Takes the arguments of ``python -m llama_cpp.server`` (``--model``, ``--n_ctx``, ``--port``, ...)
and runs that server with two changes: models load without llama.cpp's weight repacking (which
crashes on AMX CPUs, see :func:`~gather_envs.agents.backends.llama_embedded.no_weight_repacking`),
and the ``--model`` is first loaded and decoded in a probe process, so a native crash is one
error line and exit status 1 instead of a server that dies of SIGSEGV at its first request.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gather_envs.agents.backends.llama_embedded import (
    DEFAULT_THREADS,
    _import_llama_cpp,
    no_weight_repacking,
    probe_model,
)
from gather_envs.errors import GatherError

PROG = "python -m gather_envs.agents.backends.llama_server"
EXIT_ERROR = 1
SERVER_DEFAULT_CONTEXT_TOKENS = 2048  # llama_cpp.server's default --n_ctx (its --n_threads: DEFAULT_THREADS)


def _probe_settings(argv: Sequence[str]) -> tuple[Path, int, int] | None:
    """The model path, n_ctx and n_threads the server will load, or None without a ``--model``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model")
    parser.add_argument("--n_ctx", type=int, default=SERVER_DEFAULT_CONTEXT_TOKENS)
    parser.add_argument("--n_threads", type=int, default=DEFAULT_THREADS)
    known, _ = parser.parse_known_args(list(argv))
    if not known.model:  # a --config_file or a MODEL variable: the server reports what is missing
        return None
    return Path(known.model), known.n_ctx, known.n_threads


def main(argv: Sequence[str] | None = None) -> int:
    """Probe the model, then serve it with ``llama_cpp.server`` (returns only on an error or exit)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        llama_cpp = _import_llama_cpp()
        settings = _probe_settings(args)
        if settings is not None and settings[0].is_file():
            probe_model(*settings)
        from llama_cpp.server.__main__ import main as serve
    except (GatherError, ImportError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    sys.argv = [PROG, *args]  # llama_cpp.server parses sys.argv itself
    with no_weight_repacking(llama_cpp):
        serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
