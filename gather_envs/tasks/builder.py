"""Draw, check and split the tasks of a synthetic world.

Every kept task passes these checks against the world's BM25 index and its own distractor scope
(the index over its ``context_doc_ids``, which the env's ``scope="distractor"`` searches):
- the answer does not occur in the question (except the opt-in ``which`` comparisons);
- each gold query retrieves its document within the env's default top-k, in both scopes;
- bridge only, in both scopes: the final supporting document is not in the top
  ``GUARANTEED_TOP_K`` for the question text alone, nor for an earlier hop's gold query (no
  shortcut: the last hop needs what the hop before it found), so the guarantee holds for every
  ``top_k <= GUARANTEED_TOP_K``.
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
from gather_envs.tasks.comparison import WHICH_KIND, draft_comparison
from gather_envs.tasks.single_hop import draft_single_hop
from gather_envs.world.generator import World

DEFAULT_TOP_K = 3  # documents a search returns by default; every gold query must work at it
GUARANTEED_TOP_K = 5  # bridge tasks are sequential for every top_k up to this, in both scopes
TASK_STREAM = 2  # sub-stream of the world seed used for tasks
MAX_DRAFTS_PER_TASK = 20
ID_PREFIX = {FAMILY_SINGLE_HOP: "single", FAMILY_BRIDGE: "bridge", FAMILY_COMPARISON: "compare"}
SCOPE_WORLD = "world"
SCOPE_DISTRACTOR = "distractor"
SCOPES = (SCOPE_WORLD, SCOPE_DISTRACTOR)


@dataclass(frozen=True)
class FamilyStats:
    """How many drafts of a family were drawn in one split's world, and why rejects were dropped.

    ``shortcut``/``early_final`` count bridge drafts the world scope would let skip a hop,
    ``distractor_shortcut``/``distractor_early_final`` those only the distractor scope would.
    """

    family: str
    split: str
    drafted: int
    kept: int
    answer_in_question: int
    unretrievable: int
    shortcut: int
    early_final: int
    distractor_shortcut: int
    distractor_early_final: int
    duplicate: int

    @property
    def shortcut_rate(self) -> float:
        """Share of otherwise-valid drafts that some scope lets skip a hop (and so were dropped)."""
        skipped = self.shortcut + self.early_final + self.distractor_shortcut + self.distractor_early_final
        valid = self.kept + skipped
        return skipped / valid if valid else 0.0


def retrieves(index: BM25Index, query: str, position: int, k: int) -> bool:
    """Whether ``query``'s top ``k`` in ``index`` contains the document at ``position``."""
    return any(doc == position for doc, _ in index.search(query, k))


def hop_skip(task: Task, index: BM25Index, position: dict[str, int], k: int) -> str | None:
    """Why a bridge task lets an agent skip a hop at ``top_k = k`` in ``index``: ``shortcut`` (the
    question alone finds the final document) or ``early_final`` (an earlier hop's query already
    shows it); None when it does not. ``position`` maps doc ids to the index's rows."""
    final = position[task.supporting_doc_ids[-1]]
    if retrieves(index, task.question, final, k):
        return "shortcut"
    if any(retrieves(index, step.query, final, k) for step in task.gold_path[:-1]):
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


def context_index(task: Task, index: BM25Index, position: dict[str, int]) -> BM25Index:
    """The task's distractor-scope index: its context documents, in order (the env searches this)."""
    return index.subset([position[d] for d in task.context_doc_ids])


def build_tasks(
    world: World, documents: Sequence[Document], index: BM25Index, count: int, id_offset: int = 0
) -> tuple[tuple[Task, ...], list[FamilyStats]]:
    """``count`` checked tasks per searchable family of one world, plus per-family filter statistics.

    ``documents`` and ``index`` are the world's own; task ids are numbered from ``id_offset``.
    """
    config = world.config
    rng = np.random.default_rng([*world.seed_key, TASK_STREAM])
    position = {doc.doc_id: i for i, doc in enumerate(documents)}
    hop_range = list(range(max(2, config.min_hops), config.max_hops + 1))
    drafters: dict[str, Callable[[], Task | None]] = {
        FAMILY_SINGLE_HOP: lambda: draft_single_hop(world, rng),
        FAMILY_BRIDGE: lambda: draft_bridge(world, rng, hop_range[int(rng.integers(len(hop_range)))]),
        FAMILY_COMPARISON: lambda: draft_comparison(world, rng, config.comparison_styles),
    }
    kept_all: list[Task] = []
    stats = []
    for family, draft in drafters.items():
        kept: list[Task] = []
        seen: set[str] = set()
        counts: dict[str, int] = dict.fromkeys(
            (
                "drafted",
                "answer_in_question",
                "unretrievable",
                "shortcut",
                "early_final",
                "distractor_shortcut",
                "distractor_early_final",
                "duplicate",
            ),
            0,
        )
        while len(kept) < count and counts["drafted"] < count * MAX_DRAFTS_PER_TASK:
            task = draft()
            counts["drafted"] += 1
            if task is None:
                continue
            if task.question in seen:
                counts["duplicate"] += 1
                continue
            if not task.kind.startswith(WHICH_KIND + ".") and answer_in_text(task.answer, task.question):
                counts["answer_in_question"] += 1
                continue
            if not all(retrieves(index, s.query, position[s.doc_id], DEFAULT_TOP_K) for s in task.gold_path):
                counts["unretrievable"] += 1
                continue
            rejection = hop_skip(task, index, position, GUARANTEED_TOP_K) if family == FAMILY_BRIDGE else None
            if rejection:
                counts[rejection] += 1
                continue
            task = replace(
                task, context_doc_ids=_context(task, index, documents, config.num_distractors, rng)
            )
            local = context_index(task, index, position)
            local_position = {doc_id: i for i, doc_id in enumerate(task.context_doc_ids)}
            if not all(
                retrieves(local, s.query, local_position[s.doc_id], DEFAULT_TOP_K) for s in task.gold_path
            ):
                counts["unretrievable"] += 1
                continue
            if family == FAMILY_BRIDGE:
                rejection = hop_skip(task, local, local_position, GUARANTEED_TOP_K)
                if rejection:
                    counts[f"distractor_{rejection}"] += 1
                    continue
            seen.add(task.question)
            kept.append(replace(task, task_id=f"{ID_PREFIX[family]}-{id_offset + len(kept):05d}"))
        stats.append(FamilyStats(family=family, split=world.split, kept=len(kept), **counts))
        kept_all.extend(kept)
    return tuple(kept_all), stats
