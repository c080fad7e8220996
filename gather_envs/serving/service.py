"""Run the retrieval service: uvicorn with the guarded h11 protocol, in one or several processes.

The parent builds the :class:`Retriever` (or opens its index) once and binds the socket; each
worker is then a ``fork`` of it, so every worker serves the same index: the pages of a
memory-mapped index are the page cache's, and the arrays of an in-memory one are shared
copy-on-write (they are never written after the build; the Python objects around them are copied
as their reference counts change). The kernel spreads new connections over the workers, which all
accept on the one listening socket. Each worker has its own event loop, connection guard, byte
budget and search threads. A worker that dies is replaced; the parent stops them all on SIGTERM or
SIGINT, and each worker stops if the parent dies (``PR_SET_PDEATHSIG``).

uvicorn's own ``--workers`` supervisor spawns fresh interpreters instead, and each would build its
own in-memory index: ``workers`` times the memory and the start-up time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from types import FrameType

import uvicorn

from gather_envs.serving.asgi_app import RetrievalApp
from gather_envs.serving.connection_guard import ConnectionGuard, GuardedH11Protocol
from gather_envs.serving.limits import MAX_WORKERS, ServiceLimits
from gather_envs.serving.retrieval_server import RETRIEVE_PATH, Retriever

LISTEN_BACKLOG = 4096
"""Connections the kernel queues before a worker accepts them."""
PR_SET_PDEATHSIG = 1
"""Linux ``prctl`` option: the signal a process gets when its parent dies."""
RESPAWN_DELAY_S = 0.5
"""Pause before replacing a worker that died, so a worker failing at start does not spin."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free one), shared by every worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and without
    # it an answer's head and body (two writes) wait on the client's delayed ACK (48 ms an answer).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def server_url(sock: socket.socket) -> str:
    """The ``/retrieve`` URL of a bound socket, with the port it actually got."""
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in str(host) else str(host)
    return f"http://{host}:{port}{RETRIEVE_PATH}"


def serve(
    retriever: Retriever, sock: socket.socket, workers: int = 1, limits: ServiceLimits | None = None
) -> None:
    """Serve ``retriever`` on ``sock`` until SIGTERM or SIGINT: in this process, or in ``workers`` forks."""
    limits = limits or ServiceLimits()
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be in [1, {MAX_WORKERS}], got {workers}")
    if workers == 1:
        _serve_worker(retriever, sock, limits)
        return
    _Supervisor(retriever, sock, workers, limits).run()


def _serve_worker(retriever: Retriever, sock: socket.socket, limits: ServiceLimits) -> None:
    """One worker: a uvicorn server on ``sock`` with its own guard and app, until told to stop."""
    guard = ConnectionGuard(limits)
    config = uvicorn.Config(
        RetrievalApp(retriever, limits),
        http=GuardedH11Protocol.bound_to(guard),
        loop="asyncio",
        lifespan="off",
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]  (used as call_later's delay)
        backlog=LISTEN_BACKLOG,
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        sweeper = asyncio.get_running_loop().create_task(guard.run())
        try:
            await server.serve(sockets=[sock])
        finally:
            sweeper.cancel()

    asyncio.run(run())


class _Supervisor:
    """Forks the workers, replaces any that dies, and stops them all when told to."""

    def __init__(
        self, retriever: Retriever, sock: socket.socket, workers: int, limits: ServiceLimits
    ) -> None:
        self.retriever, self.sock, self.workers, self.limits = retriever, sock, workers, limits
        self.children: set[int] = set()
        self.stopping = False

    def run(self) -> None:
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not self.stopping:
                while len(self.children) < self.workers and not self.stopping:
                    self.children.add(self._fork())
                with contextlib.suppress(ChildProcessError, InterruptedError):
                    pid, status = os.wait()
                    self.children.discard(pid)
                    if not self.stopping:
                        print(
                            f"gather-envs serve-retrieval: worker {pid} ended ({_describe(status)}); replacing it",
                            file=sys.stderr,
                            flush=True,
                        )
                        time.sleep(RESPAWN_DELAY_S)
        finally:
            self._stop(signal.SIGTERM, None)
            for pid in self.children:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        """Stop replacing workers and pass the signal on; the loop ends as they exit."""
        self.stopping = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _fork(self) -> int:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            return pid
        code = 0
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            _die_with_parent(parent)
            _serve_worker(self.retriever, self.sock, self.limits)
        except BaseException as exc:  # a worker never returns into the supervisor's loop
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                print(f"gather-envs serve-retrieval: worker failed: {exc!r}", file=sys.stderr, flush=True)
                code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this process when its parent dies (no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def _describe(status: int) -> str:
    """A wait status in words."""
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
