"""Text spaces sized and charactered for what an env emits and accepts."""

from __future__ import annotations

import string
from collections.abc import Iterable

from gymnasium.spaces import Text
from gymnasium.vector.utils.shared_memory import create_shared_memory

from gather_envs.errors import ConfigError

# Printable ASCII without the vertical tab / form feed that ``string.printable`` includes.
BASE_CHARSET = frozenset(string.ascii_letters + string.digits + string.punctuation + " \n\t…")
MAX_ACTION_LENGTH = 4096
MAX_OBSERVATION_LENGTH = 65536


def charset_for(texts: Iterable[str]) -> frozenset[str]:
    """Every character of ``texts`` plus printable ASCII, so observations always fit."""
    chars = set(BASE_CHARSET)
    for text in texts:
        chars.update(text)
    return frozenset(chars)


class GatherText(Text):
    """A Text space that refuses Gymnasium's shared memory, which corrupts text observations.

    ``AsyncVectorEnv``'s default ``shared_memory=True`` returns garbage for ``Text`` spaces
    (Gymnasium 1.x), so creating shared memory for this space raises a clear error instead.
    """


@create_shared_memory.register(GatherText)
def _refuse_shared_memory(space: GatherText, n: int = 1, ctx=None):
    raise ConfigError(
        "gather-envs text observations cannot use shared memory: create the vector env with "
        "shared_memory=False, e.g. gym.make_vec(id, n, vectorization_mode='async', "
        "vector_kwargs={'shared_memory': False})"
    )


def observation_space(charset: frozenset[str]) -> Text:
    return GatherText(max_length=MAX_OBSERVATION_LENGTH, min_length=0, charset="".join(sorted(charset)))


def action_space() -> Text:
    return Text(max_length=MAX_ACTION_LENGTH, min_length=0, charset="".join(sorted(BASE_CHARSET)))


def fit(text: str, charset: frozenset[str]) -> str:
    """Replace characters outside ``charset`` with '?' and cut to the observation length."""
    if not charset.issuperset(text):
        text = "".join(ch if ch in charset else "?" for ch in text)
    return text[:MAX_OBSERVATION_LENGTH]
