"""Frozen corpora: JSON-lines files plus a manifest of sha256 hashes, checked at load.

Layout of ``corpora/<name>/``: ``manifest.json`` (knobs, file hashes, content hash, filter
statistics, each split's document range, the chance floor and the measured hop-skip rates),
``documents.jsonl`` (the test world's documents, then the train world's) and one
``tasks-<split>.jsonl`` per split. The files are the
exact bytes :func:`write_frozen` produces, so regenerating from the manifest's knobs must give
identical hashes. The manifest itself is verified field by field (see
:mod:`gather_envs.corpus.manifest`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gather_envs.corpus.corpus import Corpus, canonical_jsonl, documents_hash
from gather_envs.corpus.manifest import (
    DOCUMENTS_FILE,
    FILE_NAME_PATTERNS,
    IMPORTED_FORMAT,
    MANIFEST_SCHEMA_VERSION,
    check_against_content,
    check_manifest,
    parse_manifest,
    seal_manifest,
)
from gather_envs.corpus.synthetic import floor_tasks, generate_corpus, hop_skip_rates
from gather_envs.errors import CorpusError
from gather_envs.files import atomic_directory
from gather_envs.json_files import iter_json_lines
from gather_envs.records.documents import Document
from gather_envs.records.tasks import Task
from gather_envs.scoring import blank_gold_field
from gather_envs.tasks.builder import GUARANTEED_TOP_K, FamilyStats
from gather_envs.tasks.floor import chance_floor_table
from gather_envs.world.generator import GENERATOR_VERSION, WorldConfig

MANIFEST = "manifest.json"
DOCUMENTS = DOCUMENTS_FILE
DEFAULT_CORPUS = "default"
BLANK_GOLD_PROBLEM = (
    "field {field!r} normalizes to the empty string, so any answer that does (`answer[the]`) would "
    "match it; give a real answer or remove the task"
)
CORPUS_VERSION = "v1"  # the corpus's own version, written into new manifests (not an env id's: CHANGELOG.md)


def corpora_root() -> Path:
    """Where frozen corpora live: inside the installed wheel, else the source tree's corpora/."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "_corpora"
    return installed if installed.is_dir() else package.parent / "corpora"


