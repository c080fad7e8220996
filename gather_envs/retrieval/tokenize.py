"""The one tokenizer shared by documents and queries, so both sides of BM25 agree.

Rule: lowercase the text with :meth:`str.lower`, then keep every maximal run of ``\\w``
characters (``re.findall(r"\\w+", ...)``). ``\\w`` is Unicode-aware, so it matches letters and
digits of any script and the underscore; everything else (spaces, punctuation, symbols,
apostrophes, hyphens) separates tokens. There is no stopword removal and no stemming, and the
result depends only on the text.
"""

from __future__ import annotations

import re

WORD_PATTERN = re.compile(r"\w+")
"""A token: a maximal run of Unicode word characters (letters, digits, underscore)."""


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lowercase word tokens.

    >>> tokenize("Ada Lovelace's 1st note (1843), in Zürich!")
    ['ada', 'lovelace', 's', '1st', 'note', '1843', 'in', 'zürich']
    >>> tokenize("snake_case stays-whole? no: hy-phens split")
    ['snake_case', 'stays', 'whole', 'no', 'hy', 'phens', 'split']
    """
    return WORD_PATTERN.findall(text.lower())
