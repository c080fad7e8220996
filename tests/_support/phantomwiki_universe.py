"""A PhantomWiki-style sample universe: 40 people, their articles in PhantomWiki's basic template
(``# name``, then ``## Family``, ``## Friends`` and ``## Attributes`` with one fact per line) and 80
templated questions of 1 to 3 hops, written as the generator's JSON output. Our own names and facts."""

from __future__ import annotations

import json
import random
from pathlib import Path

FIRST = ["Ada", "Bram", "Cleo", "Dov", "Esme", "Finn", "Gia", "Hugo", "Iris", "Jules", "Kai", "Lena"]
FIRST += ["Milo", "Nora", "Otto", "Pia", "Quinn", "Rosa", "Sami", "Tess", "Uli", "Vera", "Wim", "Xena"]
LAST = ["Marsh", "Thorne", "Vale", "Quill", "Rook", "Hollis"]
JOBS = ["potter", "sailor", "chemist", "baker", "surveyor", "glazier", "cooper", "weaver"]
HOBBIES = ["chess", "archery", "birding", "rowing", "pottery", "fencing", "origami", "juggling"]
QUESTIONS = 80


def _article(person: dict) -> str:
    name = person["name"]
    family = [f"The {rel} of {name} is {person[rel]}." for rel in ("mother", "father") if person.get(rel)]
    if person["children"]:
        family.append(f"The children of {name} are {', '.join(person['children'])}.")
    friends = [f"The friend of {name} is {person['friend']}."]
    attributes = [f"The job of {name} is {person['job']}.", f"The hobby of {name} is {person['hobby']}."]
    sections = ["## Family", *family, "", "## Friends", *friends, "", "## Attributes", *attributes]
    return "\n".join([f"# {name}", "", *sections]) + "\n"


def build_universe(directory: Path, seed: int = 0) -> Path:
    """Write ``articles.json`` and ``questions.json`` of a 40-person universe into ``directory``."""
    rng = random.Random(seed)
    names = [f"{first} {rng.choice(LAST)}" for first in FIRST]
    names += [f"{first} {last}" for first, last in zip(FIRST[:16], LAST * 3, strict=False)]
    names = list(dict.fromkeys(names))[:40]
    people = {
        n: {"name": n, "children": [], "job": rng.choice(JOBS), "hobby": rng.choice(HOBBIES)} for n in names
    }
    elders, young = names[:16], names[16:]
    for child in young:
        mother, father = rng.choice(elders[:8]), rng.choice(elders[8:])
        people[child].update(mother=mother, father=father)
        people[mother]["children"].append(child)
        people[father]["children"].append(child)
    for name in names:
        people[name]["friend"] = rng.choice([n for n in names if n != name])
    articles = [{"title": n, "article": _article(people[n]), "facts": []} for n in names]

    def value(person: str, relation: str) -> list[str]:
        found = people[person].get(relation)
        return found if isinstance(found, list) else [found] if found else []

    shapes = [
        (["mother"], "Who is the mother of {0}?"),
        (["children"], "Who are the children of {0}?"),
        (["job"], "What is the job of {0}?"),
        (["mother", "job"], "What is the job of the mother of {0}?"),
        (["father", "friend"], "Who is the friend of the father of {0}?"),
        (["friend", "hobby"], "What is the hobby of the friend of {0}?"),
        (["mother", "friend", "job"], "What is the job of the friend of the mother of {0}?"),
    ]
    questions: list[dict] = []
    while len(questions) < QUESTIONS:
        chain, template = shapes[len(questions) % len(shapes)]
        start = rng.choice(names)
        current = [start]
        for relation in chain:
            current = list(dict.fromkeys(v for person in current for v in value(person, relation)))
        if not current:
            continue
        questions.append(
            {
                "id": f"pw-{len(questions)}",
                "question": template.format(start),
                "answer": current,
                "difficulty": len(chain),
                "type": shapes.index((chain, template)),
                "template": template.replace("{0}", "<name>").split(),
                "prolog": {"query": [f"{r}(X{i}, Y{i})" for i, r in enumerate(chain)], "answer": "Y"},
                "solution_traces": "[]",
            }
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "articles.json").write_text(json.dumps(articles, indent=2))
    (directory / "questions.json").write_text(json.dumps(questions, indent=2))
    return directory
