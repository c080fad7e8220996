"""Deterministic episode seeds and task samples, the same on every machine and Python process.

Episode seed of ``(base seed, task id, budget T, episode index i)``: the first 8 bytes of the
SHA-256 of the canonical UTF-8 string ``"gather-envs/episode/v1|<base>|<task id>|<T>|<i>"``, read as
a big-endian integer and shifted right by one bit (a non-negative 63-bit int, so it fits a signed
64-bit seed). The same seed goes to ``env.reset(seed=...)`` and ``agent.start(seed)``. Nothing
depends on ``hash()``, ``PYTHONHASHSEED`` or the order episodes run in, so a resumed or concurrent
run plays every episode exactly as an uninterrupted serial run would.

Task samples rank the split's task ids by the same kind of hash (``"gather-envs/task/v1|<base>|<id>"``)
and keep the first N, in split order: a sample of 10 is a subset of the sample of 20 with the same
base seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from gather_envs.errors import ConfigError

EPISODE_SEED_SCHEME = "gather-envs/episode/v1"
"""Prefix of the hashed string; bump the version if the scheme ever changes."""
TASK_SAMPLE_SCHEME = "gather-envs/task/v1"
SEED_BITS = 63
_DIGEST_BYTES = 8


def _hash63(text: str) -> int:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:_DIGEST_BYTES], "big") >> (8 * _DIGEST_BYTES - SEED_BITS)


def _check_int(name: str, value: object, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def episode_seed(base_seed: int, task_id: str, budget: int, episode_index: int) -> int:
    """The seed of episode ``i`` of a task at budget T: a 63-bit int from SHA-256.

    >>> episode_seed(0, "bridge-00001", 5, 0)
    1277002558039588991
    >>> episode_seed(0, "bridge-00001", 5, 1) != episode_seed(0, "bridge-00001", 5, 0)
    True
    """
    _check_int("base seed", base_seed)
    _check_int("budget", budget, 0)
    _check_int("episode index", episode_index, 0)
    if not isinstance(task_id, str) or not task_id:
        raise ConfigError(f"task id must be a non-empty str, got {task_id!r}")
    return _hash63(f"{EPISODE_SEED_SCHEME}|{base_seed}|{task_id}|{budget}|{episode_index}")


def sample_tasks(task_ids: Sequence[str], count: int, base_seed: int) -> tuple[str, ...]:
    """``count`` task ids drawn without replacement by a seeded hash rank, kept in the input order.

    >>> sample_tasks(["a", "b", "c", "d"], 2, 0) == sample_tasks(["d", "c", "b", "a"], 2, 0)[::-1]
    True
    """
    _check_int("base seed", base_seed)
    _check_int("number of tasks", count, 1)
    if len(set(task_ids)) != len(task_ids):
        raise ConfigError("task ids must be distinct to sample from them")
    if count > len(task_ids):
        raise ConfigError(f"cannot sample {count} tasks: the split has only {len(task_ids)}")
    ranked = sorted(task_ids, key=lambda t: (_hash63(f"{TASK_SAMPLE_SCHEME}|{base_seed}|{t}"), t))
    chosen = set(ranked[:count])
    return tuple(t for t in task_ids if t in chosen)
