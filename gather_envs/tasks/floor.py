"""The chance floor: what a question-only guesser (no search, no documents) scores at PASS@(k, 0).

A bank of guessers reads only the question (and, for one of them, the train split's answers):

- ``yes`` and ``no``: a fixed answer; deterministic, so pass@k is its pass@1 for every k.
- ``named``: an entity named in the question, drawn uniformly without replacement among the m
  distinct candidates (capitalized word runs of the question, plus gold-path queries that occur in
  it verbatim); pass@k is exact: ``1 - C(m - h, k) / C(m, k)`` for h correct candidates.
- ``train``: the train split's answers for the same family and question template (``Task.kind``;
  the family's answers when the template is absent), guessed most frequent first (ties by answer
  text): the best k distinct guesses, so pass@k is 1 when the gold is among the first k.
- ``number``: for counting questions ("How many ..."), the counts 1, 2, 3, ... in order; pass@k is
  1 when the gold count is at most k. It runs only for families that ask counting questions.
- ``combined``: one deterministic list of distinct guesses, ``yes``, ``no``, the named entities in
  order of appearance, the counts (counting questions only), then the ``train`` ranking; it is what
  a coin flip over yes/no becomes at k >= 2 (both answers tried), so binary questions saturate it.

The floor of a family at k is the best guesser's mean over the family's test tasks; which guesser
gives it is reported beside, and :func:`floor_warnings` says in one line per family when the floor
at k = 2 is high and what makes the family guessable. Without a train split (real datasets) only the
question-only rules run, and the floor says so by naming no ``train`` guesser.

The stored form (a corpus manifest's :data:`MANIFEST_KEY`) is read back by :func:`parse_chance_floor`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gather_envs.errors import ConfigError, CorpusError, GatherError
from gather_envs.records.tasks import Task
from gather_envs.scoring.checkers import answer_is_correct
from gather_envs.scoring.normalize import normalize_answer

DEFAULT_FLOOR_KS = (1, 2, 4, 8, 16, 32, 64)
FIXED_ANSWERS = ("yes", "no")
GUESSER_NAMED = "named"
GUESSER_TRAIN = "train"
GUESSER_COMBINED = "combined"
GUESSER_NUMBER = "number"
GUESSERS = (*FIXED_ANSWERS, GUESSER_NAMED, GUESSER_TRAIN, GUESSER_COMBINED)
"""The guessers that run on every family."""
ALL_GUESSERS = (*GUESSERS, GUESSER_NUMBER)
"""Every guesser a floor may name (``number`` runs only where a family asks counting questions)."""
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
COUNTING_QUESTION = re.compile(r"\bhow many\b", re.IGNORECASE)
"""A question that asks for a count: the ``number`` guesser tries 1, 2, 3, ... on it."""
FIRST_COUNT = 1
WARN_K = 2
WARN_SHARE = 0.25
"""A family whose floor at k = WARN_K exceeds this share gets a one-line warning (floor_warnings)."""
MANIFEST_KEY = "chance_floor"
"""Field of a corpus manifest that holds its chance floor."""
FLOOR_FIELD = "floor"
"""Field of a family's manifest entry holding k -> PASS@(k,0) when the entry also names guessers."""
# Why a task is guessable, in the order a task is counted (once, by its first reason).
REASON_YES_NO = "yes/no"
REASON_NAMED = "named"
REASON_COUNT = "count"
REASON_TRAIN = "train"
REASON_TEXT = {
    REASON_YES_NO: "yes or no",
    REASON_NAMED: "an entity the question names",
    REASON_COUNT: "a count (guessed 1, 2, 3, ...)",
    REASON_TRAIN: "a frequent train-split answer",
}


