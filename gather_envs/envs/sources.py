"""Resolve an env's corpus kwargs (a frozen name, world knobs, or a dataset file) to a Corpus, and ``index=`` to its index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gather_envs.corpus.corpus import Corpus, documents_hash
from gather_envs.corpus.custom import load_custom
from gather_envs.corpus.datasets import load_dataset
from gather_envs.corpus.frozen import DEFAULT_CORPUS, load_frozen, procedural_corpus
from gather_envs.corpus.phantomwiki import load_phantomwiki
from gather_envs.errors import ConfigError
from gather_envs.retrieval import DiskIndex, get_index
from gather_envs.retrieval.disk_index import MANIFEST

CUSTOM_FORMAT = "custom"
PHANTOMWIKI_FORMAT = "phantomwiki"


def resolve_corpus(
    corpus: str | None = None, world: dict[str, Any] | None = None, dataset: dict[str, Any] | None = None
) -> Corpus:
    """Exactly one source: ``world`` knobs, a ``dataset`` file (``load_dataset``), else a frozen corpus.

    ``dataset={"format": "custom", "documents": PATH, "tasks": PATH}`` reads your own JSON-lines
    files and ``{"format": "phantomwiki", "path": DIR}`` a PhantomWiki output directory;
    ``corpus=`` is a shipped corpus name or a corpus directory's path.
    """
    given = [
        name
        for name, value in (("corpus", corpus), ("world", world), ("dataset", dataset))
        if value is not None
    ]
    if len(given) > 1:
        raise ConfigError(f"pass only one of corpus=, world=, dataset= (got {', '.join(given)})")
    if world is not None:
        if not isinstance(world, dict):
            raise ConfigError(f"world= takes a dict of knobs, got {type(world).__name__}")
        return procedural_corpus(world)
    if dataset is not None:
        if not isinstance(dataset, dict):
            raise ConfigError(f"dataset= takes a dict (format, path, filters), got {type(dataset).__name__}")
        if dataset.get("format") == CUSTOM_FORMAT:
            _only_keys(dataset, ("format", "documents", "tasks"))
            return load_custom(str(dataset.get("documents")), str(dataset.get("tasks")))
        if dataset.get("format") == PHANTOMWIKI_FORMAT:
            _only_keys(dataset, ("format", "path"))
            return load_phantomwiki(str(dataset.get("path")))
        return load_dataset(dataset)
    return load_frozen(corpus or DEFAULT_CORPUS)


def _only_keys(dataset: dict[str, Any], keys: tuple[str, ...]) -> None:
    """ConfigError unless ``dataset`` has exactly ``keys``."""
    if sorted(dataset) != sorted(keys):
        raise ConfigError(
            f"dataset= for format {dataset['format']!r} takes exactly the keys {list(keys)}, got {sorted(dataset)}"
        )


def resolve_index(directory: str, corpus: Corpus, split: str) -> DiskIndex:
    """The on-disk index at ``directory`` (one per process), checked against the split it serves.

    An index built from this corpus must hold exactly the documents a ``split`` env searches
    (``gather-envs index build CORPUS --split SPLIT``), so it answers as the in-memory index
    would; an index of other documents (a Wikipedia dump for open-domain tasks) is searched as is.
    """
    path = Path(directory).resolve()
    try:  # a rebuilt index (a new manifest) is opened afresh; the old one stays valid for its holders
        stamp = (path / MANIFEST).stat().st_mtime_ns
    except OSError:
        stamp = 0  # DiskIndex.open says what is wrong
    index = get_index(f"disk:{path}:{stamp}", lambda: DiskIndex.open(path))
    built_from = index.manifest.get("corpus", {})
    if built_from.get("content_hash") == corpus.content_hash and built_from.get(
        "documents_sha256"
    ) != documents_hash(corpus.documents_of(split)):
        raise ConfigError(
            f"index {directory} holds other documents of corpus {corpus.name!r} than split {split!r} "
            f"searches; rebuild it with `gather-envs index build {corpus.name} --split {split}`"
        )
    return index
