"""Render each entity of a world into a short encyclopedia-style document (title = name)."""

from __future__ import annotations

import numpy as np

from gather_envs.records.documents import Document
from gather_envs.world.generator import World
from gather_envs.world.names import word
from gather_envs.world.schema import ATTRIBUTES, FILLER_SENTENCES, RELATIONS

RENDER_STREAM = 1  # sub-stream of the world seed used for phrasing, independent of generation


def _sentence(template: str, **values: str) -> str:
    text = template.format(**values)
    return text[0].upper() + text[1:]


def format_number(value: int) -> str:
    """Numbers as documents print them: thousands separated by commas, years plain."""
    return f"{value:,}" if value >= 10000 else str(value)


def render_documents(world: World) -> list[Document]:
    """One document per entity, in entity order; phrasing is drawn from the world's seed.

    Only outgoing facts are written, so an entity's name appears in the documents of entities
    that point at it but never as a list of everything that points at it.
    """
    rng = np.random.default_rng([*world.seed_key, RENDER_STREAM])
    documents = []
    for eid in world.entity_ids:
        etype = world.type(eid)
        ref = world.ref(eid)
        noun = world.noun(eid)
        article = "an" if noun[0] in "aeiou" else "a"
        opening = _sentence("{s} is {a} {n}.", s=ref, a=article, n=noun)
        facts = []
        for relation in RELATIONS:
            if relation.subject != etype:
                continue
            obj = world.obj(eid, relation.name)
            if obj is None:
                continue
            template = relation.sentences[int(rng.integers(len(relation.sentences)))]
            facts.append(_sentence(template, s=ref, o=world.ref(obj)))
        for attribute in ATTRIBUTES:
            if attribute.entity != etype:
                continue
            template = attribute.sentences[int(rng.integers(len(attribute.sentences)))]
            value = format_number(world.attr(eid, attribute.name))
            facts.append(_sentence(template, s=ref, v=value))
        for _ in range(world.config.doc_length):
            template = FILLER_SENTENCES[int(rng.integers(len(FILLER_SENTENCES)))]
            facts.append(_sentence(template, s=ref, w=word(rng).lower()))
        permutation = rng.permutation(len(facts))
        body = " ".join([opening, *(facts[i] for i in permutation)])
        documents.append(Document(doc_id=eid, title=world.name(eid), text=body))
    return documents
