"""Draw, check and split the tasks of a synthetic world.

Every kept task passes these checks against the world's BM25 index:
- the answer does not occur in the question;
- each gold query retrieves its document within the env's default top-k;
- bridge only: the final supporting document is not in the top ``SHORTCUT_K`` for the question
  text alone, nor in the top-k of an earlier hop's gold query (no shortcut: the last hop needs
  what the hop before it found).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from gather_envs.records.documents import Document
from gather_envs.records.tasks import FAMILY_BRIDGE, FAMILY_COMPARISON, FAMILY_SINGLE_HOP, Task
from gather_envs.retrieval import BM25Index
from gather_envs.scoring.normalize import answer_in_text
from gather_envs.tasks.bridge import draft_bridge
from gather_envs.tasks.comparison import draft_comparison
from gather_envs.tasks.single_hop import draft_single_hop
from gather_envs.world.generator import World

DEFAULT_TOP_K = 3  # documents a search returns by default
SHORTCUT_K = 10  # a bridge task whose final document is this close to the question is a shortcut
TASK_STREAM = 2  # sub-stream of the world seed used for tasks
MAX_DRAFTS_PER_TASK = 20
ID_PREFIX = {FAMILY_SINGLE_HOP: "single", FAMILY_BRIDGE: "bridge", FAMILY_COMPARISON: "compare"}
SPLITS = ("test", "train")


@dataclass(frozen=True)
class FamilyStats:
    """How many drafts of a family were drawn, and why the rejected ones were dropped."""

    family: str
    drafted: int
    kept: int
    answer_in_question: int
    unretrievable: int
    shortcut: int
    early_final: int
    duplicate: int

    @property
    def shortcut_rate(self) -> float:
        """Share of otherwise-valid drafts whose final document the question alone retrieves."""
        valid = self.kept + self.shortcut + self.early_final
        return self.shortcut / valid if valid else 0.0


def _retrieves(index: BM25Index, query: str, position: int, k: int) -> bool:
    return any(doc == position for doc, _ in index.search(query, k))


def _bridge_rejection(task: Task, index: BM25Index, position: dict[str, int]) -> str | None:
    """Why a bridge draft allows skipping a hop: ``shortcut`` (the question alone finds the final
    document) or ``early_final`` (an earlier hop's query already shows it); None when it does not."""
    final = position[task.supporting_doc_ids[-1]]
    if _retrieves(index, task.question, final, SHORTCUT_K):
        return "shortcut"
    if any(_retrieves(index, step.query, final, DEFAULT_TOP_K) for step in task.gold_path[:-1]):
        return "early_final"
    return None


def _context(
    task: Task,
    index: BM25Index,
    documents: Sequence[Document],
    num_distractors: int,
    rng: np.random.Generator,
) -> tuple[str, ...]:
    """Supporting documents plus the nearest BM25 look-alikes (then random fill), shuffled."""
    chosen = list(task.supporting_doc_ids)
    queries = [task.question, *(step.query for step in task.gold_path)]
    for query in queries:
        for doc, _ in index.search(query, num_distractors + len(chosen)):
            doc_id = documents[doc].doc_id
            if doc_id not in chosen and len(chosen) < len(task.supporting_doc_ids) + num_distractors:
                chosen.append(doc_id)
    while len(chosen) < min(len(documents), len(task.supporting_doc_ids) + num_distractors):
        doc_id = documents[int(rng.integers(len(documents)))].doc_id
        if doc_id not in chosen:
            chosen.append(doc_id)
    return tuple(chosen[i] for i in rng.permutation(len(chosen)))


def build_tasks(
    world: World, documents: Sequence[Document], index: BM25Index
) -> tuple[dict[str, tuple[Task, ...]], list[FamilyStats]]:
    """Test and train tasks of every searchable family, plus per-family filter statistics."""
    config = world.config
    rng = np.random.default_rng([config.seed, TASK_STREAM])
    position = {doc.doc_id: i for i, doc in enumerate(documents)}
    wanted = config.tasks_per_family + config.train_tasks_per_family
    hop_range = list(range(max(2, config.min_hops), config.max_hops + 1))
    drafters: dict[str, Callable[[], Task | None]] = {
        FAMILY_SINGLE_HOP: lambda: draft_single_hop(world, rng),
        FAMILY_BRIDGE: lambda: draft_bridge(world, rng, hop_range[int(rng.integers(len(hop_range)))]),
        FAMILY_COMPARISON: lambda: draft_comparison(world, rng),
    }
    splits: dict[str, list[Task]] = {split: [] for split in SPLITS}
    stats = []
    for family, draft in drafters.items():
        kept: list[Task] = []
        seen: set[str] = set()
        counts = dict(
            drafted=0, answer_in_question=0, unretrievable=0, shortcut=0, early_final=0, duplicate=0
        )
        while len(kept) < wanted and counts["drafted"] < wanted * MAX_DRAFTS_PER_TASK:
            task = draft()
            counts["drafted"] += 1
            if task is None:
                continue
            if task.question in seen:
                counts["duplicate"] += 1
                continue
            if answer_in_text(task.answer, task.question):
                counts["answer_in_question"] += 1
                continue
            if not all(
                _retrieves(index, step.query, position[step.doc_id], DEFAULT_TOP_K) for step in task.gold_path
            ):
                counts["unretrievable"] += 1
                continue
            rejection = _bridge_rejection(task, index, position) if family == FAMILY_BRIDGE else None
            if rejection:
                counts[rejection] += 1
                continue
            seen.add(task.question)
            context = _context(task, index, documents, config.num_distractors, rng)
            task_id = f"{ID_PREFIX[family]}-{len(kept):05d}"
            kept.append(replace(task, task_id=task_id, context_doc_ids=context))
        stats.append(FamilyStats(family=family, kept=len(kept), **counts))
        splits["test"].extend(kept[: config.tasks_per_family])
        splits["train"].extend(kept[config.tasks_per_family :])
    return {split: tuple(tasks) for split, tasks in splits.items()}, stats
