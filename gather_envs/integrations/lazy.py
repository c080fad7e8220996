"""The adapters' lazy classes: subclasses of a trainer's base classes, built on first use.

Importing an adapter module never imports its trainer; the classes are defined (and named as
module attributes, so pickling and trainers that import them by path find them) the first time
they are asked for. One place for the pattern every adapter shares.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any


class LazyClasses:
    """Classes ``build`` defines on first use, exposed as attributes ``names`` of ``module``.

    ``registered``, if given, is called once with the built classes (a trainer's registry).
    """

    def __init__(
        self,
        module: str,
        names: tuple[str, ...],
        build: Callable[[], Mapping[str, type]],
        registered: Callable[[Mapping[str, type]], None] | None = None,
    ) -> None:
        self.module = module
        self.names = names
        self._build = build
        self._registered = registered
        self._classes: dict[str, type] | None = None
        self._lock = threading.Lock()

    def all(self) -> dict[str, type]:
        """Every class, built (and named ``module.name``) the first time."""
        with self._lock:
            if self._classes is None:
                built = dict(self._build())
                for name, cls in built.items():
                    cls.__module__ = self.module
                    cls.__qualname__ = name
                if self._registered is not None:
                    self._registered(built)
                self._classes = built
            return self._classes

    def clear(self) -> None:
        """Forget the built classes (tests that hide the trainer build them again)."""
        with self._lock:
            self._classes = None

    def get(self, name: str) -> type:
        """One class by name."""
        return self.all()[name]

    def module_getattr(self, name: str) -> Any:
        """The module's ``__getattr__`` (PEP 562): a class name builds the classes."""
        if name in self.names:
            return self.get(name)
        raise AttributeError(f"module {self.module!r} has no attribute {name!r}")
