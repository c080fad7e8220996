"""Declared parameters: the name, type, range and default of an env kwarg or an agent option.

Agents parse their options with these declarations and the CLI checks ``--kwarg`` and
``--agent-option`` against the same ones before anything runs, so the two never disagree and a
bad value is one clear error (``explore_probability=5: expected a float in [0, 1]``), not a
traceback from deep inside a constructor.

>>> p = Parameter("top_k", int, 3, minimum=1)
>>> p.parse("4"), p.describe()
(4, 'top_k (int >= 1, default 3)')
>>> parse_parameters("env", [p], {"top_kk": 3})
Traceback (most recent call last):
...
gather_envs.errors.ConfigError: env has no parameter 'top_kk' (did you mean top_k?); allowed: top_k
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gather_envs.errors import ConfigError
from gather_envs.json_files import loads_bounded

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
ANY_KIND: type | None = None
"""The ``kind`` of a parameter whose value may be any JSON value (a dict, a list, a mix of types)."""
_KINDS = {"int": int, "float": float, "bool": bool, "str": str, "dict": dict, "list": list}
_PATH_KINDS = ("os.PathLike", "PathLike")  # a path is given as a string


def parse_bool(value: Any) -> bool:
    """A boolean from ``true``/``false``/``1``/``0``/``yes``/``no``/``on``/``off`` or a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class Parameter:
    """One declared parameter; ``kind`` is int, float, bool, str, dict, list or ANY_KIND."""

    name: str
    kind: type | None
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False  # ``minimum`` itself is not allowed (top_p > 0)
    choices: tuple[Any, ...] | None = None
    optional: bool = True  # None (JSON null) is accepted and means "the default"
    help: str = ""

    def expected(self) -> str:
        """What a valid value looks like, e.g. ``a float in [0, 1]`` or ``one of react, tags``."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        noun = {int: "an int", float: "a float", bool: "true or false", str: "a string"}.get(
            self.kind,  # type: ignore[arg-type]
            f"a JSON {self.kind.__name__}" if self.kind is not None else "a JSON value",
        )
        low = "(" if self.exclusive_minimum else "["
        if self.minimum is not None and self.maximum is not None:
            return f"{noun} in {low}{_number(self.minimum)}, {_number(self.maximum)}]"
        if self.minimum is not None:
            return f"{noun} {'>' if self.exclusive_minimum else '>='} {_number(self.minimum)}"
        if self.maximum is not None:
            return f"{noun} <= {_number(self.maximum)}"
        return noun

    def describe(self) -> str:
        """One line for help texts: name, type and range, default."""
        kind = self.expected()
        for article in ("an ", "a "):
            kind = kind.removeprefix(article)
        default = "" if self.default is None else f", default {_number(self.default)}"
        return f"{self.name} ({kind}{default})"

    def parse(self, value: Any) -> Any:
        """``value`` converted to the declared kind and checked against the range; ConfigError if not."""
        if value is None and self.optional:
            return None
        try:
            parsed = self._convert(value)
        except (TypeError, ValueError, OverflowError):
            parsed = _INVALID
        if parsed is _INVALID or not self._in_range(parsed):
            raise ConfigError(f"{self.name}={_show(value)}: expected {self.expected()}")
        return parsed

    def _convert(self, value: Any) -> Any:
        """The value as ``kind`` (numpy scalars included), or _INVALID."""
        if self.kind is bool:
            if isinstance(value, bool | str):
                return parse_bool(value)
            return bool(value) if isinstance(value, numbers.Integral) and value in (0, 1) else _INVALID
        if isinstance(value, bool) and self.kind in (int, float):
            return _INVALID
        if self.kind is int:
            if isinstance(value, numbers.Integral | str):
                return int(value)
            number = float(value) if isinstance(value, numbers.Real) else math.nan
            return int(number) if number.is_integer() else _INVALID
        if self.kind is float:
            number = float(value) if isinstance(value, numbers.Real | str) else math.nan
            return number if math.isfinite(number) else _INVALID
        if self.kind is str:
            return value if isinstance(value, str) else _INVALID
        if self.kind in (dict, list):
            if isinstance(value, str):
                value = loads_bounded(value)  # NotJson (too deep, too large) is a ValueError
            return value if isinstance(value, self.kind) else _INVALID  # type: ignore[arg-type]
        return value

    def _in_range(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        below = self.minimum is not None and (
            value < self.minimum or (self.exclusive_minimum and value == self.minimum)
        )
        return not below and (self.maximum is None or value <= self.maximum)


_INVALID = object()


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def parse_parameters(
    owner: str,
    declared: Iterable[Parameter],
    values: Mapping[str, Any],
    defaults: bool = False,
    noun: str = "parameter",
) -> dict[str, Any]:
    """``values`` checked against ``declared`` (unknown names, types, ranges) and converted.

    ``owner`` and ``noun`` name them in messages (``agent 'heuristic' has no option ...``). With
    ``defaults`` every declared parameter is in the result, else only the ones given.
    """
    by_name = {p.name: p for p in declared}
    unknown = [name for name in values if name not in by_name]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, list(by_name), n=1) or [
            known for known in by_name if known.startswith(name)
        ]
        hint = f" (did you mean {close[0]}?)" if close else ""
        allowed = ", ".join(by_name) or "none"
        raise ConfigError(f"{owner} has no {noun} {name!r}{hint}; allowed: {allowed}")
    parsed = {name: by_name[name].parse(value) for name, value in values.items()}
    if defaults:
        for parameter in by_name.values():
            if parsed.get(parameter.name) is None:
                parsed[parameter.name] = parameter.default
    return parsed


def parameters_from_signature(
    function: Callable[..., Any], ranges: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[Parameter, ...]:
    """Parameters from a signature's names, annotations and defaults, plus ``ranges`` by name.

    Works on string annotations (``from __future__ import annotations``) without evaluating them.
    """
    ranges = ranges or {}
    parameters = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name == "self" or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        annotation = parameter.annotation
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        kind, optional = _kind(text)
        default = None if parameter.default is parameter.empty else parameter.default
        parameters.append(
            Parameter(parameter.name, kind, default, optional=optional, **ranges.get(parameter.name, {}))
        )
    return tuple(parameters)


def _kind(annotation: str) -> tuple[type | None, bool]:
    """The kind an annotation string such as ``"int | None"`` asks for, and whether None is allowed.

    >>> _kind("int | None")
    (<class 'int'>, True)
    >>> _kind("str | os.PathLike[str] | None")
    (<class 'str'>, True)
    >>> _kind("str | list[str] | None")
    (None, True)
    """
    parts = _top_level_union(annotation)
    optional = "None" in parts
    kinds = set()
    for part in parts:
        if part == "None":
            continue
        base = part.split("[", 1)[0]
        kinds.add(str if base in _PATH_KINDS else _KINDS.get(base, ANY_KIND))
    if kinds == {int, float}:
        kinds = {float}
    return (kinds.pop() if len(kinds) == 1 else ANY_KIND), optional


def _top_level_union(annotation: str) -> list[str]:
    """The members of ``a | b[c | d] | None``, split only outside brackets."""
    parts, depth, current = [], 0, ""
    for char in annotation:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts
