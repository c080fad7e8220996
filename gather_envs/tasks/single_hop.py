"""Single-hop questions: one relation or attribute of one named entity."""

from __future__ import annotations

import numpy as np

from gather_envs.records.tasks import FAMILY_SINGLE_HOP, GoldStep, Task
from gather_envs.world.generator import World
from gather_envs.world.render import format_number
from gather_envs.world.schema import ATTRIBUTES, RELATIONS


def capitalize(text: str) -> str:
    return text[0].upper() + text[1:]


def number_answer(value: int) -> tuple[str, tuple[str, ...]]:
    """A numeric answer as documents print it, with the plain digits as an alias."""
    shown = format_number(value)
    return shown, (() if shown == str(value) else (str(value),))


def draft_single_hop(world: World, rng: np.random.Generator) -> Task:
    """A random entity and one of its relations (those it has) or attributes."""
    eid = world.entity_ids[int(rng.integers(len(world.entity_ids)))]
    etype = world.type(eid)
    options = [r for r in RELATIONS if r.subject == etype and world.obj(eid, r.name) is not None]
    options += [a for a in ATTRIBUTES if a.entity == etype]
    choice = options[int(rng.integers(len(options)))]
    if choice in RELATIONS:
        obj = world.obj(eid, choice.name)
        assert obj is not None
        answer, aliases, kind = world.name(obj), (), choice.name
    else:
        answer, aliases = number_answer(world.attr(eid, choice.name))
        kind = choice.name
    return Task(
        task_id="",
        question=capitalize(choice.question.format(s=world.ref(eid))),
        answer=answer,
        aliases=aliases,
        family=FAMILY_SINGLE_HOP,
        hops=1,
        gold_path=(GoldStep(world.name(eid), eid),),
        supporting_doc_ids=(eid,),
        kind=kind,
    )
