"""Lazy imports of optional libraries, with one clear error that names the extra to install."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from gather_envs.errors import GatherError

PACKAGE = "gather-envs"


class MissingExtraError(GatherError, ImportError):
    """An adapter's library is not installed; the message names the extra that installs it."""


def install_hint(extra: str) -> str:
    """The pip command that installs an extra, e.g. ``pip install "gather-envs[trl]"``."""
    return f'pip install "{PACKAGE}[{extra}]"'


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise MissingExtraError naming ``extra``.

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
            f"this adapter needs the {top!r} package, which is not importable ({exc}); "
            f"install it with: {install_hint(extra)}"
        ) from exc
