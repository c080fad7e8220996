"""Comparison (parallel) questions about two named entities: both lookups come from the question."""

from __future__ import annotations

import numpy as np

from gather_envs.records.tasks import FAMILY_COMPARISON, GoldStep, Task
from gather_envs.tasks.single_hop import capitalize
from gather_envs.world.generator import World
from gather_envs.world.schema import ATTRIBUTES

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
MAX_PARTNER_TRIES = 50


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


def _partner(world: World, a: str, pool: list[str], rng: np.random.Generator, want) -> str | None:
    for _ in range(MAX_PARTNER_TRIES):
        b = pool[int(rng.integers(len(pool)))]
        if b != a and want(b):
            return b
    return None


def draft_comparison(world: World, rng: np.random.Generator) -> Task | None:
    """Earlier-than (yes/no), years-apart (a number), or same-object (yes/no) questions."""
    style = int(rng.integers(3))
    if style < 2:
        attribute = YEAR_ATTRIBUTES[int(rng.integers(len(YEAR_ATTRIBUTES)))]
        pool = world.of_type(attribute.entity)
        a = pool[int(rng.integers(len(pool)))]
        va = world.attr(a, attribute.name)
        b = _partner(world, a, pool, rng, lambda e: world.attr(e, attribute.name) != va)
        if b is None:
            return None
        vb = world.attr(b, attribute.name)
        if style == 0:
            answer = YES if va < vb else NO
            return _pair_task(world, a, b, attribute.earlier_question, answer, f"earlier.{attribute.name}")
        return _pair_task(
            world, a, b, attribute.difference_question, str(abs(va - vb)), f"apart.{attribute.name}"
        )
    relation = SAME_OBJECT_KINDS[int(rng.integers(len(SAME_OBJECT_KINDS)))]
    entity_type, template = SAME_OBJECT_QUESTIONS[relation]
    pool = world.of_type(entity_type)
    a = pool[int(rng.integers(len(pool)))]
    target = world.obj(a, relation)
    same = bool(rng.random() < 0.5)
    b = _partner(world, a, pool, rng, lambda e: (world.obj(e, relation) == target) == same)
    if b is None:
        return None
    return _pair_task(world, a, b, template, YES if same else NO, f"same.{relation}")
