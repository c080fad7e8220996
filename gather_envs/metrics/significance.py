"""The tests behind a comparison: McNemar, the paired permutation test, Holm's correction, k*.

Pure functions over arrays and counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from gather_envs.errors import ConfigError
from gather_envs.metrics.bootstrap import DEFAULT_CONFIDENCE

# Differences smaller than this count as ties when looking for the crossing point.
CROSSING_TOLERANCE = 1e-12

SIGN_FLIPS = 20_000
"""Random sign assignments in the paired permutation test (p is resolved to about 1/20,000)."""


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pair counts.

    Under the null each discordant task is equally likely to favour A or B, so the smaller count
    is Binomial(only_a + only_b, 1/2); the p-value doubles its lower tail, capped at 1.

    >>> mcnemar_exact(5, 0)
    0.0625
    >>> mcnemar_exact(3, 3)
    1.0
    """
    if only_a < 0 or only_b < 0:
        raise ConfigError(f"mcnemar_exact: counts must be >= 0, got {only_a}, {only_b}")
    total = only_a + only_b
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, i) for i in range(min(only_a, only_b) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**total)))


def holm(pvalues: Sequence[float]) -> tuple[float, ...]:
    """Holm's step-down adjusted p-values, in the order given (family-wise error at most alpha).

    The i-th smallest p is multiplied by (m - i), adjusted values are made non-decreasing in that
    order and capped at 1; a test is significant at level alpha when its adjusted p is below it.

    >>> holm([0.01, 0.04, 0.03])
    (0.03, 0.06, 0.06)
    """
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        adjusted[i] = running
    return tuple(adjusted)


def paired_permutation_p(
    differences: np.ndarray, rng: np.random.Generator, flips: int = SIGN_FLIPS
) -> np.ndarray:
    """Two-sided p-values of mean(differences) = 0, one per column, by flipping task signs.

    ``differences`` is (tasks, ks): each task's PASS_A - PASS_B. Under the null that the two runs
    are exchangeable on every task, each task's difference is as likely negative as positive, so
    the observed |mean| is ranked among the |means| of ``flips`` random sign assignments (the
    same assignments for every k). Tasks are the unit, as in the bootstrap: episodes of one task
    are not independent. ``(1 + hits) / (1 + flips)`` keeps p above 0.

    >>> rng = np.random.default_rng(0)
    >>> float(paired_permutation_p(np.full((12, 1), 0.5), rng)[0]) < 0.001
    True
    >>> float(paired_permutation_p(np.zeros((12, 1)), rng)[0])
    1.0
    """
    tasks = differences.shape[0]
    observed = np.abs(differences.mean(axis=0))
    signs = rng.choice(np.array([-1.0, 1.0]), size=(flips, tasks))
    flipped = np.abs(signs @ differences / tasks)
    hits = (flipped >= observed - CROSSING_TOLERANCE).sum(axis=0)
    return (1.0 + hits) / (1.0 + flips)


def crossing_point(
    ks: Sequence[int], diff: Sequence[float], tolerance: float = CROSSING_TOLERANCE
) -> tuple[float | None, tuple[int, int] | None]:
    """Where the difference curve A - B first changes sign along k.

    Returns ``(k_star, (k_before, k_after))``: ``k_before`` is the last k of the grid with the
    sign the curve starts with, ``k_after`` the first with the opposite sign, and ``k_star`` the
    zero of the straight line through those two points on a log2 k axis. Differences within
    ``tolerance`` of 0 are ties and carry no sign. ``(None, None)`` when the sign never flips.

    >>> crossing_point([1, 2, 4, 8], [-0.1, -0.05, 0.05, 0.1])
    (2.8284271247461903, (2, 4))
    """
    values = [0.0 if abs(d) <= tolerance else float(d) for d in diff]
    start_sign = 0.0
    last_same = -1
    for j, value in enumerate(values):
        if value == 0.0:
            continue
        sign = math.copysign(1.0, value)
        if start_sign == 0.0:
            start_sign, last_same = sign, j
        elif sign == start_sign:
            last_same = j
        else:
            k_lo, k_hi = ks[last_same], ks[j]
            d_lo, d_hi = values[last_same], value
            x_lo, x_hi = math.log2(k_lo), math.log2(k_hi)
            x = x_lo + (0.0 - d_lo) * (x_hi - x_lo) / (d_hi - d_lo)
            return 2.0**x, (int(k_lo), int(k_hi))
    return None, None


def k_star_bootstrap_interval(
    diff_samples: np.ndarray, ks: Sequence[int], confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float | None, float | None]:
    """Percentile interval of k* over bootstrap resamples of the difference curve [resamples x k].

    A resample whose curves never cross counts as k* beyond the grid; an end beyond the grid is
    None (the curves may not cross within it). The bracket of :func:`crossing_point` is not a
    confidence interval: on simulated agents it held the true k* in 17-46% of runs, this interval
    in 94-96% (``benchmarks/bench_calibration.py``).
    """
    values = np.array([crossing_point(ks, row.tolist())[0] or math.inf for row in diff_samples])
    tail = (1.0 - confidence) / 2.0
    low = float(np.quantile(values, tail, method="lower"))
    high = float(np.quantile(values, 1.0 - tail, method="higher"))
    return (None if math.isinf(low) else low), (None if math.isinf(high) else high)
