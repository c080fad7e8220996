"""The document record shared by synthetic worlds, real datasets and retrieval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Document:
    """One retrievable document: a stable id, a title and its text."""

    doc_id: str
    title: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "title": self.title, "text": self.text}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Document:
        return cls(doc_id=str(data["doc_id"]), title=str(data["title"]), text=str(data["text"]))

    def contents(self) -> str:
        """Search-R1's ``contents`` layout of this document (wiki-18 rows, retrieval answers)."""
        return f'"{self.title}"\n{self.text}'

    @classmethod
    def from_contents(cls, doc_id: str, contents: str) -> Document:
        """A document from Search-R1's ``contents`` (``'"Title"\\ntext'``); no first line is no title.

        >>> Document.from_contents("7", '"Oslo"\\nOslo is a city.')
        Document(doc_id='7', title='Oslo', text='Oslo is a city.')
        """
        first, newline, rest = contents.partition("\n")
        if not newline:
            return cls(doc_id=doc_id, title="", text=contents)
        if len(first) >= 2 and first[0] == first[-1] == '"':
            first = first[1:-1]
        return cls(doc_id=doc_id, title=first, text=rest)

    def render(self) -> str:
        """The text an agent sees for this document."""
        return f"[{self.title}] {self.text}"
