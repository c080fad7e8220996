"""Comparison (parallel) questions about two named entities: both lookups come from the question.

The default style, ``select``, compares a year of the two and asks for a fact of the winner:
"Who is the founder of whichever of the A Institute and the B Society was founded first?". Its
answer is an entity named in neither the question nor any closed set, and the two candidates'
facts differ, so both documents must be read. The opt-in styles (``WorldConfig.comparison_styles``)
are the HotpotQA-like ones: ``earlier`` and ``same`` (yes/no), ``which`` (one of the two named
entities) and ``apart`` (a number of years); a question-only guesser does well on the binary ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gather_envs.records.tasks import FAMILY_COMPARISON, GoldStep, Task
from gather_envs.tasks.single_hop import capitalize
from gather_envs.world.generator import World
from gather_envs.world.schema import ATTRIBUTES, COMPARISON_SELECT, RELATIONS, Attribute

YES, NO = "yes", "no"
SAME_OBJECT_QUESTIONS = {
    "born_in": ("person", "Were {a} and {b} born in the same city?"),
    "nationality": ("person", "Are {a} and {b} citizens of the same country?"),
    "employer": ("person", "Do {a} and {b} work for the same organization?"),
    "headquarters": ("organization", "Are {a} and {b} headquartered in the same city?"),
    "author": ("work", "Were {a} and {b} written by the same person?"),
    "located_in": ("city", "Are {a} and {b} in the same country?"),
}
SAME_OBJECT_KINDS = tuple(SAME_OBJECT_QUESTIONS)
YEAR_ATTRIBUTES = tuple(a for a in ATTRIBUTES if a.earlier_question)
# Year attribute -> (phrase for the earlier one, phrase for the later one) of two named entities.
SELECTORS = {
    "birth_year": ("the older of {a} and {b}", "the younger of {a} and {b}"),
    "founding_year": (
        "whichever of {a} and {b} was founded first",
        "whichever of {a} and {b} was founded last",
    ),
    "publication_year": (
        "whichever of {a} and {b} was published first",
        "whichever of {a} and {b} was published last",
    ),
    "established_year": (
        "whichever of {a} and {b} was first awarded earlier",
        "whichever of {a} and {b} was first awarded later",
    ),
}
WHICH_QUESTIONS = {
    "birth_year": ("Who was born first, {a} or {b}?", "Who was born last, {a} or {b}?"),
    "founding_year": ("Which was founded first, {a} or {b}?", "Which was founded last, {a} or {b}?"),
    "publication_year": ("Which was published first, {a} or {b}?", "Which was published last, {a} or {b}?"),
    "established_year": (
        "Which was first awarded earlier, {a} or {b}?",
        "Which was first awarded later, {a} or {b}?",
    ),
}
MAX_PARTNER_TRIES = 50
WHICH_KIND = "which"  # the one style whose answer is named in the question, by design


def _pair_task(world: World, a: str, b: str, question: str, answer: str, kind: str) -> Task:
    return Task(
        task_id="",
        question=capitalize(question.format(a=world.ref(a), b=world.ref(b))),
        answer=answer,
        aliases=(),
        family=FAMILY_COMPARISON,
        hops=2,
        gold_path=(GoldStep(world.name(a), a), GoldStep(world.name(b), b)),
        supporting_doc_ids=(a, b),
        kind=kind,
    )


def _partner(
    world: World, a: str, pool: list[str], rng: np.random.Generator, want: Callable[[str], bool]
) -> str | None:
    for _ in range(MAX_PARTNER_TRIES):
        b = pool[int(rng.integers(len(pool)))]
        if b != a and want(b):
            return b
    return None


def _year_pair(world: World, rng: np.random.Generator) -> tuple[Attribute, str, str] | None:
    """A year attribute and two entities of its type with different values."""
    attribute = YEAR_ATTRIBUTES[int(rng.integers(len(YEAR_ATTRIBUTES)))]
    pool = world.of_type(attribute.entity)
    a = pool[int(rng.integers(len(pool)))]
    va = world.attr(a, attribute.name)
    b = _partner(world, a, pool, rng, lambda e: world.attr(e, attribute.name) != va)
    return None if b is None else (attribute, a, b)


def _draft_select(world: World, rng: np.random.Generator) -> Task | None:
    """A fact of whichever of two entities has the earlier (or later) year; the facts differ."""
    pair = _year_pair(world, rng)
    if pair is None:
        return None
    attribute, a, b = pair
    relations = [r for r in RELATIONS if r.subject == attribute.entity]
    relation = relations[int(rng.integers(len(relations)))]
    later = bool(rng.random() < 0.5)
    first, second = sorted((a, b), key=lambda e: world.attr(e, attribute.name))
    winner = second if later else first
    oa, ob, target = (
        world.obj(a, relation.name),
        world.obj(b, relation.name),
        world.obj(winner, relation.name),
    )
    if oa is None or ob is None or oa == ob or target is None:
        return None  # one lookup would answer it, or a fact is missing
    selector = SELECTORS[attribute.name][int(later)]
    wh = "Who" if relation.object == "person" else "What"
    question = f"{wh} is {relation.phrase.format(s=selector)}?"
    kind = f"select.{attribute.name}.{'last' if later else 'first'}.{relation.name}"
    return _pair_task(world, a, b, question, world.name(target), kind)


def _draft_year(world: World, rng: np.random.Generator, style: str) -> Task | None:
    pair = _year_pair(world, rng)
    if pair is None:
        return None
    attribute, a, b = pair
    va, vb = world.attr(a, attribute.name), world.attr(b, attribute.name)
    if style == "earlier":
        answer = YES if va < vb else NO
        return _pair_task(world, a, b, attribute.earlier_question, answer, f"earlier.{attribute.name}")
    if style == "apart":
        return _pair_task(
            world, a, b, attribute.difference_question, str(abs(va - vb)), f"apart.{attribute.name}"
        )
    later = bool(rng.random() < 0.5)
    winner = (b if va < vb else a) if later else (a if va < vb else b)
    template = WHICH_QUESTIONS[attribute.name][int(later)]
    kind = f"{WHICH_KIND}.{attribute.name}.{'last' if later else 'first'}"
    return _pair_task(world, a, b, template, world.name(winner), kind)


def _draft_same(world: World, rng: np.random.Generator) -> Task | None:
    relation = SAME_OBJECT_KINDS[int(rng.integers(len(SAME_OBJECT_KINDS)))]
    entity_type, template = SAME_OBJECT_QUESTIONS[relation]
    pool = world.of_type(entity_type)
    a = pool[int(rng.integers(len(pool)))]
    target = world.obj(a, relation)
    same = bool(rng.random() < 0.5)
    b = _partner(world, a, pool, rng, lambda e: (world.obj(e, relation) == target) == same)
    if b is None or target is None:
        return None
    return _pair_task(world, a, b, template, YES if same else NO, f"same.{relation}")


def draft_comparison(world: World, rng: np.random.Generator, styles: tuple[str, ...]) -> Task | None:
    """One comparison question in a style drawn uniformly from ``styles``; None when the draw failed."""
    style = styles[int(rng.integers(len(styles)))]
    if style == COMPARISON_SELECT:
        return _draft_select(world, rng)
    if style == "same":
        return _draft_same(world, rng)
    return _draft_year(world, rng, style)
