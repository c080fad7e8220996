"""Your own data: ``documents.jsonl`` and ``tasks.jsonl`` read into a corpus, checked line by line.

Every row is checked before anything is built, and the first problem is one DataFileError naming
the file, the line and the field (``tasks.jsonl:7: field 'hops' must be an int >= 1, got 'two'``),
so a corpus never half-loads. The fields are documented in ``docs/custom.md``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gather_envs.corpus.corpus import Corpus
from gather_envs.corpus.frozen import write_frozen
from gather_envs.corpus.manifest import IMPORTED_FORMAT, NAME_PATTERN, SPLIT_PATTERN
from gather_envs.errors import DataFileError
from gather_envs.json_files import iter_json_lines
from gather_envs.records.documents import Document
from gather_envs.records.tasks import FAMILIES, FAMILY_BRIDGE, FAMILY_SINGLE_HOP, GoldStep, Task
from gather_envs.scoring.checkers import CHECKER_EXACT, CHECKER_KEY, CHECKER_MATH, CHECKER_SET, CHECKERS
from gather_envs.scoring.normalize import normalize_answer
from gather_envs.scoring.sets import ANSWER_SET_KEY

DEFAULT_SPLIT = "test"
DEFAULT_NAME = "custom"
DOCUMENT_FIELDS = ("id", "title", "text")
ANSWER_FIELDS = ("answer", "answers", "answer_set")
TASK_FIELDS = (
    "id",
    "question",
    *ANSWER_FIELDS,
    "family",
    "hops",
    "supporting_doc_ids",
    "context_doc_ids",
    "split",
    "answer_type",
)
SET_JOINER = "; "


class _Invalid(Exception):
    """A row's field is wrong; the message names the field (the caller adds file and line)."""


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSON-lines file with their line numbers (blank lines skipped)."""
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    count = 0
    for number, row in iter_json_lines(path, DataFileError, unique_keys=True):
        if not isinstance(row, dict):
            raise DataFileError(f"{path}:{number}: each line must be a JSON object, got {type(row).__name__}")
        count += 1
        yield number, row
    if not count:
        raise DataFileError(f"{path}: the file is empty; put one JSON object per line")


def _string(row: dict[str, Any], name: str, empty: bool = False) -> str:
    value = row.get(name)
    if name not in row:
        raise _Invalid(f"field {name!r} is missing")
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise _Invalid(f"field {name!r} must be a {'' if empty else 'non-empty '}string, got {value!r:.60}")
    return value


def _strings(row: dict[str, Any], name: str, non_empty: bool = False) -> tuple[str, ...]:
    value = row.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _Invalid(f"field {name!r} must be a list of non-empty strings, got {value!r:.60}")
    if non_empty and not value:
        raise _Invalid(f"field {name!r} must hold at least one answer")
    if len(set(value)) != len(value):
        raise _Invalid(f"field {name!r} repeats an entry")
    return tuple(value)


def _checked(path: Path, number: int, check: Callable[..., Any], *args: Any) -> Any:
    """``check(*args)``, its problem raised as one DataFileError naming the file and line."""
    try:
        return check(*args)
    except _Invalid as exc:
        raise DataFileError(f"{path}:{number}: {exc}") from None


def read_documents(path: Path) -> tuple[list[Document], dict[str, int]]:
    """The documents of ``documents.jsonl`` and the line of each id."""
    documents: list[Document] = []
    lines: dict[str, int] = {}
    for number, row in _rows(path):
        document = _checked(path, number, _document, row)
        if document.doc_id in lines:
            raise DataFileError(
                f"{path}:{number}: field 'id' {document.doc_id!r:.60} repeats line {lines[document.doc_id]}"
            )
        lines[document.doc_id] = number
        documents.append(document)
    return documents, lines


def _document(row: dict[str, Any]) -> Document:
    _known_fields(row, DOCUMENT_FIELDS)
    return Document(_string(row, "id"), _string(row, "title", empty=True), _string(row, "text", empty=True))


def _known_fields(row: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(row) - set(known))
    if unknown:
        raise _Invalid(f"unknown field {unknown[0]!r:.60}; the fields are {list(known)}")


def read_tasks(path: Path, documents: dict[str, Document]) -> dict[str, list[Task]]:
    """The tasks of ``tasks.jsonl`` per split; every doc id must name a document."""
    splits: dict[str, list[Task]] = {}
    lines: dict[str, int] = {}
    for number, row in _rows(path):
        split, task = _checked(path, number, _task, row, documents)
        if task.task_id in lines:
            raise DataFileError(
                f"{path}:{number}: field 'id' {task.task_id!r:.60} repeats line {lines[task.task_id]}"
            )
        lines[task.task_id] = number
        splits.setdefault(split, []).append(task)
    return splits


def _task(row: dict[str, Any], documents: dict[str, Document]) -> tuple[str, Task]:
    _known_fields(row, TASK_FIELDS)
    task_id, question = _string(row, "id"), _string(row, "question")
    given = [name for name in ANSWER_FIELDS if name in row]
    if len(given) != 1:
        raise _Invalid(f"give exactly one of the fields {list(ANSWER_FIELDS)}, got {given or 'none'}")
    checker = row.get("answer_type", CHECKER_SET if given[0] == "answer_set" else CHECKER_EXACT)
    if checker not in CHECKERS:
        raise _Invalid(f"field 'answer_type' must be one of {list(CHECKERS)}, got {checker!r:.60}")
    if (checker == CHECKER_SET) != (given[0] == "answer_set"):
        raise _Invalid("field 'answer_type' is 'set' exactly when the answers are in field 'answer_set'")
    meta: dict[str, Any] = {} if checker == CHECKER_EXACT else {CHECKER_KEY: checker}
    if given[0] == "answer":
        answers: tuple[str, ...] = (_string(row, "answer"),)
    else:
        answers = _strings(row, given[0], non_empty=True)
    if checker != CHECKER_MATH:
        _no_blank_answer(given[0], answers, listed=given[0] != "answer")
    if checker == CHECKER_SET:
        meta[ANSWER_SET_KEY] = list(answers)
        answers = (set_answer_text(answers),)
    supporting = _doc_ids(row, "supporting_doc_ids", documents)
    context = _doc_ids(row, "context_doc_ids", documents)
    if context:
        outside = [d for d in supporting if d not in context]
        if outside:
            raise _Invalid(
                f"field 'supporting_doc_ids' names {outside[0]!r:.60}, which is not in 'context_doc_ids'"
            )
    hops = row.get("hops", max(1, len(supporting)))
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
        raise _Invalid(f"field 'hops' must be an int >= 1, got {hops!r:.60}")
    family = row.get("family", FAMILY_SINGLE_HOP if hops == 1 else FAMILY_BRIDGE)
    if family not in FAMILIES:
        raise _Invalid(f"field 'family' must be one of {list(FAMILIES)}, got {family!r:.60}")
    split = row.get("split", DEFAULT_SPLIT)
    if not isinstance(split, str) or not SPLIT_PATTERN.fullmatch(split):
        raise _Invalid(f"field 'split' must be letters, digits or '_', got {split!r:.60}")
    task = Task(
        task_id=task_id,
        question=question,
        answer=answers[0],
        aliases=answers[1:],
        family=family,
        hops=hops,
        gold_path=tuple(GoldStep(documents[d].title, d) for d in supporting),
        supporting_doc_ids=supporting,
        context_doc_ids=context,
        meta=meta,
    )
    return split, task


def _no_blank_answer(name: str, answers: tuple[str, ...], listed: bool) -> None:
    """_Invalid if an answer normalizes to nothing: then ``answer[the]`` would match it."""
    for i, answer in enumerate(answers):
        if not normalize_answer(answer):
            where = f"{name!r}[{i}]" if listed else repr(name)
            raise _Invalid(
                f"field {where} is {answer!r:.60}, which normalizes to the empty string (articles and "
                "punctuation are dropped), so any empty answer would match it; give a real answer"
            )


def set_answer_text(items: tuple[str, ...]) -> str:
    """A set answer as one string that ``answer_items`` splits back: ``a; b``, or a JSON list when an item holds ``;``."""
    if any(";" in item for item in items):
        return json.dumps(list(items), ensure_ascii=False)
    return SET_JOINER.join(items)


def _doc_ids(row: dict[str, Any], name: str, documents: dict[str, Document]) -> tuple[str, ...]:
    ids = _strings(row, name)
    unknown = [d for d in ids if d not in documents]
    if unknown:
        raise _Invalid(f"field {name!r} names {unknown[0]!r:.60}, which is no id in the documents file")
    return ids


def read_custom(documents_path: Path, tasks_path: Path, name: str = DEFAULT_NAME) -> Corpus:
    """The corpus of a documents file and a tasks file, every row checked first."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise DataFileError(f"corpus name {name!r:.60} must be letters, digits, '.', '_' or '-'")
    documents, _ = read_documents(documents_path)
    by_id = {d.doc_id: d for d in documents}
    splits = read_tasks(tasks_path, by_id)
    knobs = {"format": IMPORTED_FORMAT, "documents": len(documents), "tasks": sum(map(len, splits.values()))}
    return Corpus(name, documents, dict(sorted(splits.items())), knobs=knobs)


@functools.lru_cache(maxsize=8)
def _cached(documents: str, tasks: str, _stamp: tuple[Any, ...]) -> Corpus:
    return read_custom(Path(documents), Path(tasks))


def load_custom(documents: str, tasks: str) -> Corpus:
    """``read_custom``, cached per process by the files' paths, sizes and modification times."""
    paths = [Path(p).expanduser().resolve() for p in (documents, tasks)]
    stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None for p in paths)
    return _cached(str(paths[0]), str(paths[1]), stamp)


def freeze_custom(documents: Path, tasks: Path, out: Path, name: str = DEFAULT_NAME) -> dict[str, Any]:
    """Check both files, then write them as a frozen corpus in ``out``; returns the manifest."""
    corpus = read_custom(documents, tasks, name)
    return write_frozen(corpus, [], out, measure_hop_skips=False)
