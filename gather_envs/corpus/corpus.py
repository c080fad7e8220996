"""A corpus: documents plus tasks per split, with a content hash and a shared BM25 index."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gather_envs.errors import ConfigError
from gather_envs.records.documents import Document
from gather_envs.records.tasks import FAMILY_STATIC, Task
from gather_envs.retrieval import BM25Index, get_index
from gather_envs.tasks.static import STATIC_SOURCE_FAMILIES, make_static


def canonical_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    """Rows as UTF-8 JSON lines with sorted keys: the byte form that hashes and files use."""
    return b"".join(
        json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        for row in rows
    )


def documents_hash(documents: Sequence[Document]) -> str:
    """sha256 of the documents' canonical JSON lines."""
    return hashlib.sha256(canonical_jsonl(d.to_json() for d in documents)).hexdigest()


class Corpus:
    """Documents and their tasks; one instance per corpus is shared by every env in a process."""

    def __init__(
        self,
        name: str,
        documents: Sequence[Document],
        splits: Mapping[str, Sequence[Task]],
        knobs: dict[str, Any] | None = None,
        content_hash: str | None = None,
    ) -> None:
        self.name = name
        self.documents = tuple(documents)
        self.splits = {split: tuple(tasks) for split, tasks in splits.items()}
        self.knobs = dict(knobs or {})
        self.content_hash = content_hash or documents_hash(self.documents)
        self.position = {doc.doc_id: i for i, doc in enumerate(self.documents)}
        if len(self.position) != len(self.documents):
            raise ConfigError(f"corpus {name!r} has duplicate document ids")
        self._by_id = {task.task_id: task for tasks in self.splits.values() for task in tasks}

    def doc(self, doc_id: str) -> Document:
        return self.documents[self.position[doc_id]]

    def tasks(self, split: str, family: str | None = None) -> tuple[Task, ...]:
        """The split's tasks of one family (all families when None); static ones are derived."""
        if split not in self.splits:
            raise ConfigError(f"corpus {self.name!r} has no split {split!r}; it has {sorted(self.splits)}")
        tasks = self.splits[split]
        if family is None:
            return tasks
        if family == FAMILY_STATIC:
            return tuple(
                t if t.family == FAMILY_STATIC else make_static(t)
                for t in tasks
                if t.family in (FAMILY_STATIC, *STATIC_SOURCE_FAMILIES)
            )
        return tuple(t for t in tasks if t.family == family)

    def task(self, task_id: str) -> Task:
        """Look a task up by id (static ids resolve to the derived static task)."""
        if task_id in self._by_id:
            return self._by_id[task_id]
        if task_id.startswith("static-") and task_id[len("static-") :] in self._by_id:
            return make_static(self._by_id[task_id[len("static-") :]])
        raise ConfigError(f"corpus {self.name!r} has no task {task_id!r}")

    def index(self) -> BM25Index:
        """The world-scope BM25 index, built once per process per content hash."""
        return get_index(
            f"world:{self.content_hash}",
            lambda: BM25Index.from_texts([index_text(d) for d in self.documents]),
        )


def index_text(document: Document) -> str:
    """What BM25 indexes for a document: its title, then its text."""
    return f"{document.title}\n{document.text}"
