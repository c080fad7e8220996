"""SQuAD-style answer normalization, exact match and token F1."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf"})
"""Control and format characters (NUL, zero-width spaces and joiners, bidi marks, BOM): dropped."""
_ASCII_CONTROLS = {code: None for code in range(0x20) if not chr(code).isspace()} | {0x7F: None}


def _visible(text: str) -> str:
    """``text`` in NFKC with control and format characters removed (whitespace controls kept)."""
    if text.isascii():
        return text.translate(_ASCII_CONTROLS)
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD's normalization).

    Before that, NFKC folds compatibility forms (full-width letters, ligatures) and control and
    format characters are removed, so an answer with a zero-width space, a bidi mark or a NUL in
    it still matches (gold answers get the same treatment).

    >>> normalize_answer("The  Brathis Institute!")
    'brathis institute'
    >>> normalize_answer("Bra\\u200bthis\\u200f Ｉnstitute\\x00")
    'brathis institute'
    """
    text = _visible(text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Iterable[str]) -> bool:
    """True when the normalized prediction equals any normalized gold answer."""
    predicted = normalize_answer(prediction)
    return any(predicted == normalize_answer(gold) for gold in golds)


def _f1(prediction: str, gold: str) -> float:
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not predicted_tokens or not gold_tokens:
        return float(predicted_tokens == gold_tokens)
    common = Counter(predicted_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, golds: Iterable[str]) -> float:
    """Best token-level F1 of the prediction against any gold answer."""
    return max((_f1(prediction, gold) for gold in golds), default=0.0)


def answer_in_text(answer: str, text: str) -> bool:
    """True when the normalized answer occurs as a whole-token run inside the normalized text."""
    needle = normalize_answer(answer).split()
    hay = normalize_answer(text).split()
    if not needle:
        return False
    width = len(needle)
    return any(hay[i : i + width] == needle for i in range(len(hay) - width + 1))
