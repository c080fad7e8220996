"""Whole-trajectory duplicates: per cell, the share of episodes whose actions repeat another's.

A temperature-0 agent repeats itself legitimately; an agent that samples rarely repeats a whole
trajectory once it has searched. So for an entry whose settings declare sampling
(:func:`declares_sampling`), a high share of repeats at T >= 1 means episodes were copied (one
lucky episode pasted over the failed ones of its cell keeps the published seeds and replays
cleanly), and verify refuses it above :data:`~gather_envs.leaderboard.tracks.DUPLICATE_LIMIT`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gather_envs.leaderboard.tracks import SAMPLED_SCRIPTED_AGENTS, TEMPERATURE_SETTING

SEARCHING_FROM = 1
"""The limit applies to cells with T >= this: at T = 0 a sampled agent has few answers to pick from."""


@dataclass(frozen=True)
class DuplicateShare:
    """Repeated trajectories of one env: per T and over the cells with T >= :data:`SEARCHING_FROM`."""

    per_budget: dict[int, float]
    """T -> share of that T's episodes whose action sequence repeats an earlier one of their cell."""
    searching: float
    """The same share over every cell with T >= :data:`SEARCHING_FROM` (0 when there is none)."""
    worst_cell: tuple[str, int, int, int] | None
    """(task, T, repeats, episodes) of the cell at T >= 1 with the most repeats, None when none repeats."""

    def to_json(self) -> dict[str, Any]:
        return {
            "per_T": {str(t): share for t, share in sorted(self.per_budget.items())},
            "searching": self.searching,
        }


def duplicate_share(episodes: Iterable[tuple[str, int, tuple[str, ...]]]) -> DuplicateShare:
    """The repeats among ``(task_id, T, actions)`` episodes, counted per (task, T) cell."""
    cells: dict[tuple[str, int], list[tuple[str, ...]]] = defaultdict(list)
    for task_id, budget, actions in episodes:
        cells[(task_id, budget)].append(actions)
    repeats: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    worst: tuple[str, int, int, int] | None = None
    for (task_id, budget), sequences in sorted(cells.items()):
        repeated = len(sequences) - len(Counter(sequences))
        repeats[budget][0] += repeated
        repeats[budget][1] += len(sequences)
        if budget >= SEARCHING_FROM and repeated and (worst is None or repeated > worst[2]):
            worst = (task_id, budget, repeated, len(sequences))
    searching = [counts for budget, counts in repeats.items() if budget >= SEARCHING_FROM]
    total = sum(episodes for _, episodes in searching)
    return DuplicateShare(
        per_budget={budget: counts[0] / counts[1] for budget, counts in sorted(repeats.items())},
        searching=sum(repeated for repeated, _ in searching) / total if total else 0.0,
        worst_cell=worst,
    )


def declares_sampling(agent_id: str, settings: Mapping[str, Any]) -> bool:
    """Whether an entry's agent samples: a temperature above 0, or a sampled scripted agent."""
    temperature = settings.get(TEMPERATURE_SETTING)
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        return temperature > 0
    return agent_id in SAMPLED_SCRIPTED_AGENTS
