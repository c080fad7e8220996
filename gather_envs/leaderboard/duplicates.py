"""Whole-trajectory duplicates: per cell, the share of episodes whose actions repeat another's.

A temperature-0 agent repeats itself legitimately; an agent that samples rarely repeats a whole
trajectory once it has searched. So for an entry whose settings declare sampling
(:func:`declares_sampling`), a high share of repeats at T >= 1 means episodes were copied (one
lucky episode pasted over the failed ones of its cell keeps the published seeds and replays
cleanly), and verify refuses it above :data:`~gather_envs.leaderboard.tracks.DUPLICATE_LIMIT`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gather_envs.leaderboard.problems import Problems
from gather_envs.leaderboard.replay import recorded_actions
from gather_envs.leaderboard.tracks import DUPLICATE_LIMIT, SAMPLED_SCRIPTED_AGENTS, TEMPERATURE_SETTING
from gather_envs.records import EpisodeRecord

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


def check_duplicates(
    env_id: str,
    submission: Mapping[str, Any],
    located: Sequence[tuple[EpisodeRecord, Path, int]],
    sub_path: Path,
    here: int,
    problems: Problems,
) -> DuplicateShare:
    """The share of repeated trajectories; refused above the limit when the settings declare sampling."""
    share = duplicate_share(
        (record.task_id, record.budget, recorded_actions(record) or ())
        for record, _, _ in located
        if not record.is_infra_error
    )
    agent = submission["agent"]
    if declares_sampling(agent["id"], agent["settings"]) and share.searching > DUPLICATE_LIMIT:
        worst = share.worst_cell
        detail = (
            "" if worst is None else f"; most in task {worst[0]!r}, T={worst[1]}: {worst[2]} of {worst[3]}"
        )
        problems.add(
            sub_path, here, "duplicates",
            f"{env_id}: {share.searching:.1%} of the episodes at T >= 1 repeat another episode's whole "
            f"trajectory in their cell, over the {DUPLICATE_LIMIT:.0%} limit for an agent that declares "
            f"sampling{detail}; submit each episode as played",
        )  # fmt: skip
    return share
