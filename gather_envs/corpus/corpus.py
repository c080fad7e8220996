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
    """Documents and their tasks; one instance per corpus is shared by every env in a process.

    ``split_documents`` maps a split to the ``[start, stop)`` range of ``documents`` that is its
    own world (a synthetic corpus's test and train worlds are disjoint); a split it does not name,
    and every split when it is None (real datasets), searches all documents.
    """

    def __init__(
        self,
        name: str,
        documents: Sequence[Document],
        splits: Mapping[str, Sequence[Task]],
        knobs: dict[str, Any] | None = None,
        content_hash: str | None = None,
        split_documents: Mapping[str, Sequence[int]] | None = None,
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
        self.split_documents: dict[str, tuple[int, int]] = {}
        for split, bounds in sorted((split_documents or {}).items()):
            start, stop = (int(b) for b in bounds)
            if not 0 <= start <= stop <= len(self.documents):
                raise ConfigError(
                    f"corpus {name!r}: split {split!r} documents [{start}, {stop}) are outside [0, {len(self.documents)})"
                )
            self.split_documents[split] = (start, stop)

    def documents_of(self, split: str | None) -> tuple[Document, ...]:
        """The documents a ``scope="world"`` search in ``split`` sees: its own world's."""
        if split is None or split not in self.split_documents:
            return self.documents
        start, stop = self.split_documents[split]
        return self.documents[start:stop]

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

    def index(self, split: str | None = None) -> BM25Index:
        """The world-scope BM25 index over ``documents_of(split)``, built once per process."""
        documents = self.documents_of(split)
        bounds = self.split_documents.get(split or "")
        key = f"world:{self.content_hash}" + (f":{bounds[0]}-{bounds[1]}" if bounds else "")
        return get_index(key, lambda: BM25Index.from_texts([index_text(d) for d in documents]))


def index_text(document: Document) -> str:
    """What BM25 indexes for a document: its title, then its text."""
    return f"{document.title}\n{document.text}"
