"""Consistency checks of a generated world: the facts a reader could cross-check never contradict."""

from __future__ import annotations

from gather_envs.world.generator import World
from gather_envs.world.schema import ATTRIBUTES, RELATIONS, TIME_CONSTRAINTS


def world_problems(world: World) -> list[str]:
    """Every violated rule, one line each (an empty list means the world is consistent).

    Rules: names unique; attribute values inside their ranges; relation objects exist, have the
    schema's type and differ from the subject; every time constraint of the schema holds (founders,
    authors and namesakes born well before, mentors well before their mentees, publishers and
    presenters existing first, employers founded within the employee's working life); a capital
    lies in its own country; no one is their own mentor at any remove.
    """
    problems: list[str] = []
    names: dict[str, str] = {}
    for eid in world.entity_ids:
        key = world.name(eid).lower()
        if key in names:
            problems.append(f"{eid} and {names[key]} share the name {world.name(eid)!r}")
        names[key] = eid
        for attribute in ATTRIBUTES:
            if attribute.entity != world.type(eid):
                continue
            value = world.attrs(eid).get(attribute.name)
            if value is None or not attribute.low <= value <= attribute.high:
                problems.append(f"{eid} {attribute.name}={value} outside [{attribute.low}, {attribute.high}]")
    for relation in RELATIONS:
        for subject in world.of_type(relation.subject):
            obj = world.obj(subject, relation.name)
            if obj is None:
                continue
            if obj not in world.graph or world.type(obj) != relation.object or obj == subject:
                problems.append(f"{subject} {relation.name} -> {obj}: not a distinct {relation.object}")
    for constraint in TIME_CONSTRAINTS:
        for subject in world.entity_ids:
            obj = world.obj(subject, constraint.relation)
            if obj is None:
                continue
            gap = world.attr(subject, constraint.subject_attr) - world.attr(obj, constraint.object_attr)
            if not constraint.low <= gap <= constraint.high:
                problems.append(
                    f"{subject} {constraint.relation} -> {obj}: {constraint.subject_attr} minus "
                    f"{constraint.object_attr} is {gap}, outside [{constraint.low}, {constraint.high}]"
                )
    for country in world.of_type("country"):
        capital = world.obj(country, "capital")
        if capital is not None and world.obj(capital, "located_in") != country:
            problems.append(f"{country}'s capital {capital} lies in {world.obj(capital, 'located_in')}")
    for person in world.of_type("person"):
        seen = {person}
        current = world.obj(person, "mentor")
        while current is not None:
            if current in seen:
                problems.append(f"{person} is in a mentor cycle through {current}")
                break
            seen.add(current)
            current = world.obj(current, "mentor")
    return problems
