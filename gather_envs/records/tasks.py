"""The task record: a question, its gold answer, and the gold path of searches that reaches it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TASK_SCHEMA_VERSION = 1

FAMILY_SINGLE_HOP = "single-hop"
FAMILY_BRIDGE = "bridge"
FAMILY_COMPARISON = "comparison"
FAMILY_STATIC = "static"
FAMILIES = (FAMILY_SINGLE_HOP, FAMILY_BRIDGE, FAMILY_COMPARISON, FAMILY_STATIC)


@dataclass(frozen=True)
class GoldStep:
    """One hop of the gold path: the query to issue and the document it must retrieve."""

    query: str
    doc_id: str

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query, "doc_id": self.doc_id}


@dataclass(frozen=True)
class Task:
    """A question with one correct answer in its corpus.

    ``gold_path`` lists the searches, in order, that retrieve the supporting documents;
    ``context_doc_ids`` is the task's distractor scope (supporting documents plus distractors,
    in a fixed shuffled order) used by the distractor retrieval scope and the static family.
    ``kind`` names the question template (e.g. ``born_in.capital_of``); ``meta`` holds free
    extra fields (dataset level, source type, ...) that must be JSON-serializable.
    """

    task_id: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    family: str
    hops: int
    gold_path: tuple[GoldStep, ...]
    supporting_doc_ids: tuple[str, ...]
    context_doc_ids: tuple[str, ...] = ()
    kind: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def answers(self) -> tuple[str, ...]:
        """The gold answer followed by its aliases."""
        return (self.answer, *self.aliases)

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "question": self.question,
            "answer": self.answer,
            "aliases": list(self.aliases),
            "family": self.family,
            "hops": self.hops,
            "gold_path": [step.to_json() for step in self.gold_path],
            "supporting_doc_ids": list(self.supporting_doc_ids),
            "context_doc_ids": list(self.context_doc_ids),
            "kind": self.kind,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        return cls(
            task_id=str(data["task_id"]),
            question=str(data["question"]),
            answer=str(data["answer"]),
            aliases=tuple(str(a) for a in data.get("aliases", ())),
            family=str(data["family"]),
            hops=int(data["hops"]),
            gold_path=tuple(GoldStep(str(s["query"]), str(s["doc_id"])) for s in data["gold_path"]),
            supporting_doc_ids=tuple(str(d) for d in data["supporting_doc_ids"]),
            context_doc_ids=tuple(str(d) for d in data.get("context_doc_ids", ())),
            kind=str(data.get("kind", "")),
            meta=dict(data.get("meta", {})),
        )
