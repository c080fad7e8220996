"""The plan of a run: which (task, T, episode) cells it plays, in which order, with which seeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from gather_envs.envs.gather_env import MAX_TOOL_CALLS
from gather_envs.errors import ConfigError
from gather_envs.evaluation.seeds import episode_seed, sample_tasks
from gather_envs.runs import Cell

DEFAULT_N = 64
DEFAULT_BUDGETS = (0, 1, 2, 3, 5)
DEFAULT_SEED = 0
STATIC_FAMILY = "static"
STATIC_BUDGET = 0
ORDER_EPISODES = "episodes"
ORDER_CELLS = "cells"
ORDERS = (ORDER_EPISODES, ORDER_CELLS)


@dataclass(frozen=True)
class RunPlan:
    """What a run covers: tasks (split order), budgets, n, base seed, and notes for the user."""

    task_ids: tuple[str, ...]
    budgets: tuple[int, ...]
    n: int
    seed: int
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Episodes in the grid."""
        return len(self.task_ids) * len(self.budgets) * self.n

    def grid_order(self) -> list[Cell]:
        """Every cell sorted by task (split order), budget, then episode index."""
        return [Cell(t, b, i) for t in self.task_ids for b in self.budgets for i in range(self.n)]

    def run_order(self, order: str = ORDER_EPISODES) -> list[Cell]:
        """Every cell in the order they are played; the order changes no record, only what is done first.

        ``"episodes"``: episode index first, so a partial run is balanced over tasks and budgets.
        ``"cells"``: the ``n`` episodes of a (task, T) together, so episodes in flight share their
        first prompt and a local model's prefix cache computes it once (a partial run is then
        whole cells of the first tasks).
        """
        if order == ORDER_CELLS:
            return self.grid_order()
        if order != ORDER_EPISODES:
            raise ConfigError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        return [Cell(t, b, i) for i in range(self.n) for t in self.task_ids for b in self.budgets]

    def seed_of(self, key: Cell) -> int:
        """The episode seed of a cell (see :mod:`gather_envs.evaluation.seeds`)."""
        return episode_seed(self.seed, key.task_id, key.budget, key.index)


def plan_run(
    env: gym.Env,
    n: int = DEFAULT_N,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    tasks: int | Sequence[str] | None = None,
    seed: int = DEFAULT_SEED,
) -> RunPlan:
    """The grid for ``env``'s split: all tasks, a seeded sample of ``tasks`` of them, or given ids."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n (episodes per task and budget) must be an int >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    wanted = list(budgets)
    if not wanted:
        raise ConfigError("budgets must list at least one tool-call budget T")
    for budget in wanted:
        if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget <= MAX_TOOL_CALLS:
            raise ConfigError(f"budgets must be ints in [0, {MAX_TOOL_CALLS}], got {budget!r}")
    unwrapped: Any = env.unwrapped
    split_ids = tuple(task.task_id for task in unwrapped.tasks)
    if tasks is None:
        task_ids = split_ids
    elif isinstance(tasks, bool | str):
        raise ConfigError(f"tasks must be a number of tasks or a list of task ids, got {tasks!r}")
    elif isinstance(tasks, int):
        task_ids = sample_tasks(split_ids, tasks, seed)
    else:
        known = set(split_ids)
        unknown = [t for t in tasks if t not in known]
        if unknown:
            raise ConfigError(f"unknown task id(s) for this split: {', '.join(map(str, unknown[:5]))}")
        task_ids = tuple(dict.fromkeys(tasks))
    notes: list[str] = []
    ordered = tuple(sorted(set(wanted)))
    if unwrapped.family == STATIC_FAMILY and ordered != (STATIC_BUDGET,):
        skipped = [t for t in ordered if t != STATIC_BUDGET]
        if STATIC_BUDGET not in ordered:
            raise ConfigError(
                f"the static family is closed-book (T = {STATIC_BUDGET} only); budgets {list(ordered)} "
                "leave nothing to run"
            )
        notes.append(
            f"note: the static family is closed-book; running T = {STATIC_BUDGET} only and skipping "
            f"T = {', '.join(map(str, skipped))}"
        )
        ordered = (STATIC_BUDGET,)
    return RunPlan(task_ids=task_ids, budgets=ordered, n=n, seed=seed, notes=tuple(notes))