@dataclass(frozen=True)
class FloorTable:
    """Per family: the floor at each k, the guesser that gives it, and every guesser's curve.

    ``guessable`` counts, per family, the tasks some guess can solve by why (``REASON_*``: each task
    once, by its first reason); it is empty for a floor read back from a manifest.
    """

    floor: dict[str, dict[int, float]]
    best: dict[str, dict[int, str]]
    guessers: dict[str, dict[str, dict[int, float]]]
    tasks: dict[str, int]
    guessable: dict[str, dict[str, int]] = field(default_factory=dict)

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

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], guessable: Mapping[str, Mapping[str, int]] | None = None
    ) -> FloorTable:
        """The table of :meth:`to_json`'s form (a manifest's or a cache's), checked by :func:`parse_chance_floor`."""
        floor = parse_chance_floor(data, "floor table", ConfigError)
        return cls(
            floor=floor,
            best={f: {int(k): str(g) for k, g in data[f].get("best_guesser", {}).items()} for f in floor},
            guessers={
                f: {
                    name: {int(k): float(v) for k, v in curve.items()}
                    for name, curve in data[f].get("guessers", {}).items()
                }
                for f in floor
            },
            tasks={f: int(data[f].get("tasks", 0)) for f in floor},
            guessable={f: {r: int(n) for r, n in per.items()} for f, per in (guessable or {}).items()},
        )


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


def is_counting(task: Task) -> bool:
    """Whether the question asks for a count (the ``number`` guesser's questions)."""
    return bool(COUNTING_QUESTION.search(task.question))


def count_guesses(task: Task, limit: int) -> list[str]:
    """The ``number`` guesser's first ``limit`` guesses: 1, 2, 3, ... on a counting question, else none."""
    return [str(n) for n in range(FIRST_COUNT, FIRST_COUNT + limit)] if is_counting(task) else []


