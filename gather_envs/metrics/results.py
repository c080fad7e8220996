"""The results JSON: what a run measured, in a versioned form a leaderboard can rank.

Layout (budgets as string keys)::

    {"schema_version": 1, "env_id": "...", "env_version": 0, "env_kwargs": {...},
     "corpus_hash": "...", "agent_id": "...", "agent_settings": {...},
     "n": 64, "num_tasks": 100, "bootstrap": 1000, "seed": 0, "confidence": 0.95,
     "infra_errors_total": 0,
     "budgets": [0, 1, 2, 3, 5], "ks": [1, 2, 4, ...],
     "table": [{"T": 5, "k": 4, "pass": 0.63, "ci_low": 0.58, "ci_high": 0.68}, ...],
     "boundary": {"5": 81, ...}, "boundary_ids": {"5": ["t1", ...], ...},
     "t_star": 2, "t_star_by_k": {"1": 3, ...},
     "tasks_per_budget": {...}, "n_min": {...}, "n_max": {...},
     "infra_errors": {...}, "infra_only_tasks": {...},
     "chance_floor": {"1": 0.01, ...},
     "task_families": ["bridge"], "chance_floor_by_family": {"bridge": {"1": 0.01, ...}},
     "families": {"bridge": {<the same table section keys>}, ...}}

``families`` is empty unless the records mix task families. ``chance_floor`` (in every table
section) is PASS@(k,0) of a question-only guesser on those tasks at the table's k, and
``chance_floor_by_family`` the corpus's floor per family; both are empty when the corpus has none
(see :mod:`gather_envs.metrics.floor`). ``reward_kind`` (the env's declared training reward,
``"f1, em"`` when the records mix kinds) is present only when it is not ``em``: PASS@(k,T) counts
exact-match success whatever the reward, so results of em runs read as before.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gather_envs.errors import ConfigError, RecordsError
from gather_envs.files import atomic_file
from gather_envs.json_files import loads_bounded
from gather_envs.metrics.bootstrap import DEFAULT_BOOTSTRAP, DEFAULT_CONFIDENCE, DEFAULT_SEED
from gather_envs.metrics.floor import ChanceFloor, at_ks, floor_for_families, parse_chance_floor
from gather_envs.metrics.passk import PassRow, PassTable, count_episodes, pass_table, split_by_family
from gather_envs.records import AGENT_SETTINGS_KEY, IN_PROCESS_RETRIEVER, REWARD_KIND_EM, EpisodeRecord

RESULTS_SCHEMA_VERSION = 1

_ENV_VERSION = re.compile(r"-v(\d+)$")


def env_version(env_id: str) -> int | None:
    """The version suffix of a Gymnasium-style id, None if it has none.

    >>> env_version("gather/Bridge-v2")
    2
    """
    match = _ENV_VERSION.search(env_id)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Results:
    """PASS@(k,T) results of one agent on one env and corpus, over all tasks and per family."""

    env_id: str
    env_version: int | None
    env_kwargs: dict[str, Any]
    corpus_hash: str
    agent_id: str
    agent_settings: dict[str, Any]
    n: int
    num_tasks: int
    infra_errors_total: int
    bootstrap: int
    seed: int
    confidence: float
    overall: PassTable
    families: dict[str, PassTable] = field(default_factory=dict)
    task_families: tuple[str, ...] = ()
    chance_floor: dict[str, dict[int, float]] = field(default_factory=dict)
    reward_kind: str = REWARD_KIND_EM
    schema_version: int = RESULTS_SCHEMA_VERSION
    retriever: str | None = None
    """The remote retriever the run searched with; None for the env's own BM25."""

    @property
    def budgets(self) -> tuple[int, ...]:
        return self.overall.budgets

    @property
    def table(self) -> tuple[PassRow, ...]:
        """The rows of the overall table."""
        return self.overall.rows

    def to_json(self) -> dict[str, Any]:
        """The results as a JSON-serializable dict (see the module docstring for the layout)."""
        data: dict[str, Any] = {
            "schema_version": self.schema_version,
            "env_id": self.env_id,
            "env_version": self.env_version,
            "env_kwargs": dict(self.env_kwargs),
            "corpus_hash": self.corpus_hash,
            "agent_id": self.agent_id,
            "agent_settings": dict(self.agent_settings),
            "n": self.n,
            "num_tasks": self.num_tasks,
            "infra_errors_total": self.infra_errors_total,
            "bootstrap": self.bootstrap,
            "seed": self.seed,
            "confidence": self.confidence,
        }
        data.update(self.overall.to_json())
        data["task_families"] = list(self.task_families)
        data["chance_floor_by_family"] = {
            family: {str(k): v for k, v in per_k.items()} for family, per_k in self.chance_floor.items()
        }
        data["families"] = {name: table.to_json() for name, table in self.families.items()}
        if self.reward_kind != REWARD_KIND_EM:
            data["reward_kind"] = self.reward_kind
        if self.retriever is not None:
            data["retriever"] = self.retriever
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Results:
        """Inverse of :meth:`to_json`; RecordsError naming what is missing or malformed."""
        if not isinstance(data, Mapping):
            raise RecordsError(f"results JSON must be an object, got {type(data).__name__}")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise RecordsError("results JSON has no integer 'schema_version'")
        if version > RESULTS_SCHEMA_VERSION:
            raise RecordsError(
                f"results schema_version {version} is newer than this gather-envs supports "
                f"({RESULTS_SCHEMA_VERSION}); upgrade gather-envs to read it"
            )
        try:
            settings = {
                "bootstrap": int(data["bootstrap"]),
                "seed": int(data["seed"]),
                "confidence": float(data["confidence"]),
            }
            return cls(
                schema_version=version,
                env_id=str(data["env_id"]),
                env_version=None if data["env_version"] is None else int(data["env_version"]),
                env_kwargs=dict(data["env_kwargs"]),
                corpus_hash=str(data["corpus_hash"]),
                agent_id=str(data["agent_id"]),
                agent_settings=dict(data["agent_settings"]),
                n=int(data["n"]),
                num_tasks=int(data["num_tasks"]),
                infra_errors_total=int(data["infra_errors_total"]),
                overall=PassTable.from_json(data, **settings),
                families={
                    str(name): PassTable.from_json(section, **settings)
                    for name, section in data.get("families", {}).items()
                },
                task_families=tuple(str(f) for f in data.get("task_families", ())),
                chance_floor={
                    str(family): {int(k): float(v) for k, v in per_k.items()}
                    for family, per_k in data.get("chance_floor_by_family", {}).items()
                },
                reward_kind=str(data.get("reward_kind", REWARD_KIND_EM)),
                retriever=None if data.get("retriever") is None else str(data["retriever"]),
                **settings,
            )
        except KeyError as exc:
            raise RecordsError(f"results JSON is missing field {exc.args[0]!r}") from exc
        except (TypeError, ValueError, AttributeError) as exc:
            raise RecordsError(f"results JSON has a malformed field: {exc}") from exc

    def dumps(self, *, indent: int | None = 2) -> str:
        """The results as JSON text."""
        return json.dumps(self.to_json(), indent=indent, ensure_ascii=False, allow_nan=False)


