"""The chance floor: what a question-only guesser (no search, no documents) scores at PASS@(k, 0).

A bank of guessers reads only the question (and, for one of them, the train split's answers):

- ``yes`` and ``no``: a fixed answer; deterministic, so pass@k is its pass@1 for every k.
- ``named``: an entity named in the question, drawn uniformly without replacement among the m
  distinct candidates (capitalized word runs of the question, plus gold-path queries that occur in
  it verbatim); pass@k is exact: ``1 - C(m - h, k) / C(m, k)`` for h correct candidates.
- ``train``: the train split's answers for the same family and question template (``Task.kind``;
  the family's answers when the template is absent), guessed most frequent first (ties by answer
  text): the best k distinct guesses, so pass@k is 1 when the gold is among the first k.
- ``combined``: one deterministic list of distinct guesses, ``yes``, ``no``, the named entities in
  order of appearance, then the ``train`` ranking; it is what a coin flip over yes/no becomes at
  k >= 2 (both answers tried), so binary questions saturate it.

The floor of a family at k is the best guesser's mean over the family's test tasks; which guesser
gives it is reported beside. Without a train split (real datasets) only the question-only rules
run, and the floor says so by naming no ``train`` guesser.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gather_envs.errors import ConfigError
from gather_envs.records.tasks import Task
from gather_envs.scoring.checkers import answer_is_correct
from gather_envs.scoring.normalize import normalize_answer

DEFAULT_FLOOR_KS = (1, 2, 4, 8, 16, 32, 64)
FIXED_ANSWERS = ("yes", "no")
GUESSER_NAMED = "named"
GUESSER_TRAIN = "train"
GUESSER_COMBINED = "combined"
GUESSERS = (*FIXED_ANSWERS, GUESSER_NAMED, GUESSER_TRAIN, GUESSER_COMBINED)
GUESSER_NONE = "none"  # reported as the best guesser when every guesser scores 0
FLOOR_DIGITS = 6
# Lowercase words allowed inside a capitalized run ("Academy of Arts", "First for Women").
NAME_CONNECTORS = frozenset({"of", "for", "the", "de", "von", "van", "la", "le", "du", "del"})
# Capitalized question openers that are not names.
QUESTION_WORDS = frozenset(
    [
        "who",
        "what",
        "which",
        "where",
        "when",
        "why",
        "how",
        "whom",
        "whose",
        "in",
        "of",
        "at",
        "after",
        "for",
        "from",
        "was",
        "were",
        "is",
        "are",
        "do",
        "does",
        "did",
        "has",
        "have",
        "had",
        "the",
        "a",
        "an",
        "by",
        "to",
        "on",
    ]
)
_TOKEN = re.compile(r"[\w'’.-]+")


@dataclass(frozen=True)
class FloorTable:
    """Per family: the floor at each k, the guesser that gives it, and every guesser's curve."""

    floor: dict[str, dict[int, float]]
    best: dict[str, dict[int, str]]
    guessers: dict[str, dict[str, dict[int, float]]]
    tasks: dict[str, int]

    def to_json(self) -> dict[str, dict[str, object]]:
        """JSON form (k as string keys), for manifests and results files."""
        return {
            family: {
                "tasks": self.tasks[family],
                "floor": {str(k): v for k, v in self.floor[family].items()},
                "best_guesser": {str(k): g for k, g in self.best[family].items()},
                "guessers": {
                    name: {str(k): v for k, v in curve.items()}
                    for name, curve in self.guessers[family].items()
                },
            }
            for family in self.floor
        }


def named_candidates(task: Task) -> list[str]:
    """Distinct entity names a question-only reader can see in the question, in order of appearance."""
    tokens = _TOKEN.findall(task.question)
    runs: list[list[str]] = []
    current: list[str] = []
    for i, token in enumerate(tokens):
        word = token.strip(".'’")
        capital = bool(word) and (word[0].isupper() or word[0].isdigit())
        if (
            capital
            and not (i == 0 and word.lower() in QUESTION_WORDS)
            or current
            and word.lower() in NAME_CONNECTORS
            and i + 1 < len(tokens)
            and tokens[i + 1][:1].isupper()
        ):
            current.append(word)
        else:
            if current:
                runs.append(current)
            current = []
    if current:
        runs.append(current)
    names = [" ".join(run) for run in runs]
    question = normalize_answer(task.question)
    names += [
        s.query for s in task.gold_path if normalize_answer(s.query) and normalize_answer(s.query) in question
    ]
    distinct: dict[str, str] = {}
    for name in names:
        distinct.setdefault(normalize_answer(name), name)
    return [name for key, name in distinct.items() if key]


