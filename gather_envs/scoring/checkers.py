r"""Answer checkers: which answers count as correct for a task (``Task.meta["checker"]``).

``exact`` (the default) is SQuAD exact match after normalization. ``set`` wants every item of
``Task.meta["answer_set"]`` and no other (see :mod:`~gather_envs.scoring.sets`). ``math`` accepts mathematically
equivalent LaTeX answers: an answer is correct when the fallback below says so, or when
``math-verify`` (the ``math`` extra, imported lazily) parses both and finds them equal
(``\frac{1}{2}``, ``0.5``, ``\dfrac12``, ``\boxed{1/2}``, ``\left(3, \frac{\pi}{2}\right)`` vs
``(3, \pi/2)``...). math-verify's timeouts use ``SIGALRM``, so they are on in the main thread
and off in other threads (where signals cannot be used).

The fallback, used alone when math-verify is missing, compares normalized strings: it unwraps
``\boxed{...}``, removes ``$``, ``\left``/``\right``, LaTeX spacing (``\,`` ``\!`` ``\;``), all
whitespace, ``^\circ`` and a trailing ``.0``, unwraps ``\text{...}``, reads ``\dfrac`` and
``\tfrac`` as ``\frac`` and drops thousands separators; then it also compares plain numbers,
``a/b`` and ``\frac{a}{b}`` / ``\frac ab`` as exact fractions. It has no symbolic algebra:
``x+1`` and ``1+x`` match only with math-verify.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

from gather_envs.errors import ConfigError
from gather_envs.optional import optional
from gather_envs.records.tasks import Task
from gather_envs.scoring.normalize import answer_in_text, exact_match, f1_score, normalize_answer
from gather_envs.scoring.sets import ANSWER_SET_KEY, set_equal, set_f1

CHECKER_KEY = "checker"
CHECKER_EXACT = "exact"
CHECKER_MATH = "math"
CHECKER_SET = "set"
CHECKERS = (CHECKER_EXACT, CHECKER_MATH, CHECKER_SET)
MATH_VERIFY_TIMEOUT_S = 5
GOLD_PARSE_CACHE = 4096

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_LATEX_SPACES = re.compile(r"\\[,;:! ]|\\q?quad(?![A-Za-z])")
_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\{?\\circ\}?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TRAILING_ZERO = re.compile(r"(?<=\d)\.0+$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_FRACTION = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}$")
_SHORT_FRACTION = re.compile(r"^(-?)\\frac(\d)(\d)$")
_SLASH = re.compile(r"^(-?\d+)/(\d+)$")


def answer_is_correct(prediction: str | Sequence[str], task: Task) -> bool:
    """Whether ``prediction`` answers ``task``, by the checker its meta names.

    A list prediction (the tool dialect's JSON list) is read item by item by the ``set`` checker and
    as its items joined by ``", "`` by the others.
    """
    checker = task.meta.get(CHECKER_KEY, CHECKER_EXACT)
    if checker == CHECKER_SET:
        return set_equal(prediction, gold_items(task))
    prediction = as_text(prediction)
    if checker == CHECKER_MATH:
        return math_equal(prediction, task.answers)
    if checker == CHECKER_EXACT:
        return exact_match(prediction, task.answers)
    raise ConfigError(f"task {task.task_id!r} names an unknown answer checker {checker!r}; use {CHECKERS}")


def answer_f1(prediction: str | Sequence[str], task: Task) -> float:
    """Token F1 against the best gold answer, or item F1 for a ``set`` task."""
    if task.meta.get(CHECKER_KEY) == CHECKER_SET:
        return set_f1(prediction, gold_items(task))
    return f1_score(as_text(prediction), task.answers)


def blank_gold_field(task: Task) -> str | None:
    """The first gold field of ``task`` that normalizes to nothing (``The``, ``!!!``), or None.

    Such a gold answer is matched by any answer that also normalizes to nothing (``answer[an]``
    would score 1.0), so loaders refuse it. ``math`` tasks are compared as LaTeX, not normalized.

    >>> blank_gold_field(Task("t", "q", "Oslo", ("the",), "single-hop", 1, (), ()))
    'aliases[0]'
    """
    checker = task.meta.get(CHECKER_KEY, CHECKER_EXACT)
    if checker == CHECKER_MATH:
        return None
    if not normalize_answer(task.answer):
        return "answer"
    for i, alias in enumerate(task.aliases):
        if not normalize_answer(alias):
            return f"aliases[{i}]"
    if checker == CHECKER_SET:
        for i, item in enumerate(task.meta.get(ANSWER_SET_KEY) or ()):
            if not isinstance(item, str) or not normalize_answer(item):
                return f"meta.{ANSWER_SET_KEY}[{i}]"
    return None


def answer_covers(prediction: str | Sequence[str], task: Task) -> bool:
    """Whether the answer contains a gold answer (every gold item, for a ``set`` task) after
    normalization, as a whole-token run: Search-R1's ``cover_em``. A correct answer always covers.

    Lenient on purpose, for a training reward: ``"Paris, France"`` covers ``"Paris"``.
    """
    if answer_is_correct(prediction, task):
        return True
    text = as_text(prediction)
    if task.meta.get(CHECKER_KEY) == CHECKER_SET:
        return all(answer_in_text(item, text) for item in gold_items(task))
    return any(answer_in_text(gold, text) for gold in task.answers)


def gold_items(task: Task) -> tuple[str, ...]:
    """The gold items of a ``set`` task (its one answer when the meta holds no list)."""
    return tuple(str(item) for item in task.meta.get(ANSWER_SET_KEY, task.answers[:1]))


def as_text(prediction: str | Sequence[str]) -> str:
    """A prediction as one string: a list's items joined by ``", "``."""
    return prediction if isinstance(prediction, str) else ", ".join(prediction)


def math_equal(prediction: str, golds: Iterable[str], use_math_verify: bool | None = None) -> bool:
    r"""Whether ``prediction`` equals a gold LaTeX answer (math-verify, else the string fallback).

    ``use_math_verify``: None uses it when installed, False never, True requires it.

    >>> math_equal(r"\dfrac12", [r"\frac{1}{2}"], use_math_verify=False)
    True
    """
    golds = tuple(golds)
    if any(fallback_equal(prediction, gold) for gold in golds):
        return True
    if use_math_verify is False:
        return False
    module = math_verify()
    if module is None:
        if use_math_verify:
            raise ConfigError("math-verify is not installed: pip install 'gather-envs[math]'")
        return False
    timeout = MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    target = module.parse(_as_latex(prediction), parsing_timeout=timeout)
    if not target:
        return False
    return any(
        module.verify(_parse_gold(module, gold, timeout), target, timeout_seconds=timeout) for gold in golds
    )


def math_verify() -> Any:
    """The ``math_verify`` module, or None when it is not installed."""
    return optional("math_verify")


@functools.lru_cache(maxsize=GOLD_PARSE_CACHE)
def _parse_gold(module: Any, gold: str, timeout: int | None) -> Any:
    """math-verify's parse of a gold answer (gold answers repeat across episodes: cached)."""
    return module.parse(_as_latex(gold), parsing_timeout=timeout)


def _as_latex(text: str) -> str:
    """Text math-verify reads as LaTeX: wrapped in ``$...$`` unless already delimited or boxed."""
    text = text.strip()
    if "$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text:
        return text
    return f"${text}$"


def unbox(text: str) -> str:
    r"""The content of the last ``\boxed{...}`` in ``text`` (``text`` itself when there is none)."""
    matches = list(_BOXED.finditer(text))
    if not matches:
        return text
    start = matches[-1].end()
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]


