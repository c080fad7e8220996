"""Run identity: what every record of one run shares, and the check that a record belongs to it.

A resumed run must be the same run: the same env id and kwargs, corpus, agent and settings, and
base seed. A file of another run is refused with what differs and what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gather_envs.errors import ConfigError
from gather_envs.records.episodes import (
    AGENT_SETTINGS_KEY,
    EPISODE_INDEX_UNKNOWN,
    IN_PROCESS_RETRIEVER,
    EpisodeRecord,
)

RESUME_HINT = "resume with the original settings, or pass another --out (or delete the file) to start afresh"


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys: equal settings give equal strings."""
    return json.dumps(value, sort_keys=True, default=repr)


@dataclass(frozen=True)
class RunIdentity:
    """What every record of one run shares."""

    env_id: str
    env_kwargs: dict[str, Any]
    corpus_hash: str
    agent_id: str
    agent_settings: dict[str, Any]
    retriever: str | None = None
    """The remote retriever's identity, None for the env's own BM25 (see ``EpisodeRecord.retriever``)."""

    def check(self, record: EpisodeRecord, expected_seed: int, base_seed: int, place: str) -> None:
        """ConfigError unless ``record`` (read at ``place``, ``file:line``) belongs to this run."""
        hint = RESUME_HINT
        if record.env_id != self.env_id:
            raise ConfigError(f"{place} holds a run of env {record.env_id!r}, not {self.env_id!r}; {hint}")
        if record.corpus_hash != self.corpus_hash:
            raise ConfigError(
                f"{place} holds a run on corpus {record.corpus_hash[:12]}…, not {self.corpus_hash[:12]}…; {hint}"
            )
        if record.retriever != self.retriever:
            raise ConfigError(
                f"{place} holds a run searched by {record.retriever or IN_PROCESS_RETRIEVER}, not "
                f"{self.retriever or IN_PROCESS_RETRIEVER}; {hint}"
            )
        if canonical_json(record.env_kwargs) != canonical_json(self.env_kwargs):
            raise ConfigError(
                f"{place} holds a run with env kwargs {canonical_json(record.env_kwargs)}, not "
                f"{canonical_json(self.env_kwargs)}; {hint}"
            )
        if record.agent_id != self.agent_id:
            raise ConfigError(f"{place} holds a run of agent {record.agent_id!r}, not {self.agent_id!r}; {hint}")
        settings = record.extra.get(AGENT_SETTINGS_KEY, {})
        if canonical_json(settings) != canonical_json(self.agent_settings):
            raise ConfigError(
                f"{place} holds a run of agent {self.agent_id!r} with settings {canonical_json(settings)}, not "
                f"{canonical_json(self.agent_settings)}; {hint}"
            )
        if record.episode_index == EPISODE_INDEX_UNKNOWN:
            raise ConfigError(
                f"{place} holds records without an episode index (not written by the evaluation runner); "
                "pass another --out"
            )
        if record.seed != expected_seed:
            raise ConfigError(f"{place} was recorded with a different base seed than {base_seed}; {hint}")
