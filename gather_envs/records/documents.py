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

    def render(self) -> str:
        """The text an agent sees for this document."""
        return f"[{self.title}] {self.text}"