def save_results(results: Results, path: str | os.PathLike[str]) -> Path:
    """Write the results JSON to ``path`` atomically (parents created); returns the path."""
    path = Path(path)
    with atomic_file(path) as handle:
        handle.write((results.dumps() + "\n").encode("utf-8"))
    return path


def load_results(path: str | os.PathLike[str]) -> Results:
    """Read a results JSON file written by :func:`save_results`."""
    try:
        data = loads_bounded(Path(path).read_bytes())  # NotJson is a ValueError
    except (OSError, ValueError) as exc:
        raise RecordsError(f"cannot read results file {path}: {exc}") from exc
    try:
        return Results.from_json(data)
    except RecordsError as exc:
        raise RecordsError(f"{path}: {exc}") from exc


def _only(values: Iterable[str], what: str) -> str:
    distinct = sorted(set(values))
    if len(distinct) > 1:
        raise RecordsError(
            f"records mix {len(distinct)} {what}s ({', '.join(distinct)}); report each run separately"
        )
    return distinct[0]


def _common_items(dicts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The key/value pairs every dict shares (values compared as canonical JSON)."""
    distinct: dict[str, Mapping[str, Any]] = {}
    for d in dicts:
        distinct.setdefault(json.dumps(d, sort_keys=True, default=repr), d)
    if not distinct:
        return {}
    first, *others = distinct.values()
    canon = {key: json.dumps(value, sort_keys=True, default=repr) for key, value in first.items()}
    return {
        key: value
        for key, value in first.items()
        if all(
            key in other and json.dumps(other[key], sort_keys=True, default=repr) == canon[key]
            for other in others
        )
    }


def results_from_records(
    records: Sequence[EpisodeRecord],
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    ks: Sequence[int] | None = None,
    chance_floor: ChanceFloor | None = None,
) -> Results:
    """Results of one run: the overall table, per-family tables when families mix, metadata.

    The records must share one env id, corpus hash and agent id, and hold one record per
    (task, T, episode) cell (RecordsError otherwise). ``env_kwargs`` and ``agent_settings`` (from
    ``extra["agent_settings"]``) keep the items every record agrees on, so per-budget kwargs such
    as the tool budget drop out. ``chance_floor`` (family -> k -> PASS@(k,0), e.g. from
    :func:`~gather_envs.envs.floor.chance_floor_of`) puts the floor beside every table.
    """
    if not records:
        raise RecordsError("no episode records to build results from")
    env_id = _only((r.env_id for r in records), "env id")
    corpus_hash = _only((r.corpus_hash for r in records), "corpus hash")
    retriever = _only((r.retriever or IN_PROCESS_RETRIEVER for r in records), "retriever")
    agent_id = _only((r.agent_id for r in records), "agent id")

    def table(group: Sequence[EpisodeRecord]) -> PassTable:
        return pass_table(count_episodes(group), ks=ks, bootstrap=bootstrap, seed=seed, confidence=confidence)

    by_family = split_by_family(records)
    tasks_per_family = {
        name: len({r.task_id for r in group if not r.is_infra_error}) for name, group in by_family.items()
    }
    floor = (
        {} if chance_floor is None else parse_chance_floor(chance_floor, "results_from_records", ConfigError)
    )
    overall = table(records)
    overall = replace(overall, floor=at_ks(floor_for_families(floor, tasks_per_family), overall.ks))
    families = {}
    if len(by_family) > 1:
        for name, group in by_family.items():
            family_table = table(group)
            families[name] = replace(family_table, floor=at_ks(floor.get(name, {}), family_table.ks))
    settings = [
        r.extra[AGENT_SETTINGS_KEY] for r in records if isinstance(r.extra.get(AGENT_SETTINGS_KEY), Mapping)
    ]
    return Results(
        env_id=env_id,
        env_version=env_version(env_id),
        env_kwargs=_common_items(r.env_kwargs for r in records),
        corpus_hash=corpus_hash,
        retriever=None if retriever == IN_PROCESS_RETRIEVER else retriever,
        agent_id=agent_id,
        agent_settings=_common_items(settings),
        n=max(overall.n_max.values(), default=0),
        num_tasks=len({r.task_id for r in records if not r.is_infra_error}),
        infra_errors_total=sum(overall.infra_errors.values()),
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
        overall=overall,
        families=families,
        task_families=tuple(by_family),
        chance_floor={name: dict(floor[name]) for name in by_family if name in floor},
        reward_kind=", ".join(sorted({r.reward_kind for r in records})),
    )