def normalize_math(text: str) -> str:
    r"""The fallback's canonical form of a LaTeX answer.

    >>> normalize_math(r"$\boxed{\left( 3, \dfrac{\pi}{2} \right)}$")
    '(3,\\frac{\\pi}{2})'
    """
    text = unbox(text.strip()).replace("$", "")
    text = _LEFT_RIGHT.sub("", text)
    text = _LATEX_SPACES.sub("", text)
    text = _TEXT.sub(r"\1", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _DEGREES.sub("", text)
    text = "".join(text.split())
    text = _THOUSANDS.sub("", text)
    return _TRAILING_ZERO.sub("", text.rstrip("."))


def _as_fraction(text: str) -> Fraction | None:
    """A normalized answer as an exact number, when it is a plain number or simple fraction."""
    if _NUMBER.match(text):
        return Fraction(text)
    for pattern in (_FRACTION, _SHORT_FRACTION):
        match = pattern.match(text)
        if match:
            sign, numerator, denominator = match.groups()
            if int(denominator) == 0:
                return None
            value = Fraction(int(numerator), int(denominator))
            return -value if sign else value
    match = _SLASH.match(text)
    if match and int(match.group(2)) != 0:
        return Fraction(int(match.group(1)), int(match.group(2)))
    return None


def fallback_equal(prediction: str, gold: str) -> bool:
    r"""The fallback check: equal normalized strings, or equal simple numbers.

    >>> fallback_equal("0.5", r"\frac{1}{2}"), fallback_equal("10.0", "10"), fallback_equal("3", "4")
    (True, True, False)
    """
    predicted, expected = normalize_math(prediction), normalize_math(gold)
    if not predicted or not expected:
        return False
    if predicted == expected:
        return True
    value = _as_fraction(predicted)
    return value is not None and value == _as_fraction(expected)
