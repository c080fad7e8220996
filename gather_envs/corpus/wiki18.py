"""Search-R1's wiki-18 layout: a JSON-lines file of passages ``{"id": ..., "contents": "\\"Title\\"\\ntext"}``.

Read into a corpus of documents without tasks, so ``gather-envs serve-retrieval --corpus FILE.jsonl``
serves it (the open-domain, "fullwiki" index the dataset envs search with ``scope="open"``). It
holds every passage in memory: fine for samples and test pools, not for the 21M passages of
wiki-18 itself (an on-disk index is the tool for that).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gather_envs.corpus.corpus import Corpus
from gather_envs.corpus.passages import iter_passages
from gather_envs.errors import DataFileError
from gather_envs.records.documents import Document

WIKI18_SUFFIX = ".jsonl"
WIKI18_SPLIT = "test"
"""The one (task-less) split, so a server or env asking for the default split finds it."""


def load_wiki18(path: str | Path) -> Corpus:
    """The passages of a wiki-18 JSON-lines file; DataFileError naming the line of the first bad row."""
    path = Path(path)
    documents: list[Document] = []
    seen: set[str] = set()
    digest = hashlib.sha256()
    for number, document in enumerate(iter_passages(path), start=1):
        if document.doc_id in seen:
            raise DataFileError(f"{path}: passage {number}: id {document.doc_id!r} is already used; ids must be unique")
        seen.add(document.doc_id)
        documents.append(document)
        digest.update(f"{document.doc_id}\0{document.title}\0{document.text}\0".encode())
    if not documents:
        raise DataFileError(f"{path}: no passages; put one JSON object per line")
    return Corpus(
        name=f"wiki18:{path.name}",
        documents=documents,
        splits={WIKI18_SPLIT: ()},
        knobs={"format": "wiki18", "path": str(path.resolve())},
        content_hash=digest.hexdigest(),
    )