def _named_pass_at(task: Task, ks: Sequence[int]) -> dict[int, float]:
    candidates = named_candidates(task)
    m = len(candidates)
    hits = sum(answer_is_correct(c, task) for c in candidates)
    if m == 0 or hits == 0:
        return dict.fromkeys(ks, 0.0)
    return {k: 1.0 - math.comb(m - hits, min(k, m)) / math.comb(m, min(k, m)) for k in ks}


def _ranked_answers(tasks: Iterable[Task]) -> list[str]:
    counts = Counter(t.answer for t in tasks)
    return [answer for answer, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def _ranked_pass_at(task: Task, ranked: Sequence[str], ks: Sequence[int]) -> dict[int, float]:
    first = next((i for i, guess in enumerate(ranked[: max(ks)]) if answer_is_correct(guess, task)), None)
    return {k: float(first is not None and first < k) for k in ks}


def _combined(task: Task, ranked: Sequence[str], limit: int) -> list[str]:
    """The ``combined`` guesser's first ``limit`` distinct guesses for ``task``."""
    guesses: dict[str, str] = {}
    for guess in [*FIXED_ANSWERS, *named_candidates(task), *ranked]:
        guesses.setdefault(normalize_answer(guess), guess)
        if len(guesses) == limit:
            break
    return list(guesses.values())


def chance_floor_table(
    test_tasks: Sequence[Task], train_tasks: Sequence[Task] = (), ks: Sequence[int] = DEFAULT_FLOOR_KS
) -> FloorTable:
    """Every guesser's PASS@(k, 0) per family of ``test_tasks``, and the best one per k."""
    ks = tuple(ks)
    if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise ConfigError(f"ks must be positive ints, got {list(ks)}")
    by_template: dict[tuple[str, str], list[Task]] = {}
    by_family: dict[str, list[Task]] = {}
    for task in train_tasks:
        by_template.setdefault((task.family, task.kind), []).append(task)
        by_family.setdefault(task.family, []).append(task)
    ranked_template = {key: _ranked_answers(tasks) for key, tasks in by_template.items()}
    ranked_family = {family: _ranked_answers(tasks) for family, tasks in by_family.items()}
    families = sorted({t.family for t in test_tasks})
    floor: dict[str, dict[int, float]] = {}
    best: dict[str, dict[int, str]] = {}
    curves: dict[str, dict[str, dict[int, float]]] = {}
    counts: dict[str, int] = {}
    for family in families:
        tasks = [t for t in test_tasks if t.family == family]
        has_train = family in ranked_family
        names = [*FIXED_ANSWERS, GUESSER_NAMED, *([GUESSER_TRAIN] if has_train else []), GUESSER_COMBINED]
        sums = {name: dict.fromkeys(ks, 0.0) for name in names}
        for task in tasks:
            per_task = {
                fixed: dict.fromkeys(ks, float(answer_is_correct(fixed, task))) for fixed in FIXED_ANSWERS
            }
            per_task[GUESSER_NAMED] = _named_pass_at(task, ks)
            ranked: Sequence[str] = ()
            if has_train:
                ranked = ranked_template.get((family, task.kind), ranked_family[family])
                per_task[GUESSER_TRAIN] = _ranked_pass_at(task, ranked, ks)
            per_task[GUESSER_COMBINED] = _ranked_pass_at(task, _combined(task, ranked, max(ks)), ks)
            for name, values in per_task.items():
                for k in ks:
                    sums[name][k] += values[k]
        curves[family] = {
            name: {k: round(total / len(tasks), FLOOR_DIGITS) for k, total in values.items()}
            for name, values in sums.items()
        }
        winners = {k: max(names, key=lambda name: curves[family][name][k]) for k in ks}
        floor[family] = {k: curves[family][winners[k]][k] for k in ks}
        best[family] = {k: winners[k] if floor[family][k] > 0 else GUESSER_NONE for k in ks}
        counts[family] = len(tasks)
    return FloorTable(floor=floor, best=best, guessers=curves, tasks=counts)


def chance_floor(
    test_tasks: Sequence[Task], train_tasks: Sequence[Task] = (), ks: Sequence[int] = DEFAULT_FLOOR_KS
) -> dict[str, dict[int, float]]:
    """The chance floor PASS@(k, 0) per family: the best question-only guesser at each k.

    ``chance_floor_table`` gives the same numbers with the winning guesser and every curve.
    """
    return chance_floor_table(test_tasks, train_tasks, ks).floor
