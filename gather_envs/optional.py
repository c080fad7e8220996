"""Optional libraries, imported when first needed: one clear error that names the extra to install.

The one place every layer imports an optional dependency from (trainers, Ray, llama.cpp, ijson,
tqdm, math-verify), so the message and the check are the same everywhere.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from gather_envs.errors import ConfigError

PACKAGE = "gather-envs"


class MissingExtraError(ConfigError, ImportError):
    """An optional library is not installed; the message names the extra that installs it."""


def install_hint(extra: str) -> str:
    """The pip command that installs an extra, e.g. ``pip install "gather-envs[trl]"``."""
    return f'pip install "{PACKAGE}[{extra}]"'


def optional(module: str) -> ModuleType | None:
    """``module`` if it can be imported, else None (for a feature with a fallback).

    >>> optional("no_such_module_here") is None
    True
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def require(module: str, extra: str, what: str = "this adapter") -> ModuleType:
    """Import ``module`` or raise MissingExtraError naming ``extra`` (``what`` is the feature needing it).

    >>> require("json", "none").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        missing = (getattr(exc, "name", None) or "").split(".")[0]
        if missing and missing != top and importlib.util.find_spec(top) is not None:
            raise MissingExtraError(
                f"{top!r} is installed but importing {module!r} failed ({exc}); install the missing "
                f"package ({missing}) or reinstall with: {install_hint(extra)}"
            ) from exc
        raise MissingExtraError(
            f"{what} needs the {top!r} package, which is not importable ({exc}); "
            f"install it with: {install_hint(extra)}"
        ) from exc