def _ranked_answers(tasks: Iterable[Task]) -> list[str]:
    counts = Counter(t.answer for t in tasks)
    return [answer for answer, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def _ranked_pass_at(task: Task, ranked: Sequence[str], ks: Sequence[int]) -> dict[int, float]:
    first = next((i for i, guess in enumerate(ranked[: max(ks)]) if answer_is_correct(guess, task)), None)
    return {k: float(first is not None and first < k) for k in ks}


def _combined(task: Task, ranked: Sequence[str], limit: int) -> list[str]:
    """The ``combined`` guesser's first ``limit`` distinct guesses for ``task``."""
    guesses: dict[str, str] = {}
    for guess in [*FIXED_ANSWERS, *named_candidates(task), *count_guesses(task, limit), *ranked]:
        guesses.setdefault(normalize_answer(guess), guess)
        if len(guesses) == limit:
            break
    return list(guesses.values())


def _reason(task: Task, ranked: Sequence[str], limit: int) -> str | None:
    """Why a question-only guess within ``limit`` tries can solve ``task`` (its first reason), or None."""
    if any(answer_is_correct(fixed, task) for fixed in FIXED_ANSWERS):
        return REASON_YES_NO
    if any(answer_is_correct(name, task) for name in named_candidates(task)):
        return REASON_NAMED
    if any(answer_is_correct(count, task) for count in count_guesses(task, limit)):
        return REASON_COUNT
    if any(answer_is_correct(answer, task) for answer in ranked[:limit]):
        return REASON_TRAIN
    return None


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
    guessable: dict[str, dict[str, int]] = {}
    limit = max(ks)
    for family in families:
        tasks = [t for t in test_tasks if t.family == family]
        has_train = family in ranked_family
        counting = any(is_counting(t) for t in tasks)
        names = [
            *FIXED_ANSWERS,
            GUESSER_NAMED,
            *([GUESSER_NUMBER] if counting else []),
            *([GUESSER_TRAIN] if has_train else []),
            GUESSER_COMBINED,
        ]
        sums = {name: dict.fromkeys(ks, 0.0) for name in names}
        reasons: Counter[str] = Counter()
        for task in tasks:
            per_task = {
                fixed: dict.fromkeys(ks, float(answer_is_correct(fixed, task))) for fixed in FIXED_ANSWERS
            }
            per_task[GUESSER_NAMED] = _named_pass_at(task, ks)
            if counting:
                per_task[GUESSER_NUMBER] = _ranked_pass_at(task, count_guesses(task, limit), ks)
            ranked: Sequence[str] = ()
            if has_train:
                ranked = ranked_template.get((family, task.kind), ranked_family[family])
                per_task[GUESSER_TRAIN] = _ranked_pass_at(task, ranked, ks)
            per_task[GUESSER_COMBINED] = _ranked_pass_at(task, _combined(task, ranked, limit), ks)
            for name, values in per_task.items():
                for k in ks:
                    sums[name][k] += values[k]
            reason = _reason(task, ranked, limit)
            if reason is not None:
                reasons[reason] += 1
        curves[family] = {
            name: {k: round(total / len(tasks), FLOOR_DIGITS) for k, total in values.items()}
            for name, values in sums.items()
        }
        winners = {k: max(names, key=lambda name: curves[family][name][k]) for k in ks}
        floor[family] = {k: curves[family][winners[k]][k] for k in ks}
        best[family] = {k: winners[k] if floor[family][k] > 0 else GUESSER_NONE for k in ks}
        counts[family] = len(tasks)
        guessable[family] = {reason: reasons[reason] for reason in REASON_TEXT if reasons[reason]}
    return FloorTable(floor=floor, best=best, guessers=curves, tasks=counts, guessable=guessable)


def chance_floor(
    test_tasks: Sequence[Task], train_tasks: Sequence[Task] = (), ks: Sequence[int] = DEFAULT_FLOOR_KS
) -> dict[str, dict[int, float]]:
    """The chance floor PASS@(k, 0) per family: the best question-only guesser at each k.

    ``chance_floor_table`` gives the same numbers with the winning guesser and every curve.
    """
    return chance_floor_table(test_tasks, train_tasks, ks).floor


def floor_warnings(table: FloorTable, k: int = WARN_K, share: float = WARN_SHARE) -> list[str]:
    """One line per family whose floor at ``k`` exceeds ``share``: the value and what makes it guessable.

    >>> t = FloorTable({"comparison": {2: 0.5}}, {"comparison": {2: "combined"}}, {}, {"comparison": 4},
    ...                {"comparison": {"yes/no": 2}})
    >>> floor_warnings(t)[0]  # doctest: +NORMALIZE_WHITESPACE
    "WARNING: family 'comparison' is guessable from the question alone: chance floor PASS@(2,0) = 0.500
    > 0.25 (best guesser: combined); of its 4 answers: 2 yes or no"
    """
    lines = []
    for family, per_k in sorted(table.floor.items()):
        value = per_k.get(k)
        if value is None or value <= share:
            continue
        reasons = table.guessable.get(family, {})
        why = ", ".join(f"{reasons[r]} {text}" for r, text in REASON_TEXT.items() if reasons.get(r))
        total = table.tasks.get(family)
        lines.append(
            f"WARNING: family {family!r} is guessable from the question alone: chance floor "
            f"PASS@({k},0) = {value:.3f} > {share:g}"
            + (f" (best guesser: {table.best[family][k]})" if k in table.best.get(family, {}) else "")
            + (f"; of its {total} answers: {why}" if why and total else "")
        )
    return lines


def parse_chance_floor(
    data: Any, where: str, error: type[GatherError] = CorpusError
) -> dict[str, dict[int, float]]:
    """``{family: {k: value}}`` from its JSON form (k may be strings); ``error`` naming ``where``."""
    if not isinstance(data, Mapping):
        raise error(f"{where}: {MANIFEST_KEY} must map family -> {{k: PASS@(k,0)}}, got {data!r:.80}")
    floor: dict[str, dict[int, float]] = {}
    for family in sorted(data):
        per_k = data[family]
        if isinstance(per_k, Mapping) and isinstance(per_k.get(FLOOR_FIELD), Mapping):
            per_k = per_k[FLOOR_FIELD]
        if not isinstance(per_k, Mapping):
            raise error(f"{where}: {MANIFEST_KEY}[{family!r}] must map k -> PASS@(k,0), got {per_k!r:.80}")
        values: dict[int, float] = {}
        for key, value in per_k.items():
            try:
                k, v = int(key), float(value)
            except (TypeError, ValueError):
                raise error(
                    f"{where}: {MANIFEST_KEY}[{family!r}] has a bad entry {key!r}: {value!r:.40}"
                ) from None
            if k < 1 or not 0.0 <= v <= 1.0:
                raise error(
                    f"{where}: {MANIFEST_KEY}[{family!r}][{key!r}] = {value!r}: k must be >= 1 and "
                    "the value a probability in [0, 1]"
                )
            values[k] = v
        floor[str(family)] = dict(sorted(values.items()))
    return floor
