"""Generate a synthetic corpus (world, documents, checked tasks) from its knobs."""

from __future__ import annotations

from gather_envs.corpus.corpus import Corpus, index_text
from gather_envs.retrieval import BM25Index, get_index
from gather_envs.tasks.builder import FamilyStats, build_tasks
from gather_envs.world.generator import GENERATOR_VERSION, WorldConfig, generate_world
from gather_envs.world.render import render_documents


def generate_corpus(config: WorldConfig, name: str = "procedural") -> tuple[Corpus, list[FamilyStats]]:
    """World -> documents -> index -> tasks, all determined by ``config``."""
    world = generate_world(config)
    documents = render_documents(world)
    corpus = Corpus(name, documents, {}, knobs={"generator_version": GENERATOR_VERSION, **config.to_json()})
    index = get_index(
        f"world:{corpus.content_hash}", lambda: BM25Index.from_texts([index_text(d) for d in documents])
    )
    splits, stats = build_tasks(world, documents, index)
    return Corpus(name, documents, splits, knobs=corpus.knobs, content_hash=corpus.content_hash), stats
