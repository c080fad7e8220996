"""Resuming a run: the finished episodes of its records file, checked to belong to the same run."""

from __future__ import annotations

from pathlib import Path

from gather_envs.evaluation.plan import RunPlan
from gather_envs.records import EpisodeRecord
from gather_envs.runs import (
    Cell,
    RecordLocation,
    RunIdentity,
    cell_of,
    check_unique_cells,
    read_for_append,
    rewrite_records,
)


def load_existing(path: Path, run: RunIdentity, plan: RunPlan) -> dict[Cell, EpisodeRecord]:
    """The finished episodes of the file (infra errors dropped from it, for retry), by cell.

    The caller holds the run lock. A file of another run, a cell recorded twice (naming both
    lines) and damage other than a damaged last line are refused with the file untouched; a damaged
    last line is moved to the ``.corrupt`` sidecar, so what is appended next follows a record.
    """
    if not path.exists() or path.stat().st_size == 0:
        return {}

    def check(located: list[tuple[EpisodeRecord, RecordLocation]]) -> None:
        for record, location in located:
            key = cell_of(record)
            run.check(record, plan.seed_of(key), plan.seed, str(location))
        check_unique_cells(
            [record for record, _ in located],
            [str(location) for _, location in located],
            remedy="remove one line of each pair, or pass another --out, before resuming",
        )

    located = read_for_append(path, check)
    done: dict[Cell, EpisodeRecord] = {}
    for record, _ in located:
        if not record.is_infra_error:
            done[cell_of(record)] = record
    if len(done) != len(located):
        rewrite_records(path, list(done.values()))
    return done
