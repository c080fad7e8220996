"""Registered ids for your own data: ``Gather-Custom-v0`` (JSON-lines files) and ``Gather-PhantomWiki-v0``.

Like the dataset ids, each takes paths as flat kwargs and turns them into GatherEnv's
``dataset={...}``, so the spec survives JSON round trips and pickling.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

from gather_envs.envs.registration import ORDER_ENFORCE
from gather_envs.errors import ConfigError, DataFileError

if TYPE_CHECKING:
    from gather_envs.corpus.corpus import Corpus
    from gather_envs.envs.gather_env import GatherEnv

CUSTOM_ENV_ID = "Gather-Custom-v0"
PHANTOMWIKI_ENV_ID = "Gather-PhantomWiki-v0"
CUSTOM_ENTRY_POINT = "gather_envs.envs.custom_registration:make_custom_env"
PHANTOMWIKI_ENTRY_POINT = "gather_envs.envs.custom_registration:make_phantomwiki_env"
CUSTOM_IDS = (CUSTOM_ENV_ID, PHANTOMWIKI_ENV_ID)
NEEDS = {
    CUSTOM_ENV_ID: "documents=.../documents.jsonl tasks=.../tasks.jsonl (docs/custom.md)",
    PHANTOMWIKI_ENV_ID: "path=DIR holding PhantomWiki's articles.json and questions.json",
}
PHANTOMWIKI_DEFAULT_FAMILY = "bridge"
_OWN = ("dataset", "corpus", "world")


def _absolute(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def _refuse_sources(env_id: str, env_kwargs: dict[str, Any]) -> None:
    given = [key for key in _OWN if key in env_kwargs]
    if given:
        raise ConfigError(f"{env_id} reads its corpus from its path kwargs; drop {', '.join(given)}=")


def _only_family(corpus: Corpus, split: str, env_id: str) -> str:
    """The one family of a split's tasks; ConfigError listing them when there are several."""
    counts = Counter(task.family for task in corpus.tasks(split))
    if len(counts) != 1:
        listed = ", ".join(f"{family}={n}" for family, n in sorted(counts.items()))
        raise ConfigError(f"{env_id}: split {split!r} has the families {listed}; pass family=")
    return next(iter(counts))


def _check_scope(corpus: Corpus, split: str, family: str, scope: str, env_id: str) -> None:
    """The distractor scope needs every task's ``context_doc_ids``."""
    if scope != "distractor":
        return
    bare = [t.task_id for t in corpus.tasks(split, family) if not t.context_doc_ids]
    if bare:
        raise ConfigError(
            f"{env_id}: scope='distractor' searches each task's context_doc_ids, but {len(bare)} "
            f"{family!r} task(s) have none (first: {bare[0]!r}); give them, or use scope='world'"
        )


def make_custom_env(
    documents: str | os.PathLike[str] | None = None,
    tasks: str | os.PathLike[str] | None = None,
    *,
    family: str | None = None,
    split: str = "test",
    scope: str = "world",
    **env_kwargs: Any,
) -> GatherEnv:
    """A GatherEnv on your documents.jsonl and tasks.jsonl; ``family`` defaults to the split's only one."""
    from gather_envs.envs.gather_env import GatherEnv
    from gather_envs.envs.sources import CUSTOM_FORMAT, resolve_corpus

    if documents is None or tasks is None:
        raise DataFileError(f"{CUSTOM_ENV_ID} needs {NEEDS[CUSTOM_ENV_ID]}")
    _refuse_sources(CUSTOM_ENV_ID, env_kwargs)
    dataset = {"format": CUSTOM_FORMAT, "documents": _absolute(documents), "tasks": _absolute(tasks)}
    corpus = resolve_corpus(dataset=dataset)
    if family is None:
        family = _only_family(corpus, split, CUSTOM_ENV_ID)
    _check_scope(corpus, split, family, scope, CUSTOM_ENV_ID)
    return GatherEnv(family=family, split=split, scope=scope, dataset=dataset, **env_kwargs)


def make_phantomwiki_env(
    path: str | os.PathLike[str] | None = None,
    *,
    family: str = PHANTOMWIKI_DEFAULT_FAMILY,
    scope: str = "world",
    **env_kwargs: Any,
) -> GatherEnv:
    """A GatherEnv on a PhantomWiki output directory: multi-hop (``bridge``) questions by default."""
    from gather_envs.envs.gather_env import GatherEnv
    from gather_envs.envs.sources import PHANTOMWIKI_FORMAT, resolve_corpus

    if path is None:
        raise DataFileError(f"{PHANTOMWIKI_ENV_ID} needs {NEEDS[PHANTOMWIKI_ENV_ID]}")
    _refuse_sources(PHANTOMWIKI_ENV_ID, env_kwargs)
    dataset = {"format": PHANTOMWIKI_FORMAT, "path": _absolute(path)}
    corpus = resolve_corpus(dataset=dataset)
    _check_scope(corpus, "test", family, scope, PHANTOMWIKI_ENV_ID)
    return GatherEnv(family=family, scope=scope, dataset=dataset, **env_kwargs)


def register_custom_envs() -> None:
    """Register both ids once; safe to call again."""
    for env_id, entry_point in (
        (CUSTOM_ENV_ID, CUSTOM_ENTRY_POINT),
        (PHANTOMWIKI_ENV_ID, PHANTOMWIKI_ENTRY_POINT),
    ):
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, order_enforce=ORDER_ENFORCE)
