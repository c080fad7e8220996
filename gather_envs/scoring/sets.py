"""Set-valued answers: a task whose answer is several items that must all be given.

A set task keeps its gold items in ``Task.meta["answer_set"]`` and names the ``set`` checker. A
prediction is a list of items (the tool dialect's JSON list) or one string, split into items by
:func:`answer_items`: a JSON list of strings when the text is one, else on ``;`` when the text holds
one (so names with commas survive: ``answer[Smith, John; Doe, Jane]``), else on ``,``. Success is
set equality after SQuAD normalization (order and repeats do not matter); F1 is over items.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from gather_envs.scoring.normalize import normalize_answer

ANSWER_SET_KEY = "answer_set"
ITEM_SEPARATORS = (";", ",")
"""Tried in this order: the first one the text contains splits it."""


def answer_items(prediction: str | Sequence[str]) -> tuple[str, ...]:
    """The items of a predicted answer, stripped, empty ones dropped.

    >>> answer_items("Smith, John; Doe, Jane"), answer_items("a, b"), answer_items('["x, y", "z"]')
    (('Smith, John', 'Doe, Jane'), ('a', 'b'), ('x, y', 'z'))
    """
    if isinstance(prediction, str):
        parsed = _json_list(prediction)
        if parsed is not None:
            prediction = parsed
        else:
            separator = next((s for s in ITEM_SEPARATORS if s in prediction), None)
            prediction = prediction.split(separator) if separator else [prediction]
    return tuple(item.strip() for item in prediction if item.strip())


def _json_list(text: str) -> list[str] | None:
    """``text`` as a JSON list of strings, or None when it is not one."""
    text = text.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def normalized_set(items: Iterable[str]) -> frozenset[str]:
    """The normalized, non-empty items (a set: compared, never iterated into output)."""
    return frozenset(n for n in (normalize_answer(item) for item in items) if n)


def set_equal(prediction: str | Sequence[str], golds: Sequence[str]) -> bool:
    """Whether the predicted items are exactly the gold items, after normalization.

    >>> set_equal("Bob; alice", ["Alice", "Bob"]), set_equal("Alice", ["Alice", "Bob"])
    (True, False)
    """
    predicted = normalized_set(answer_items(prediction))
    return bool(predicted) and predicted == normalized_set(golds)


def set_f1(prediction: str | Sequence[str], golds: Sequence[str]) -> float:
    """F1 over items: precision over the distinct predicted items, recall over the gold ones.

    >>> set_f1("Alice, Carol", ["Alice", "Bob"])
    0.5
    """
    predicted, expected = normalized_set(answer_items(prediction)), normalized_set(golds)
    common = len(predicted & expected)
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)
