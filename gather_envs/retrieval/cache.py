"""A process-wide cache of BM25 indexes, so every env in a process shares one index per corpus.

An index over a large corpus takes seconds and hundreds of megabytes to build; many env instances
(vector envs, evaluation threads) in one process should pay that once. Entries are keyed by the
caller, typically with :func:`corpus_key` of the corpus's texts plus the BM25 parameters.

Size: the cache keeps the MAX_CACHED_INDEXES most recently used indexes and drops older ones. An
env that holds an index keeps it alive regardless; a dropped key is rebuilt on its next use. So
per-question indexes (one per task, built many times over a dataset) cannot grow without bound,
while a corpus index that every search touches stays cached.

Processes: the cache lives in one process. Worker processes started with ``spawn`` or
``forkserver`` each build their own index once. With ``fork``, a child inherits whatever the parent
had already cached; the index's big numpy arrays are never written after the build, so their
pages stay shared copy-on-write. Build the index in the parent before forking to get this.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TypeVar

from gather_envs.retrieval.search import PostingsSearch

MAX_CACHED_INDEXES = 1024
"""Most indexes kept at once; the least recently used beyond this are dropped."""

IndexT = TypeVar("IndexT", bound=PostingsSearch)
"""A BM25Index, or a memory-mapped DiskIndex (one per directory per process shares its scratch buffers)."""

_lock = threading.Lock()
_indexes: OrderedDict[str, PostingsSearch] = OrderedDict()
_build_locks: dict[str, threading.Lock] = {}


def get_index(key: str, build: Callable[[], IndexT]) -> IndexT:
    """The cached index for ``key``, calling ``build()`` once per process if it is missing.

    Thread-safe: concurrent callers with the same key wait for a single build. Callers with other
    keys are not blocked. If ``build`` raises, nothing is cached and the next call tries again.
    """
    with _lock:
        index = _lookup(key)
        if index is not None:
            return index  # type: ignore[return-value]  # a key always names one kind of index
        build_lock = _build_locks.setdefault(key, threading.Lock())
    with build_lock:
        with _lock:
            index = _lookup(key)
        if index is None:
            index = build()
            with _lock:
                _indexes[key] = index
                while len(_indexes) > MAX_CACHED_INDEXES:
                    _indexes.popitem(last=False)
                _build_locks.pop(key, None)
    return index  # type: ignore[return-value]


def _lookup(key: str) -> PostingsSearch | None:
    """The cached index for ``key``, marked as just used; call with ``_lock`` held."""
    index = _indexes.get(key)
    if index is not None:
        _indexes.move_to_end(key)
    return index


def clear_cache() -> None:
    """Forget every cached index (their memory is freed once no env holds them)."""
    with _lock:
        _indexes.clear()


def corpus_key(texts: Iterable[str], *parts: object) -> str:
    """A SHA-256 key for a corpus's texts, in order, plus any extra ``parts`` (e.g. k1, b).

    >>> corpus_key(["a b", "c"]) == corpus_key(["a b", "c"]) != corpus_key(["a", "b c"])
    True
    """
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))  # length prefix: no ambiguity across docs
        digest.update(data)
    digest.update(repr(parts).encode("utf-8"))
    return digest.hexdigest()
