"""Where a corpus's chance floor is kept: the shipped manifests, and the on-disk floor cache.

A shipped frozen corpus stores its floor in its manifest (:func:`load_chance_floor`). Every other
corpus (a dataset file, your own files, PhantomWiki, a procedural world) has it measured from the
tasks a run used (:mod:`gather_envs.envs.floor`) and cached, so a later ``report`` need not load
the corpus again. The cache is one JSON file per corpus: beside the dataset cache for a dataset
file (``<file>.gather-floor.json`` next to ``<file>.gather-cache.jsonl``, or in the same cache
directory), else under ``$GATHER_ENVS_CACHE_DIR`` or ``~/.cache/gather-envs/datasets``. Its entries
are keyed by the run's envs (id and kwargs) and task ids and by :data:`FLOOR_CACHE_VERSION`; an unreadable or
stale file is ignored (the floor is measured again), and one that cannot be written is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gather_envs.corpus.datasets.common import (
    CACHE_DIR_ENV,
    CACHE_SUFFIX,
    USER_CACHE_DIR,
    cache_path_for,
)
from gather_envs.errors import GatherError
from gather_envs.files import atomic_file
from gather_envs.json_files import loads_bounded
from gather_envs.tasks.floor import MANIFEST_KEY, FloorTable, parse_chance_floor

FLOOR_CACHE_VERSION = 1
"""Bump when the guessers change: every cached floor is measured again."""
FLOOR_CACHE_SUFFIX = ".gather-floor.json"
FLOOR_CACHE_PREFIX = "corpus-"
HASH_NAME_CHARS = 32
"""Characters of the corpus hash in a cache file's name (the file also records the whole hash)."""


def load_chance_floor(corpus_hash: str) -> dict[str, dict[int, float]] | None:
    """The chance floor in the manifest of the shipped frozen corpus with this content hash.

    None when no shipped corpus has that hash (a procedural world, a dataset file) or its manifest
    has no :data:`~gather_envs.tasks.floor.MANIFEST_KEY`.
    """
    from gather_envs.corpus.frozen import MANIFEST, available_corpora, corpora_root, read_manifest

    root = corpora_root()
    for name in available_corpora():
        manifest = read_manifest(root / name)
        if manifest.get("content_hash") != corpus_hash:
            continue
        if MANIFEST_KEY not in manifest:
            return None
        return parse_chance_floor(manifest[MANIFEST_KEY], str(root / name / MANIFEST))
    return None


def floor_cache_path(corpus_hash: str, data_file: str | None = None, cache_dir: str | None = None) -> Path:
    """The floor cache of a corpus: beside ``data_file``'s dataset cache when given, else the user cache."""
    if data_file is not None:
        beside = cache_path_for(Path(data_file), cache_dir)
        return beside.with_name(beside.name.removesuffix(CACHE_SUFFIX) + FLOOR_CACHE_SUFFIX)
    directory = Path(cache_dir or os.environ.get(CACHE_DIR_ENV) or USER_CACHE_DIR).expanduser()
    digest = corpus_hash.rsplit(":", 1)[-1][:HASH_NAME_CHARS]
    return directory / f"{FLOOR_CACHE_PREFIX}{digest}{FLOOR_CACHE_SUFFIX}"


def floor_cache_key(envs: Iterable[str], tasks: Iterable[tuple[str, str]]) -> str:
    """The key of one run's floor: its envs (id and kwargs, as canonical JSON) and (family, task id) pairs."""
    identity = json.dumps([FLOOR_CACHE_VERSION, sorted(set(envs)), sorted(set(tasks))])
    return hashlib.sha256(identity.encode()).hexdigest()


def read_cached_floor(path: Path, corpus_hash: str, key: str) -> FloorTable | None:
    """The cached floor under ``key``; None when absent, stale or unreadable (it is only a cache)."""
    try:
        data = loads_bounded(path.read_bytes())  # NotJson (too deep, too large) is a ValueError
        if data.get("gather_envs_floor") != FLOOR_CACHE_VERSION or data.get("corpus_hash") != corpus_hash:
            return None
        entry = data["entries"].get(key)
        return None if entry is None else FloorTable.from_json(entry["table"], entry["guessable"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError, GatherError):
        return None


def write_cached_floor(path: Path, corpus_hash: str, key: str, table: FloorTable) -> None:
    """Add ``table`` under ``key`` to the cache file (atomically); skipped when it cannot be written."""
    data: dict[str, Any] = {"gather_envs_floor": FLOOR_CACHE_VERSION, "corpus_hash": corpus_hash, "entries": {}}
    with contextlib.suppress(OSError, ValueError):
        old = loads_bounded(path.read_bytes())
        if (
            isinstance(old, dict)
            and old.get("gather_envs_floor") == FLOOR_CACHE_VERSION
            and old.get("corpus_hash") == corpus_hash
            and isinstance(old.get("entries"), dict)
        ):
            data["entries"] = old["entries"]
    data["entries"][key] = {"table": table.to_json(), "guessable": table.guessable}
    with contextlib.suppress(OSError), atomic_file(path) as handle:
        handle.write(json.dumps(data, sort_keys=True).encode())
