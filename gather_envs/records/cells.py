"""One record per (task, T, episode) cell: reading records with their places, refusing duplicates.

A cell counted twice silently changes n and every estimate built on it (``report a.jsonl a.jsonl``
once turned n = 4 into n = 8), so the report, the comparison and the runner's resume all refuse a
second record for a cell and name both places (``file:line``). Records without an episode index
(:data:`~gather_envs.records.EPISODE_INDEX_UNKNOWN`, from a loop of the user's own) cannot be told
apart and are not checked; infrastructure-error records are not episodes (they are excluded from n
and retried on resume) and are not checked either.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gather_envs.errors import RecordsError
from gather_envs.records.episodes import EPISODE_INDEX_UNKNOWN, EpisodeRecord, iter_records_with_locations

PathLike = str | os.PathLike[str]

Cell = tuple[str, str, str, str, int, int]
"""(env id, corpus hash, agent id, task id, budget T, episode index)."""


def cell_of(record: EpisodeRecord) -> Cell:
    """The (task, T, episode index) cell a record fills, within its run (env, corpus, agent).

    Records of different runs never collide here: a file mixing agents, envs or corpora is
    refused by the report and the comparison with a message that says so instead.
    """
    return (
        record.env_id,
        record.corpus_hash,
        record.agent_id,
        record.task_id,
        record.budget,
        record.episode_index,
    )


def read_located(paths: PathLike | Sequence[PathLike]) -> tuple[list[EpisodeRecord], list[str]]:
    """The records of one or several files and, aligned with them, each one's ``file:line``.

    A file given twice (also through a symlink) is refused: its records would be counted twice.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    seen: dict[tuple[int, int], tuple[int, Path]] = {}
    records: list[EpisodeRecord] = []
    places: list[str] = []
    for position, raw_path in enumerate(paths, start=1):
        path = Path(raw_path)
        try:
            stat = path.stat()
        except OSError as exc:
            raise RecordsError(f"cannot read records file {path}: {exc}") from exc
        identity = (stat.st_dev, stat.st_ino)
        if identity in seen:
            first, first_path = seen[identity]
            raise RecordsError(
                f"records file {path} is given twice (arguments {first} and {position}"
                f"{'' if first_path == path else f', as {first_path} and {path}'}); "
                "its episodes would be counted twice. Give each file once"
            )
        seen[identity] = (position, path)
        for record, location in iter_records_with_locations(path):
            records.append(record)
            places.append(str(location))
    return records, places


DEFAULT_REMEDY = (
    "each (task, T, episode) cell must have one record (a file given twice, or runs concatenated?). "
    "Remove one of the lines"
)


def check_unique_cells(
    records: Sequence[EpisodeRecord], places: Sequence[str] | None = None, remedy: str = DEFAULT_REMEDY
) -> None:
    """RecordsError at the first (task, T, episode) cell that holds two records, naming both places.

    ``places`` (aligned with ``records``, e.g. from :func:`read_located`) name each record as
    ``file:line``; without them a record is named by its position (``record #12``). Records
    without an episode index and infrastructure-error records are not checked (see the module
    docstring). ``remedy`` ends the message (the runner's resume says what to do before resuming).
    """
    if places is not None and len(places) != len(records):
        raise RecordsError(f"check_unique_cells: {len(records)} records but {len(places)} places")

    def name(i: int) -> str:
        return places[i] if places is not None else f"record #{i + 1}"

    first: dict[Cell, int] = {}
    for position, record in enumerate(records):
        if record.episode_index == EPISODE_INDEX_UNKNOWN or record.is_infra_error:
            continue
        cell = cell_of(record)
        earlier = first.setdefault(cell, position)
        if earlier == position:
            continue
        _, _, agent, task, budget, index = cell
        raise RecordsError(
            f"two records for task {task!r}, T={budget}, episode {index} (agent {agent!r}): "
            f"{name(earlier)} and {name(position)}; {remedy}"
        )
