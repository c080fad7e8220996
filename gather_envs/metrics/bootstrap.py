"""The percentile bootstrap over tasks that every PASS@(k,T) interval uses.

Each resample draws tasks with replacement; a resample's mean of any per-task quantity is one row of
a matrix product with :func:`bootstrap_weights`, so curves, differences and T* share resamples.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from gather_envs.errors import ConfigError

DEFAULT_BOOTSTRAP = 1000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0

# Bootstrap draws are generated this many task indices at a time, to bound memory.
_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def bootstrap_weights(num_tasks: int, bootstrap: int, rng: np.random.Generator) -> FloatArray:
    """[bootstrap × num_tasks] resampling counts: how often each task is drawn in each resample.

    A resample's mean of any per-task quantity is then one row of a matrix product.
    """
    weights = np.zeros((bootstrap, num_tasks), dtype=np.float64)
    if num_tasks == 0 or bootstrap == 0:
        return weights
    rows_per_chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // num_tasks)
    for start in range(0, bootstrap, rows_per_chunk):
        rows = min(rows_per_chunk, bootstrap - start)
        draws = rng.integers(0, num_tasks, size=(rows, num_tasks))
        draws += np.arange(rows, dtype=draws.dtype)[:, None] * num_tasks
        counts = np.bincount(draws.ravel(), minlength=rows * num_tasks)
        weights[start : start + rows] = counts.reshape(rows, num_tasks)
    return weights


def resampled_means(weights: FloatArray, per_task: FloatArray) -> FloatArray:
    """[resamples × columns] weighted means; NaN for a resample that drew none of these tasks."""
    totals = weights.sum(axis=1)
    sums = weights @ per_task
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / totals[:, None]
    means[totals == 0] = np.nan
    return means


def percentile_interval(
    samples: FloatArray, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[FloatArray, FloatArray]:
    """Column-wise percentile interval of bootstrap samples [resamples × columns]."""
    tail = (1.0 - confidence) / 2.0
    if samples.shape[0] == 0:
        nan = np.full(samples.shape[1], np.nan)
        return nan, nan.copy()
    low, high = np.nanquantile(samples, [tail, 1.0 - tail], axis=0)
    return low, high


def validate_bootstrap_args(bootstrap: int, confidence: float) -> None:
    """ConfigError unless bootstrap >= 0 and 0 < confidence < 1."""
    if bootstrap < 0:
        raise ConfigError(f"bootstrap must be >= 0 resamples, got {bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def task_columns(weights: FloatArray, index: IntArray, width: int) -> FloatArray:
    """The weight columns of the tasks at ``index`` (no copy when that is every task in order)."""
    if index.size == width and np.array_equal(index, np.arange(width)):
        return weights
    return weights[:, index]
