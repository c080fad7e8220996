"""The capability boundary B_T (tasks solved at least once) and T*, the budget past which PASS stops improving."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from gather_envs.errors import ConfigError
from gather_envs.metrics.bootstrap import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_SEED,
    FloatArray,
    bootstrap_weights,
    resampled_means,
    validate_bootstrap_args,
)


@dataclass(frozen=True)
class Boundary:
    """The capability boundary B_T: tasks solved at least once in their n episodes."""

    size: int
    ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "ids": list(self.ids)}


def boundary(task_ids: Sequence[str], successes: ArrayLike) -> Boundary:
    """B_T from per-task success counts c (aligned with ``task_ids``); ids sorted."""
    c = np.asarray(successes).reshape(-1)
    if c.size != len(task_ids):
        raise ConfigError(f"boundary: {len(task_ids)} task ids but {c.size} success counts")
    ids = tuple(sorted(task_ids[i] for i in np.flatnonzero(c > 0).tolist()))
    return Boundary(size=len(ids), ids=ids)


@dataclass(frozen=True)
class TStar:
    """T*: overall and per column (k) of the estimates it was computed from."""

    overall: int
    per_column: tuple[int, ...]


def t_star_from_samples(samples: Mapping[int, FloatArray], confidence: float = DEFAULT_CONFIDENCE) -> TStar:
    """T* from paired bootstrap samples [resamples × k] per budget (same resamples everywhere).

    Definition: T*(k) is the smallest budget T of the grid such that no larger budget T' of the
    grid is significantly better, i.e. for every T' > T the percentile interval (at
    ``confidence``, two-sided) of the paired difference PASS@(k,T') - PASS@(k,T) reaches 0 or
    below. The overall T* is the smallest T for which that holds at every k at once. The largest
    budget always qualifies, so T* is always defined; no correction for multiple comparisons.
    """
    budgets = sorted(samples)
    if not budgets:
        raise ConfigError("t_star needs at least one budget")
    columns = samples[budgets[0]].shape[1]
    tail = (1.0 - confidence) / 2.0
    settled = np.ones((len(budgets), columns), dtype=bool)
    for i, low in enumerate(budgets):
        for high in budgets[i + 1 :]:
            diff = samples[high] - samples[low]
            if diff.shape[0] == 0:
                continue
            lower = np.nanquantile(diff, tail, axis=0)
            settled[i] &= ~(lower > 0)
    per_column = tuple(budgets[int(np.argmax(settled[:, j]))] for j in range(columns))
    overall = budgets[int(np.argmax(settled.all(axis=1)))]
    return TStar(overall=overall, per_column=per_column)


def t_star(
    per_task: Mapping[int, ArrayLike],
    *,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> TStar:
    """T* from per-task estimate matrices [tasks × k], one per budget, rows aligned on tasks.

    See :func:`t_star_from_samples` for the definition; tasks are resampled jointly across
    budgets (paired bootstrap, ``bootstrap`` resamples from ``numpy.random.default_rng(seed)``).
    """
    validate_bootstrap_args(bootstrap, confidence)
    if bootstrap == 0:
        raise ConfigError("t_star needs bootstrap >= 1 resamples")
    mats = {int(t): np.asarray(m, dtype=np.float64) for t, m in per_task.items()}
    shapes = {m.shape for m in mats.values()}
    if len(shapes) > 1:
        raise ConfigError(f"t_star: per-budget matrices must share one shape, got {sorted(shapes)}")
    num_tasks = next(iter(shapes))[0] if shapes else 0
    weights = bootstrap_weights(num_tasks, bootstrap, np.random.default_rng(seed))
    return t_star_from_samples({t: resampled_means(weights, m) for t, m in mats.items()}, confidence)
