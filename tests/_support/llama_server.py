"""Start a real ``llama_cpp.server`` with the embedded SmolLM2 model, for tests.

It runs through the package's launcher (``python -m gather_envs.agents.backends.llama_server``),
which loads the model without the weight repacking that crashes llama.cpp on AMX CPUs.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_START_TIMEOUT_S = 90.0
POLL_S = 0.2
LOG_TAIL = 2000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_smollm2(log_dir: Path, timeout_s: float = SERVER_START_TIMEOUT_S) -> Iterator[str]:
    """Serve SmolLM2 on 127.0.0.1 and yield its /v1 base URL; the server stops on exit."""
    from gather_envs.agents.backends.llama_embedded import DEFAULT_THREADS, smollm2_model_path

    port = free_port()
    log = log_dir / "server.log"
    command = [sys.executable, "-m", "gather_envs.agents.backends.llama_server"]
    command += ["--model", str(smollm2_model_path())]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    command += ["--n_threads", str(DEFAULT_THREADS)]
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with {process.returncode}:\n{log.read_text()[-LOG_TAIL:]}"
                )
            try:
                with urllib.request.urlopen(url + "/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama_cpp.server did not answer within {timeout_s} s:\n{log.read_text()[-LOG_TAIL:]}"
                )
            time.sleep(POLL_S)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