def available_corpora() -> list[str]:
    root = corpora_root()
    return sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}")) if root.is_dir() else []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_frozen(
    corpus: Corpus, stats: list[FamilyStats], directory: Path, measure_hop_skips: bool = True
) -> dict[str, Any]:
    """Write ``corpus`` as a frozen corpus into ``directory`` and return its manifest.

    ``measure_hop_skips=False`` (imported corpora, whose tasks the builder did not filter) stores
    no hop-skip rates; a corpus without a ``test`` split stores an empty chance floor.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for split, tasks in sorted(corpus.splits.items()):  # never write what loading would refuse
        for task in tasks:
            blank = blank_gold_field(task)
            if blank is not None:
                problem = BLANK_GOLD_PROBLEM.format(field=blank)
                raise CorpusError(f"{directory}: split {split!r} task {task.task_id!r:.60}: {problem}")
    files = {DOCUMENTS: canonical_jsonl(d.to_json() for d in corpus.documents)}
    for split, tasks in sorted(corpus.splits.items()):
        files[f"tasks-{split}.jsonl"] = canonical_jsonl(t.to_json() for t in tasks)
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "name": corpus.name,
        "knobs": corpus.knobs,
        "content_hash": corpus.content_hash,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "counts": {
            split: {
                family: sum(t.family == family for t in tasks) for family in sorted({t.family for t in tasks})
            }
            for split, tasks in sorted(corpus.splits.items())
        },
        "filter_stats": [{**asdict(s), "shortcut_rate": round(s.shortcut_rate, 6)} for s in stats],
        "version": CORPUS_VERSION,
        "split_documents": {split: list(bounds) for split, bounds in sorted(corpus.split_documents.items())},
        "chance_floor": chance_floor_table(
            floor_tasks(corpus, "test") if "test" in corpus.splits else (),
            floor_tasks(corpus, "train") if "train" in corpus.splits else (),
        ).to_json(),
        "hop_skip_rates": {
            "guaranteed_top_k": GUARANTEED_TOP_K,
            **{split: hop_skip_rates(corpus, split) for split in sorted(corpus.splits) if measure_hop_skips},
        },
    }
    manifest = seal_manifest(manifest)
    check_manifest(manifest, str(directory / MANIFEST))  # never write what loading would refuse
    files[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    with atomic_directory(directory, is_corpus_file) as staging:
        for name, data in files.items():
            (staging / name).write_bytes(data)
    return manifest


def is_corpus_file(name: str) -> bool:
    """Whether a file name belongs in a frozen corpus folder (what a rewrite may replace)."""
    return name == MANIFEST or any(pattern.fullmatch(name) for pattern in FILE_NAME_PATTERNS)


def read_manifest(directory: Path) -> dict[str, Any]:
    """The verified manifest of a corpus directory; CorpusError naming the field if anything is off."""
    path = directory / MANIFEST
    if not path.is_file():
        raise CorpusError(f"{path}: missing manifest; is {directory.name!r} a frozen corpus?")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path}: unreadable manifest ({exc})") from exc
    return parse_manifest(data, str(path))


def _read_jsonl(path: Path, parse: Callable[[Any], Any]) -> list:
    rows = []
    for number, row in iter_json_lines(path, CorpusError):
        try:
            rows.append(parse(row))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorpusError(f"{path}:{number}: malformed row ({exc})") from None
        blank = blank_gold_field(rows[-1]) if isinstance(rows[-1], Task) else None
        if blank is not None:
            raise CorpusError(f"{path}:{number}: {BLANK_GOLD_PROBLEM.format(field=blank)}")
    return rows


def load_directory(directory: Path) -> Corpus:
    """Load and verify a frozen corpus directory; any mismatch is a CorpusError naming the file or field."""
    manifest = read_manifest(directory)
    for name, expected in sorted(manifest["files"].items()):
        path = directory / name
        if not path.is_file():
            raise CorpusError(f"{path}: listed in {MANIFEST} but missing")
        actual = _sha256(path)
        if actual != expected:
            raise CorpusError(
                f"{path}: sha256 {actual[:12]}… does not match the manifest's {expected[:12]}…; "
                f"the file is corrupted or was edited (regenerate with `gather-envs generate`)"
            )
    documents = _read_jsonl(directory / DOCUMENTS, Document.from_json)
    splits = {
        name[len("tasks-") : -len(".jsonl")]: _read_jsonl(directory / name, Task.from_json)
        for name in sorted(manifest["files"])
        if name.startswith("tasks-")
    }
    check_against_content(manifest, str(directory / MANIFEST), documents_hash(documents), splits)
    corpus = Corpus(
        manifest["name"],
        documents,
        splits,
        manifest["knobs"],
        manifest["content_hash"],
        manifest["split_documents"],
    )
    return corpus


def is_corpus_path(name: str) -> bool:
    """Whether ``corpus=`` is a directory path (it has a separator, or starts with ``.`` or ``~``), not a shipped name."""
    return "/" in name or "\\" in name or name.startswith((".", "~"))


@functools.lru_cache(maxsize=8)
def _load_path(directory: str, _stamp: tuple[int, int]) -> Corpus:
    return load_directory(Path(directory))


def load_frozen(name: str = DEFAULT_CORPUS) -> Corpus:
    """A frozen corpus: shipped with the package by name, or a directory by path (both verified, cached).

    A directory is cached by its manifest's size and modification time, so a rewritten corpus reloads.
    """
    if is_corpus_path(name):
        directory = Path(name).expanduser().resolve()
        manifest = directory / MANIFEST
        if not manifest.is_file():
            raise CorpusError(
                f"{directory}: no {MANIFEST}; is it a frozen corpus (`gather-envs import` writes one)?"
            )
        info = manifest.stat()
        return _load_path(str(directory), (info.st_size, info.st_mtime_ns))
    return _load_shipped(name)


@functools.lru_cache(maxsize=8)
def _load_shipped(name: str) -> Corpus:
    directory = corpora_root() / name
    if not directory.is_dir():
        raise CorpusError(
            f"no frozen corpus {name!r} under {corpora_root()}; available: {available_corpora()}"
        )
    return load_directory(directory)


def config_from_knobs(knobs: dict[str, Any]) -> WorldConfig:
    if knobs.get("format") == IMPORTED_FORMAT:
        raise CorpusError(
            "this corpus was imported from your own files, not generated: run `gather-envs import` again"
        )
    knobs = dict(knobs)
    version = knobs.pop("generator_version", GENERATOR_VERSION)
    if version != GENERATOR_VERSION:
        raise CorpusError(
            f"corpus was made by generator version {version}; this is version {GENERATOR_VERSION}"
        )
    return WorldConfig.from_json(knobs)


def regenerate(directory: Path, out: Path) -> dict[str, Any]:
    """Regenerate a frozen corpus from its manifest's knobs into ``out``; returns the new manifest."""
    manifest = read_manifest(directory)
    corpus, stats = generate_corpus(config_from_knobs(manifest["knobs"]), manifest["name"])
    return write_frozen(corpus, stats, out)


@functools.lru_cache(maxsize=8)
def _procedural(knobs_json: str) -> Corpus:
    return generate_corpus(WorldConfig.from_json(json.loads(knobs_json)))[0]


def procedural_corpus(knobs: dict[str, Any]) -> Corpus:
    """A fresh world built from knobs (cached per process, so env copies share it)."""
    return _procedural(json.dumps(knobs, sort_keys=True))
