"""Bridge (sequential multi-hop) questions: a chain of relations from one named entity.

The question names only the first entity; the query for hop i+1 is the answer of hop i, so
the hops must be taken in order. An optional final attribute reads a number off the last entity.
"""

from __future__ import annotations

import numpy as np

from gather_envs.records.tasks import FAMILY_BRIDGE, GoldStep, Task
from gather_envs.tasks.single_hop import capitalize, number_answer
from gather_envs.world.generator import World
from gather_envs.world.schema import ATTRIBUTES, RELATIONS, Relation

MAX_WALK_TRIES = 20
FINAL_ATTRIBUTE_CHANCE = 0.3


def _walk(
    world: World, start: str, length: int, rng: np.random.Generator
) -> list[tuple[Relation, str]] | None:
    """A path of ``length`` relations over distinct entities, or None if it dead-ends."""
    path: list[tuple[Relation, str]] = []
    seen = {start}
    current = start
    for _ in range(length):
        options = [r for r in RELATIONS if r.subject == world.type(current)]
        order = rng.permutation(len(options))
        for i in order:
            relation = options[int(i)]
            obj = world.obj(current, relation.name)
            if obj is not None and obj not in seen:
                break
        else:
            return None
        path.append((relation, obj))
        seen.add(obj)
        current = obj
    return path


def draft_bridge(world: World, rng: np.random.Generator, hops: int) -> Task | None:
    """A bridge question needing exactly ``hops`` documents, or None when the walk failed."""
    start = world.entity_ids[int(rng.integers(len(world.entity_ids)))]
    with_attribute = hops >= 2 and rng.random() < FINAL_ATTRIBUTE_CHANCE
    length = hops - 1 if with_attribute else hops
    path = _walk(world, start, length, rng)
    if path is None:
        return None
    phrase = world.ref(start)
    for relation, _ in path:
        phrase = relation.phrase.format(s=phrase)
    last = path[-1][1]
    chain = [start] + [obj for _, obj in path]
    kind = ".".join(relation.name for relation, _ in path)
    if with_attribute:
        attributes = [a for a in ATTRIBUTES if a.entity == world.type(last)]
        attribute = attributes[int(rng.integers(len(attributes)))]
        question = attribute.question.format(s=phrase)
        answer, aliases = number_answer(world.attr(last, attribute.name))
        documents = chain
        kind += "." + attribute.name
    else:
        wh = "Who" if world.type(last) == "person" else "What"
        question = f"{wh} is {phrase}?"
        answer, aliases = world.name(last), ()
        documents = chain[:-1]
    return Task(
        task_id="",
        question=capitalize(question),
        answer=answer,
        aliases=aliases,
        family=FAMILY_BRIDGE,
        hops=len(documents),
        gold_path=tuple(GoldStep(world.name(d), d) for d in documents),
        supporting_doc_ids=tuple(documents),
        kind=kind,
    )
