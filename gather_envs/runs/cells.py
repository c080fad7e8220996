"""One record per (task, T, episode) cell: the cell key, and refusing a cell recorded twice.

A cell counted twice silently changes n and every estimate built on it (``report a.jsonl a.jsonl``
once turned n = 4 into n = 8), so the report, the comparison and the runner's resume all refuse a
second record for a cell and name both places (``file:line``). Records without an episode index
(:data:`~gather_envs.records.EPISODE_INDEX_UNKNOWN`, from a loop of the user's own) cannot be told
apart and are not checked; infrastructure-error records are not episodes (they are excluded from n
and retried on resume) and are not checked either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from gather_envs.errors import RecordsError
from gather_envs.records.episodes import EPISODE_INDEX_UNKNOWN, EpisodeRecord


class Cell(NamedTuple):
    """One cell of a PASS@(k,T) grid: episode ``index`` of ``task_id`` at budget T (the one key)."""

    task_id: str
    budget: int
    index: int


def cell_of(record: EpisodeRecord) -> Cell:
    """The (task, T, episode index) cell a record fills."""
    return Cell(record.task_id, record.budget, record.episode_index)


DEFAULT_REMEDY = (
    "each (task, T, episode) cell must have one record (a file given twice, or runs concatenated?). "
    "Remove one of the lines"
)


def check_unique_cells(
    records: Sequence[EpisodeRecord], places: Sequence[str] | None = None, remedy: str = DEFAULT_REMEDY
) -> None:
    """RecordsError at the first (task, T, episode) cell that holds two records, naming both places.

    ``places`` (aligned with ``records``, e.g. from :func:`gather_envs.runs.load_run`) name each record as
    ``file:line``; without them a record is named by its position (``record #12``). Records
    without an episode index and infrastructure-error records are not checked (see the module
    docstring). ``remedy`` ends the message (the runner's resume says what to do before resuming).
    """
    if places is not None and len(places) != len(records):
        raise RecordsError(f"check_unique_cells: {len(records)} records but {len(places)} places")

    def name(i: int) -> str:
        return places[i] if places is not None else f"record #{i + 1}"

    # Cells of different runs (env, corpus and retriever, agent) never collide: a file mixing them is refused by
    # the report and the comparison with a message that says so instead.
    first: dict[tuple[str, tuple[str, str | None], str, Cell], int] = {}
    for position, record in enumerate(records):
        if record.episode_index == EPISODE_INDEX_UNKNOWN or record.is_infra_error:
            continue
        cell = cell_of(record)
        earlier = first.setdefault((record.env_id, record.searched, record.agent_id, cell), position)
        if earlier == position:
            continue
        raise RecordsError(
            f"two records for task {cell.task_id!r}, T={cell.budget}, episode {cell.index} "
            f"(agent {record.agent_id!r}): {name(earlier)} and {name(position)}; {remedy}"
        )
