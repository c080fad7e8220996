"""Reading a run: one or several records files, read and checked once for every command.

``report``, ``compare``, ``plot``, ``analyze`` and the leaderboard all start here, so a file given
twice, a damaged line or a cell recorded twice is refused the same way everywhere, naming places.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gather_envs.errors import RecordsError
from gather_envs.files import PathLike
from gather_envs.records.episodes import EpisodeRecord
from gather_envs.runs.cells import DEFAULT_REMEDY, check_unique_cells
from gather_envs.runs.store import iter_records_with_locations


@dataclass(frozen=True)
class Run:
    """The records of a run and, aligned with them, each one's ``file:line``."""

    records: list[EpisodeRecord]
    places: list[str]


def load_run(paths: PathLike | Sequence[PathLike], *, unique: bool = True, remedy: str = DEFAULT_REMEDY) -> Run:
    """Every record of ``paths`` with its place; refuses a file given twice and (``unique``) a cell twice.

    A file given twice (also through a symlink or a hard link) is refused: its records would be
    counted twice.
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
    if unique:
        check_unique_cells(records, places, remedy=remedy)
    return Run(records, places)
