"""Generate a synthetic corpus (test and train worlds, documents, checked tasks) from its knobs."""

from __future__ import annotations

from gather_envs.corpus.corpus import Corpus
from gather_envs.records.documents import Document
from gather_envs.records.tasks import FAMILY_BRIDGE, FAMILY_STATIC, Task
from gather_envs.tasks.builder import (
    SCOPE_DISTRACTOR,
    SCOPE_WORLD,
    FamilyStats,
    build_tasks,
    context_index,
    hop_skip,
)
from gather_envs.world.generator import GENERATOR_VERSION, SPLIT_TEST, WorldConfig, generate_worlds
from gather_envs.world.render import render_documents

LEAK_TOP_KS = (1, 2, 3, 4, 5, 10)  # top_k values at which hop-skipping rates are measured


def generate_corpus(config: WorldConfig, name: str = "procedural") -> tuple[Corpus, list[FamilyStats]]:
    """Worlds -> documents -> per-world index -> tasks, all determined by ``config``.

    The test split's tasks come from the test world and the train split's from the disjoint train
    world; one document list holds both worlds (test first) and ``split_documents`` says which
    range is whose, so ``scope="world"`` searches only the split's own world.
    """
    worlds = generate_worlds(config)
    documents: list[Document] = []
    ranges: dict[str, tuple[int, int]] = {}
    for split, world in worlds.items():
        rendered = render_documents(world)
        ranges[split] = (len(documents), len(documents) + len(rendered))
        documents.extend(rendered)
    knobs = {"generator_version": GENERATOR_VERSION, **config.to_json()}
    corpus = Corpus(name, documents, {}, knobs=knobs, split_documents=ranges)
    splits: dict[str, tuple[Task, ...]] = {}
    stats: list[FamilyStats] = []
    for split, world in worlds.items():
        test = split == SPLIT_TEST
        count = config.tasks_per_family if test else config.train_tasks_per_family
        offset = 0 if test else config.tasks_per_family
        splits[split], split_stats = build_tasks(
            world, corpus.documents_of(split), corpus.index(split), count, offset
        )
        stats.extend(split_stats)
    return Corpus(name, documents, splits, knobs, corpus.content_hash, ranges), stats


def floor_tasks(corpus: Corpus, split: str) -> tuple[Task, ...]:
    """Every task of a split the chance floor reads: stored ones plus the derived static ones."""
    stored = corpus.tasks(split)
    if any(t.family == FAMILY_STATIC for t in stored):
        return stored
    return stored + corpus.tasks(split, FAMILY_STATIC)


def hop_skip_rates(
    corpus: Corpus, split: str = SPLIT_TEST, top_ks: tuple[int, ...] = LEAK_TOP_KS
) -> dict[str, dict[str, float]]:
    """Share of a split's bridge tasks that let an agent skip a hop, per scope and top_k.

    A task counts when the question alone, or an earlier hop's gold query, retrieves the final
    supporting document in the top ``top_k`` (``hop_skip``); the builder makes this 0 for every
    ``top_k <= GUARANTEED_TOP_K``, and larger top_k are measured, not guaranteed.
    """
    tasks = corpus.tasks(split, FAMILY_BRIDGE)
    index = corpus.index(split)
    documents = corpus.documents_of(split)
    position = {doc.doc_id: i for i, doc in enumerate(documents)}
    rates: dict[str, dict[str, float]] = {SCOPE_WORLD: {}, SCOPE_DISTRACTOR: {}}
    locals_ = [
        (context_index(t, index, position), {d: i for i, d in enumerate(t.context_doc_ids)}) for t in tasks
    ]
    for k in top_ks:
        world_skips = sum(hop_skip(t, index, position, k) is not None for t in tasks)
        local_skips = sum(
            hop_skip(t, local, where, k) is not None for t, (local, where) in zip(tasks, locals_)
        )
        rates[SCOPE_WORLD][str(k)] = round(world_skips / len(tasks), 6) if tasks else 0.0
        rates[SCOPE_DISTRACTOR][str(k)] = round(local_skips / len(tasks), 6) if tasks else 0.0
    return rates
