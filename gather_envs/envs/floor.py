"""The chance floor of a run: stored in the corpus manifest, or measured on the tasks the run used.

``report``, ``compare`` and the leaderboard call :func:`run_floor` with a run's records and hand the
values to the metrics (which stay pure functions over records and values). A shipped frozen
corpus keeps its floor in its manifest (measured on its test split, with the train guesser); every
other corpus, a dataset file (HotpotQA, 2Wiki, MuSiQue, MATH), your own files, PhantomWiki or a
procedural world, has it measured here: each env of the records is rebuilt from its id and kwargs
(exactly as the run made it), the tasks the records name are taken from it, and the guessers of
:mod:`gather_envs.tasks.floor` score them (the train guesser too when the corpus has a train split
and the run is not on it). The result is cached beside the dataset cache
(:mod:`gather_envs.corpus.floor`). No floor (None) when the records span corpora, an env cannot be
rebuilt, or its corpus is no longer the one the run used: nothing is invented.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym

from gather_envs.corpus.floor import (
    floor_cache_key,
    floor_cache_path,
    load_chance_floor,
    read_cached_floor,
    write_cached_floor,
)
from gather_envs.corpus.synthetic import floor_tasks
from gather_envs.errors import GatherError
from gather_envs.records import EpisodeRecord
from gather_envs.records.tasks import Task
from gather_envs.tasks.floor import FloorTable, chance_floor_table

STORED_SPLIT = "test"
"""The split a manifest's floor was measured on (the train guesser learns from the train split)."""
SPLIT_KWARG = "split"
TRAIN_SPLIT = "train"


def run_floor(records: Iterable[EpisodeRecord]) -> FloorTable | None:
    """The chance floor of the records' run, per family (see the module docstring); None if none."""
    records = list(records)
    hashes = sorted({record.corpus_hash for record in records})
    if len(hashes) != 1:
        return None
    corpus_hash = hashes[0]
    families = sorted({record.family for record in records})
    splits = {str(record.env_kwargs.get(SPLIT_KWARG, STORED_SPLIT)) for record in records}
    if splits == {STORED_SPLIT}:
        stored = load_chance_floor(corpus_hash)
        if stored is not None:
            return FloorTable(
                floor={f: v for f, v in stored.items() if f in families or families == [""]},
                best={},
                guessers={},
                tasks={},
            )
    envs = {_env_key(record): (record.env_id, record.env_kwargs) for record in records}
    used = {(record.family, record.task_id) for record in records}
    path = _cache_path(corpus_hash, envs.values())
    key = floor_cache_key(envs, used)
    if path is not None:
        cached = read_cached_floor(path, corpus_hash, key)
        if cached is not None:
            return cached
    table = _measure(corpus_hash, records, list(envs.values()))
    if table is not None and path is not None:
        write_cached_floor(path, corpus_hash, key, table)
    return table


def chance_floor_of(records: Iterable[EpisodeRecord]) -> dict[str, dict[int, float]] | None:
    """Just the values of :func:`run_floor` (family -> k -> PASS@(k,0)), for the metrics."""
    table = run_floor(records)
    return None if table is None else table.floor


def _env_key(record: EpisodeRecord) -> str:
    return _key(record.env_id, record.env_kwargs)


def _key(env_id: str, kwargs: Mapping[str, Any]) -> str:
    """One env of a run (its id and kwargs) as canonical JSON."""
    return json.dumps([env_id, kwargs], sort_keys=True, default=str)


def _measure(
    corpus_hash: str, records: list[EpisodeRecord], envs: list[tuple[str, Mapping[str, Any]]]
) -> FloorTable | None:
    """The floor of the tasks the records name, each env rebuilt as the run made it; None if it cannot be."""
    wanted: dict[str, set[str]] = {}
    for record in records:
        wanted.setdefault(_env_key(record), set()).add(record.task_id)
    tasks: dict[tuple[str, str], Task] = {}
    train: tuple[Task, ...] = ()
    for env_id, kwargs in envs:
        try:
            env = gym.make(env_id, disable_env_checker=True, **kwargs)
        except (GatherError, gym.error.Error, TypeError, ValueError, OSError):  # moved files, an old id
            return None
        unwrapped: Any = env.unwrapped
        env.close()
        corpus, split = unwrapped.corpus, unwrapped.split
        if corpus.content_hash != corpus_hash:
            return None
        own = {task.task_id: task for task in unwrapped.tasks}
        ids = wanted[_key(env_id, kwargs)]
        if not ids <= set(own):
            return None
        tasks.update(((own[i].family, i), own[i]) for i in sorted(ids))
        if split != TRAIN_SPLIT and TRAIN_SPLIT in corpus.splits:
            train = floor_tasks(corpus, TRAIN_SPLIT)
    return chance_floor_table(list(tasks.values()), train)


def _cache_path(corpus_hash: str, envs: Iterable[tuple[str, Mapping[str, Any]]]) -> Path | None:
    """Where this corpus's floor is cached: beside its data file's dataset cache, else the user cache.

    None when the user turned a dataset's cache off (nothing is written beside the file then).
    """
    from gather_envs.corpus.datasets import FORMATS
    from gather_envs.corpus.phantomwiki import QUESTIONS_FILE
    from gather_envs.envs.custom_registration import PHANTOMWIKI_ENV_ID
    from gather_envs.envs.sources import PHANTOMWIKI_FORMAT

    for env_id, kwargs in envs:
        given = kwargs.get("dataset")
        source: Mapping[str, Any] = given if isinstance(given, Mapping) else kwargs
        path, tasks = source.get("path"), source.get("tasks")
        if source.get("format") in FORMATS and isinstance(path, str):
            if source.get("cache") is False:
                return None
            cache_dir = source.get("cache_dir")
            return floor_cache_path(corpus_hash, path, cache_dir if isinstance(cache_dir, str) else None)
        if isinstance(tasks, str):  # your own documents.jsonl and tasks.jsonl
            return floor_cache_path(corpus_hash, tasks)
        if isinstance(path, str) and (source.get("format") == PHANTOMWIKI_FORMAT or env_id == PHANTOMWIKI_ENV_ID):
            return floor_cache_path(corpus_hash, str(Path(path) / QUESTIONS_FILE))
    return floor_cache_path(corpus_hash)
