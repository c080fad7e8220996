"""The published leaderboard grid: per track, the budgets, episodes, task sample and base seed.

Every entry of a track plays the same tasks (the seeded sample of ``tasks`` test tasks), the same
budgets and episode seeds from one fixed base seed, so two entries are paired task by task and
episode by episode, and nobody can choose a lucky seed or keep only lucky episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

PUBLISHED_BUDGETS = (0, 1, 2, 3, 5)
"""T grid of every track; the closed-book static family runs at T = 0 only."""
STATIC_BUDGETS = (0,)
LEADERBOARD_SEED = 0
"""Base seed of the task sample and the episode seeds (gather_envs.evaluation.seeds)."""
INFRA_ERROR_LIMIT = 0.05
"""Largest share of infrastructure-error records per env that a valid submission may hold."""
LEADERBOARD_SPLIT = "test"


@dataclass(frozen=True)
class Track:
    """One leaderboard track: at least ``n`` episodes per (task, T) on a sample of ``tasks`` tasks."""

    name: str
    n: int
    tasks: int
    budgets: tuple[int, ...] = PUBLISHED_BUDGETS
    seed: int = LEADERBOARD_SEED
    label: str = ""

    @property
    def top_k(self) -> int:
        """The large k of the ranked table, PASS@(n,T): the most every entry of the track has."""
        return self.n


TRACKS = {
    "main": Track("main", n=64, tasks=100, label="main track (n >= 64, 100 tasks)"),
    "quick": Track("quick", n=8, tasks=20, label="quick track (n >= 8, 20 tasks; not the published grid)"),
}
"""Tracks by name; ``main`` is the published grid, ``quick`` a labelled smaller one."""

DUPLICATE_LIMIT = 0.2
"""Largest share of repeated whole trajectories at T >= 1 for an entry that declares sampling.

Measured on the quick track (20 tasks, n = 8): the seeded random agent repeats 2.5-7% of its
episodes at T >= 1 (and 14-24% at T = 0, where it has few answers to choose from); the heuristic,
whose choices are mostly forced, 6-66%, which is why it does not declare sampling."""
SAMPLED_SCRIPTED_AGENTS = ("random",)
"""Scripted agents whose settings declare sampling (every action is drawn)."""
TEMPERATURE_SETTING = "temperature"
"""The agent setting that declares sampling for an LLM agent (> 0 samples)."""
