"""Seeded samples of a dataset: filter by type and level, then draw N per type or N in all.

The same draw serves the env's ``dataset={"per_type": 100, "seed": 0}`` filter and the
``gather-envs sample`` command, so a sample file holds exactly the questions the filter picks from
the full file. The draw only looks at the valid items that pass the filters, in file order:
per type (sorted by name), ``numpy.random.default_rng(seed).choice`` without replacement, and the
chosen items keep their file order. A type with fewer items than asked gives them all.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gather_envs.corpus.datasets.common import (
    CONTAINER_ARRAY,
    UTF8_BOM,
    DatasetFormat,
    LoadedFile,
    check_problems,
    detect_container,
    iter_parsed,
    iter_raw,
)
from gather_envs.errors import ConfigError, DataFileError
from gather_envs.files import atomic_file

DEFAULT_SEED = 0


def choose(groups: Sequence[str], *, per_type: int | None, total: int | None, seed: int) -> list[int]:
    """Positions (sorted) of a seeded sample of ``groups``: ``per_type`` of each group, or ``total``.

    >>> choose(["a", "b", "a", "b", "a"], per_type=1, total=None, seed=0)
    [3, 4]
    """
    if (per_type is None) == (total is None):
        raise ConfigError("give exactly one of per_type= and sample= (a total)")
    size = per_type if per_type is not None else total
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"the sample size must be a positive integer, got {size!r}")
    rng = np.random.default_rng(seed)
    if total is not None:
        return _draw(list(range(len(groups))), total, rng)
    members: dict[str, list[int]] = defaultdict(list)
    for position, group in enumerate(groups):
        members[group].append(position)
    chosen: list[int] = []
    for group in sorted(members):
        chosen.extend(_draw(members[group], size, rng))
    return sorted(chosen)


def _draw(positions: list[int], size: int, rng: np.random.Generator) -> list[int]:
    if len(positions) <= size:
        return list(positions)
    picked = rng.choice(len(positions), size=size, replace=False)
    return sorted(positions[int(i)] for i in picked)


def matches(value: str | None, wanted: tuple[str, ...] | None) -> bool:
    """Whether a type or level passes a filter (None lets everything through)."""
    return wanted is None or (value is not None and value in wanted)


@dataclass(frozen=True)
class SampleReport:
    """What a sample run wrote: how many items of each type, from how many valid ones."""

    out: Path
    counts: dict[str, int]
    valid: int
    skipped: int


def sample_file(
    fmt: DatasetFormat,
    source: Path,
    out: Path,
    *,
    per_type: int | None = None,
    total: int | None = None,
    seed: int = DEFAULT_SEED,
    types: tuple[str, ...] | None = None,
    levels: tuple[str, ...] | None = None,
    strict: bool = True,
) -> SampleReport:
    """Write a seeded sample of ``source`` to ``out`` in the same layout (two streaming passes)."""
    if types is not None and fmt.type_families is not None:
        unknown = [t for t in types if t not in fmt.type_families]
        if unknown:
            raise ConfigError(
                f"unknown {fmt.name} type(s) {unknown}; choose from {sorted(fmt.type_families)}"
            )
    if not source.is_file():
        raise DataFileError(f"{source}: no such file; {fmt.file_hint}")
    if out.resolve() == source.resolve():
        raise ConfigError(f"--out {out} is the input file; write the sample somewhere else")
    kept: list[int] = []
    groups: list[str] = []
    problems = []
    items = excluded = 0
    for record in iter_parsed(fmt, source):
        items += 1
        if record.problem is not None:
            problems.append(record.problem)
        elif record.parsed is None:
            excluded += 1
        elif matches(record.parsed.source_type, types) and matches(record.parsed.level, levels):
            kept.append(record.raw.position)
            groups.append(record.parsed.source_type)
    check_problems(LoadedFile([], [], problems, "", items, excluded), source, strict, stacklevel=3)
    if not kept:
        raise DataFileError(
            f"{source}: no {fmt.name} item passes the filters (types={types}, levels={levels})"
        )
    picked = choose(groups, per_type=per_type, total=total, seed=seed)
    counts: dict[str, int] = defaultdict(int)
    for i in picked:
        counts[groups[i]] += 1
    _write(source, out, {kept[i] for i in picked})
    return SampleReport(out, dict(sorted(counts.items())), len(kept), len(problems))


def _write(source: Path, out: Path, chosen: set[int]) -> None:
    """Copy the chosen items: JSON lines byte for byte, JSON arrays re-serialized one item a line."""
    array = detect_container(source) == CONTAINER_ARRAY
    with atomic_file(out) as sink:
        if array:
            sink.write(b"[")
        first = True
        for raw in iter_raw(source):
            if raw.position not in chosen:
                continue
            if array:
                sink.write(b"\n" if first else b",\n")
                sink.write(json.dumps(raw.value, ensure_ascii=False).encode())
            else:
                assert raw.line is not None
                line = raw.line.removeprefix(UTF8_BOM)
                sink.write(line if line.endswith(b"\n") else line + b"\n")
            first = False
        if array:
            sink.write(b"\n]\n")
