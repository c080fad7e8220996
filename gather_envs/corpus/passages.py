"""Stream the documents of any corpus the suite reads, for an on-disk index: one reader per source.

- a JSON-lines passages file, one document per line, in either layout (told apart per row):
  Search-R1's wiki-18 (``{"id": ..., "contents": "\\"Title\\"\\ntext"}``) or the custom format's
  ``documents.jsonl`` (``{"id", "title", "text"}``, see ``docs/custom.md``);
- a frozen corpus (a shipped name or a corpus directory), all documents or one split's world.

Rows are read one at a time (a 21M-passage file never sits in memory); a malformed row is one
DataFileError naming the file, the line and the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gather_envs.corpus.frozen import load_directory, load_frozen
from gather_envs.errors import DataFileError
from gather_envs.json_files import iter_json_lines
from gather_envs.records.documents import Document

WIKI18_FORMAT = "wiki18-jsonl"
CUSTOM_FORMAT = "custom-jsonl"


def iter_passages(path: Path) -> Iterator[Document]:
    """The documents of a JSON-lines passages file (wiki-18 or custom rows), in file order."""
    for number, row in iter_json_lines(path, DataFileError):
        yield _passage(path, number, row)


def _passage(path: Path, number: int, row: Any) -> Document:
    """One row as a Document; DataFileError naming the line and the field if it is neither layout."""
    where = f"{path}:{number}"
    if not isinstance(row, dict):
        raise DataFileError(f"{where}: each line must be a JSON object, got {type(row).__name__}")
    doc_id = row.get("id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or doc_id == "":
        raise DataFileError(f"{where}: field 'id' must be a non-empty string or an int, got {doc_id!r:.60}")
    if "contents" in row:
        if not isinstance(row["contents"], str):
            raise DataFileError(f"{where}: field 'contents' must be a string")
        return Document.from_contents(str(doc_id), row["contents"])
    title, text = row.get("title"), row.get("text")
    if not (isinstance(title, str) and isinstance(text, str)):
        raise DataFileError(
            f"{where}: a row needs 'contents' (wiki-18) or string 'title' and 'text' (custom documents.jsonl)"
        )
    return Document(str(doc_id), title, text)


def corpus_documents(name_or_dir: str, split: str | None) -> tuple[tuple[Document, ...], dict[str, Any]]:
    """A frozen corpus's documents (``split``: that split's world only) and their identity for a manifest."""
    path = Path(name_or_dir)
    corpus = load_directory(path) if path.is_dir() else load_frozen(name_or_dir)
    if split is not None and split not in corpus.splits:
        raise DataFileError(
            f"corpus {corpus.name!r} has no split {split!r}; it has {', '.join(sorted(corpus.splits))}"
        )
    documents = corpus.documents_of(split)
    identity = {
        "kind": "frozen",
        "name": corpus.name,
        "content_hash": corpus.content_hash,
        "split": split,
    }
    return documents, identity
