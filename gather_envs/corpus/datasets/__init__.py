"""Real QA datasets as corpora: HotpotQA, 2WikiMultiHopQA, MuSiQue and MATH-500 files.

:func:`load_dataset` turns an env's ``dataset={...}`` kwarg into a :class:`Corpus` with one split,
``"test"``. Its documents are the distinct paragraphs of the questions kept (an identical title and
text in several questions is one document), and each task's ``context_doc_ids`` are its own
paragraphs: the env's ``scope="distractor"`` searches those, ``scope="world"`` all of them. Loaded
files and corpora are cached per process (keyed by the file's path, size, modification time and
the filters), and on disk next to the file (see :mod:`~gather_envs.corpus.datasets.common`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gather_envs.corpus.corpus import Corpus
from gather_envs.corpus.datasets import hotpotqa, math500, musique, twowiki
from gather_envs.corpus.datasets.common import (
    LOADER_VERSION,
    DataFileWarning,
    DataItemError,
    DatasetFormat,
    LoadedFile,
    check_problems,
    load_file,
)
from gather_envs.corpus.datasets.sample import DEFAULT_SEED, choose, matches
from gather_envs.errors import ConfigError, DataFileError

FORMATS: dict[str, DatasetFormat] = {
    fmt.name: fmt for fmt in (hotpotqa.FORMAT, twowiki.FORMAT, musique.FORMAT, math500.FORMAT)
}
DEFAULT_SPLIT = "test"
DATASET_KEYS = (
    "format",
    "path",
    "type",
    "level",
    "sample",
    "per_type",
    "seed",
    "strict",
    "cache",
    "cache_dir",
)
MAX_CACHED_FILES = 2
MAX_CACHED_CORPORA = 8


@dataclass(frozen=True)
class DatasetSpec:
    """A validated ``dataset={...}`` kwarg: which file, read how, and which of its questions."""

    format: DatasetFormat
    path: Path
    types: tuple[str, ...] | None = None
    levels: tuple[str, ...] | None = None
    sample: int | None = None
    per_type: int | None = None
    seed: int = DEFAULT_SEED
    strict: bool = True
    cache: bool = True
    cache_dir: str | None = None

    @classmethod
    def from_kwargs(cls, dataset: Mapping[str, Any]) -> DatasetSpec:
        """Validate a ``dataset=`` dict; every mistake is one ConfigError or DataFileError."""
        if not isinstance(dataset, Mapping):
            raise ConfigError(f"dataset= takes a dict, got {type(dataset).__name__}")
        unknown = sorted(set(dataset) - set(DATASET_KEYS))
        if unknown:
            hint = ""
            if "scope" in unknown:
                hint = (
                    "; the retrieval scope is the env's scope= kwarg ('distractor': each question's own "
                    "paragraphs, 'world': every paragraph), on the dataset ids too"
                )
            raise ConfigError(f"unknown dataset key(s) {unknown}; allowed: {list(DATASET_KEYS)}{hint}")
        name = dataset.get("format")
        if name not in FORMATS:
            raise ConfigError(f"dataset['format'] must be one of {sorted(FORMATS)}, got {name!r}")
        fmt = FORMATS[name]
        raw_path = dataset.get("path")
        if raw_path is None:
            raise DataFileError(f"dataset= needs 'path': {fmt.file_hint} and pass its path")
        if not isinstance(raw_path, str | os.PathLike):
            raise ConfigError(f"dataset['path'] must be a string, got {type(raw_path).__name__}")
        path = Path(raw_path).expanduser().resolve()
        if not path.is_file():
            raise DataFileError(f"{path}: no such file; {fmt.file_hint} and pass its path")
        types = _names(dataset.get("type"), "type")
        if types is not None and fmt.type_families is not None:
            bad = [t for t in types if t not in fmt.type_families]
            if bad:
                raise ConfigError(
                    f"unknown {fmt.name} type(s) {bad}; choose from {sorted(fmt.type_families)}"
                )
        sample, per_type = dataset.get("sample"), dataset.get("per_type")
        if sample is not None and per_type is not None:
            raise ConfigError("give dataset['sample'] (a total) or dataset['per_type'], not both")
        for key, value in (("sample", sample), ("per_type", per_type)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"dataset[{key!r}] must be a positive integer, got {value!r}")
        seed = dataset.get("seed", DEFAULT_SEED)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"dataset['seed'] must be an integer, got {seed!r}")
        flags = {key: dataset.get(key, True) for key in ("strict", "cache")}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise ConfigError(f"dataset[{key!r}] must be true or false, got {value!r}")
        cache_dir = dataset.get("cache_dir")
        if cache_dir is not None and not isinstance(cache_dir, str | os.PathLike):
            raise ConfigError(f"dataset['cache_dir'] must be a string, got {type(cache_dir).__name__}")
        return cls(
            format=fmt,
            path=path,
            types=types,
            levels=_names(dataset.get("level"), "level"),
            sample=sample,
            per_type=per_type,
            seed=seed,
            strict=flags["strict"],
            cache=flags["cache"],
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        )

    def filters(self) -> dict[str, Any]:
        """The settings that pick questions (they key the corpus and its content hash)."""
        return {
            "type": None if self.types is None else list(self.types),
            "level": None if self.levels is None else list(self.levels),
            "sample": self.sample,
            "per_type": self.per_type,
            "seed": self.seed,
        }


def _names(value: Any, key: str) -> tuple[str, ...] | None:
    """A type or level filter as a sorted tuple of strings (one value or a list)."""
    if value is None:
        return None
    values = value if isinstance(value, list | tuple) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, str | int) for v in values):
        raise ConfigError(f"dataset[{key!r}] must be a string or a list of strings, got {value!r}")
    return tuple(sorted({str(v) for v in values}))


_lock = threading.Lock()
_files: OrderedDict[tuple[Any, ...], LoadedFile] = OrderedDict()
_corpora: OrderedDict[str, Corpus] = OrderedDict()


def load_dataset(dataset: Mapping[str, Any]) -> Corpus:
    """The corpus of a ``dataset={...}`` kwarg (see the module docstring), cached per process."""
    spec = DatasetSpec.from_kwargs(dataset)
    info = spec.path.stat()
    file_key = (spec.format.name, str(spec.path), info.st_size, info.st_mtime_ns, spec.cache, spec.cache_dir)
    corpus_key = json.dumps([*file_key, spec.filters()])
    with _lock:
        if corpus_key in _corpora:
            _corpora.move_to_end(corpus_key)
            return _corpora[corpus_key]
        loaded = _files.get(file_key)
        if loaded is None:
            loaded = load_file(spec.format, spec.path, use_cache=spec.cache, cache_dir=spec.cache_dir)
            _remember(_files, file_key, loaded, MAX_CACHED_FILES)
        check_problems(loaded, spec.path, spec.strict, stacklevel=5)
        corpus = build_corpus(spec, loaded)
        _remember(_corpora, corpus_key, corpus, MAX_CACHED_CORPORA)
        return corpus


def _remember(cache: OrderedDict, key: Any, value: Any, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def clear_dataset_cache() -> None:
    """Forget every loaded file and corpus of this process (the files on disk stay)."""
    with _lock:
        _files.clear()
        _corpora.clear()


def build_corpus(spec: DatasetSpec, loaded: LoadedFile) -> Corpus:
    """The filtered tasks of a loaded file and just the documents they use, as one corpus."""
    tasks = [
        t
        for t in loaded.tasks
        if matches(t.meta.get("type"), spec.types) and matches(t.meta.get("level"), spec.levels)
    ]
    if tasks and (spec.sample is not None or spec.per_type is not None):
        groups = [str(t.meta.get("type")) for t in tasks]
        tasks = [tasks[i] for i in choose(groups, per_type=spec.per_type, total=spec.sample, seed=spec.seed)]
    if not tasks:
        raise DataFileError(
            f"{spec.path}: no usable {spec.format.name} question"
            + (" passes the filters " + json.dumps(spec.filters()) if loaded.tasks else "")
        )
    documents = loaded.documents
    if len(tasks) != len(loaded.tasks):
        used = {doc_id for t in tasks for doc_id in (*t.context_doc_ids, *t.supporting_doc_ids)}
        documents = [d for d in documents if d.doc_id in used]
    filters = spec.filters()
    identity = json.dumps({"sha256": loaded.sha256, "loader_version": LOADER_VERSION, "filters": filters})
    knobs = {
        "format": spec.format.name,
        "path": str(spec.path),
        "sha256": loaded.sha256,
        "items": loaded.items,
        "skipped": len(loaded.problems),
        "excluded": loaded.excluded,
        **filters,
    }
    return Corpus(
        name=f"{spec.format.name}:{spec.path.name}",
        documents=documents,
        splits={DEFAULT_SPLIT: tasks},
        knobs=knobs,
        content_hash=hashlib.sha256(identity.encode()).hexdigest(),
    )


__all__ = [
    "DATASET_KEYS",
    "DEFAULT_SPLIT",
    "FORMATS",
    "DataFileWarning",
    "DataItemError",
    "DatasetFormat",
    "DatasetSpec",
    "build_corpus",
    "clear_dataset_cache",
    "load_dataset",
]
