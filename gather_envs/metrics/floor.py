"""The chance floor beside every reading: PASS@(k,0) of a question-only guesser, per task family.

A guesser that sees only the question (no search, no documents) still solves some tasks, more so
at large k when answers come from a small set; the floor says what luck alone gives at each k, so
a reader can tell a reading from it. Metrics receive it as plain values (family -> k -> PASS@(k,0));
what measures it (the guessers in :mod:`gather_envs.tasks.floor`) and what finds it for a run (the
stored manifest floor or the run's own tasks, :mod:`gather_envs.envs.floor`) live below: metrics
stay pure functions over records and these values, and no floor is ever invented.
"""

from __future__ import annotations

from collections.abc import Mapping

from gather_envs.tasks.floor import FLOOR_FIELD, MANIFEST_KEY, parse_chance_floor

ChanceFloor = Mapping[str, Mapping[int, float]]
"""family -> k -> PASS@(k, T=0) of the question-only guesser."""


def floor_for_families(floor: ChanceFloor, tasks_per_family: Mapping[str, int]) -> dict[int, float]:
    """The floor of a task set: the task-weighted mean of its families' floors, per k.

    Only the k every family has; empty when a family of the set has no floor (then nothing is
    shown rather than a floor for part of the tasks).
    """
    counts = {family: n for family, n in tasks_per_family.items() if n > 0}
    if not counts or any(family not in floor for family in counts):
        return {}
    ks = sorted(set.intersection(*(set(floor[family]) for family in counts)))
    total = sum(counts.values())
    return {k: sum(floor[family][k] * n for family, n in counts.items()) / total for k in ks}


def at_ks(values: Mapping[int, float], ks: tuple[int, ...]) -> dict[int, float]:
    """``values`` restricted to the k of a table's grid (in grid order)."""
    return {k: values[k] for k in ks if k in values}


__all__ = ["FLOOR_FIELD", "MANIFEST_KEY", "ChanceFloor", "at_ks", "floor_for_families", "parse_chance_floor"]
