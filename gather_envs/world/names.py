"""Fictional names from a seeded syllable grammar, unique within a world."""

from __future__ import annotations

import numpy as np

ONSETS = (
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "sk",
    "t",
    "th",
    "tr",
    "v",
    "z",
    "",
)
VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou", "y")
CODAS = ("", "", "", "l", "n", "r", "s", "th", "nd", "m", "x")

COUNTRY_SUFFIXES = ("ia", "ara", "istan", "ovia", "land", "eth")
CITY_SUFFIXES = ("", "", "", "ton", "mar", "holm", "grad", "port", "vale")
ORG_KINDS = ("Institute", "Company", "Society", "Foundation", "Group", "Academy", "Guild")
WORK_KINDS = ("Chronicles", "Sonata", "Letters", "Elegy", "Codex", "Saga", "Variations")
AWARD_KINDS = ("Prize", "Medal", "Award", "Laurel")

MAX_ATTEMPTS = 1000


_SYLLABLE_PARTS = (ONSETS, VOWELS, CODAS)
_SYLLABLE_BOUNDS = np.array([len(part) for part in _SYLLABLE_PARTS])


def word(rng: np.random.Generator, min_syllables: int = 2, max_syllables: int = 3) -> str:
    """One capitalized invented word of 2-3 syllables.

    The syllables' parts come from one vectorized draw, which yields the same numbers as one
    scalar draw per part (onset, vowel, coda, onset, ...) but costs a single numpy call.
    """
    count = int(rng.integers(min_syllables, max_syllables + 1))
    picks = rng.integers(0, np.tile(_SYLLABLE_BOUNDS, count)).tolist()
    return "".join(_SYLLABLE_PARTS[i % 3][p] for i, p in enumerate(picks)).capitalize()


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


class NameFactory:
    """Draws unique names per entity type; ``similar`` reuses a name part of an earlier entity.

    Reusing parts (a family name, a stem) is how distractor density creates look-alike names.
    ``used`` shares the taken names with another factory, so two worlds never share a name.
    """

    def __init__(self, rng: np.random.Generator, used: set[str] | None = None) -> None:
        self._rng = rng
        self._used: set[str] = used if used is not None else set()
        self._stems: dict[str, list[str]] = {}

    def _stem(self, kind: str, similar: bool) -> str:
        stems = self._stems.setdefault(kind, [])
        if similar and stems:
            return stems[int(self._rng.integers(len(stems)))]
        stem = word(self._rng)
        stems.append(stem)
        return stem

    def _compose(self, kind: str, similar: bool) -> str:
        rng = self._rng
        if kind == "person":
            return f"{word(rng, 1, 2)} {self._stem(kind, similar)}"
        if kind == "city":
            return self._stem(kind, similar) + _pick(rng, CITY_SUFFIXES)
        if kind == "country":
            return word(rng, 1, 2) + _pick(rng, COUNTRY_SUFFIXES)
        if kind == "organization":
            return f"{self._stem(kind, similar)} {_pick(rng, ORG_KINDS)}"
        if kind == "work":
            return f"The {self._stem(kind, similar)} {_pick(rng, WORK_KINDS)}"
        if kind == "award":
            return f"{self._stem(kind, similar)} {_pick(rng, AWARD_KINDS)}"
        raise ValueError(f"unknown entity type {kind!r}")

    def new(self, kind: str, similar: bool = False) -> str:
        """A name never returned before by this factory (or one sharing its ``used`` set)."""
        for _ in range(MAX_ATTEMPTS):
            name = self._compose(kind, similar)
            key = name.lower()
            if key not in self._used:
                self._used.add(key)
                return name
            similar = False
        raise RuntimeError("name space exhausted; lower num_entities")
