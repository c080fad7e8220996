"""``leaderboard verify``: a submission checked against the installed package, every number recomputed.

A submission is a directory holding ``submission.json`` (see ``schemas/submission.schema.json``)
and the episode records of each env it covers. Nothing numeric is taken from it: the results are
rebuilt from the records, and a claimed results JSON, when present, must match them. The records
must come from the installed package (corpus hash, env id, env kwargs), fill the track's grid
exactly (the seeded task sample, every T, episodes 0..n-1 with n >= the track's n, no duplicate),
carry the published episode seeds (so no episode was replayed or dropped for a luckier one) and
hold at most :data:`~gather_envs.leaderboard.tracks.INFRA_ERROR_LIMIT` infrastructure errors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import gymnasium as gym

from gather_envs.corpus.frozen import DEFAULT_CORPUS, corpora_root, read_manifest
from gather_envs.envs.floor import chance_floor_of
from gather_envs.envs.registration import SYNTHETIC_ENVS
from gather_envs.errors import GatherError
from gather_envs.evaluation.seeds import episode_seed, sample_tasks
from gather_envs.leaderboard.schema import Path_, format_path, json_lines, line_of, load_schema, validate
from gather_envs.leaderboard.tracks import (
    INFRA_ERROR_LIMIT,
    PUBLISHED_BUDGETS,
    STATIC_BUDGETS,
    TRACKS,
    Track,
)
from gather_envs.metrics import Results, results_from_records
from gather_envs.records import AGENT_SETTINGS_KEY, EpisodeRecord
from gather_envs.runs import iter_records_with_locations

SUBMISSION_FILE = "submission.json"
STATIC_FAMILY = "static"
NUMBER_TOLERANCE = 1e-9
"""Largest difference between a claimed and a recomputed number that still counts as equal."""
MAX_BOOTSTRAP = 10_000
"""Most bootstrap resamples a claimed results file may ask verify to redo."""
SKIPPED_CLAIM_KEYS = ("diversity",)
"""Sections of ``gather-envs report --format json`` that are not part of the results schema."""


@dataclass(frozen=True)
class Problem:
    """One reason a submission is invalid, printed as ``file:line: rule: message``."""

    file: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class VerifiedEnv:
    """One env of a submission: its records (in file order) and the results recomputed from them."""

    env_id: str
    family: str
    records: tuple[EpisodeRecord, ...]
    results: Results


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying one submission directory."""

    directory: Path
    submission: dict[str, Any]
    problems: tuple[Problem, ...]
    envs: dict[str, VerifiedEnv] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def track(self) -> Track:
        return TRACKS[self.submission["track"]]


class LeaderboardError(GatherError):
    """A leaderboard input cannot be used (an invalid submission given to build, a bad directory)."""


def installed_corpus_hash() -> str:
    """Content hash of the frozen corpus the installed package's synthetic envs load."""
    return str(read_manifest(corpora_root() / DEFAULT_CORPUS)["content_hash"])


def expected_budgets(family: str) -> tuple[int, ...]:
    """The T grid of a family on the leaderboard (the static family is closed-book: T = 0)."""
    return STATIC_BUDGETS if family == STATIC_FAMILY else PUBLISHED_BUDGETS


def expected_tasks(env_id: str, track: Track) -> tuple[str, ...]:
    """The track's seeded sample of the env's test tasks (what every entry must play)."""
    env = gym.make(env_id)
    try:
        split_ids = [task.task_id for task in env.unwrapped.tasks]  # type: ignore[attr-defined]
    finally:
        env.close()
    return sample_tasks(split_ids, min(track.tasks, len(split_ids)), track.seed)


class _Problems:
    """Collects problems, one line per (file, rule): the first place, then how many more."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self._grouped: dict[tuple[str, str], list[Any]] = {}

    def add(self, file: str | Path, line: int, rule: str, message: str) -> None:
        self.items.append(Problem(str(file), line, rule, message))

    def group(self, file: str | Path, line: int, rule: str, message: str) -> None:
        """A problem that may repeat on many lines of one file: reported once, with a count."""
        key = (str(file), rule)
        if key in self._grouped:
            self._grouped[key][1] += 1
            return
        problem = [Problem(str(file), line, rule, message), 0]
        self._grouped[key] = problem
        self.items.append(problem[0])

    def result(self) -> tuple[Problem, ...]:
        out = []
        for problem in self.items:
            extra = self._grouped.get((problem.file, problem.rule))
            if extra is not None and extra[0] is problem and extra[1]:
                problem = Problem(
                    problem.file, problem.line, problem.rule, f"{problem.message} (and {extra[1]} more lines)"
                )
            out.append(problem)
        return tuple(out)


def verify_submission(directory: str | Path) -> Verification:
    """Verify one submission directory; the problems are empty when it is valid."""
    directory = Path(directory)
    problems = _Problems()
    path = directory / SUBMISSION_FILE
    try:
        text = path.read_text(encoding="utf-8")
        submission = json.loads(text)
    except FileNotFoundError:
        problems.add(path, 1, "missing-file", f"no {SUBMISSION_FILE}; a submission is a directory with one")
        return Verification(directory, {}, problems.result())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.add(path, getattr(exc, "lineno", 1), "json", f"not readable JSON: {exc}")
        return Verification(directory, {}, problems.result())
    lines = json_lines(text)
    for where, message in validate(submission, load_schema("submission")):
        problems.add(path, line_of(lines, where), "schema", f"{format_path(where)} {message}")
    if problems.items:
        return Verification(directory, submission, problems.result())
    track = TRACKS[submission["track"]]
    envs: dict[str, VerifiedEnv] = {}
    for env_id, entry in submission["envs"].items():
        verified = _verify_env(directory, submission, env_id, entry, track, lines, problems)
        if verified is not None:
            envs[env_id] = verified
    result = problems.result()
    return Verification(directory, submission, result, envs if not result else {})


def _verify_env(
    directory: Path,
    submission: Mapping[str, Any],
    env_id: str,
    entry: Mapping[str, Any],
    track: Track,
    lines: dict[Path_, int],
    problems: _Problems,
) -> VerifiedEnv | None:
    """Check one env's records and claim; None when they cannot be used."""
    sub_path = directory / SUBMISSION_FILE
    here = line_of(lines, ("envs", env_id))
    before = len(problems.items)
    if env_id not in SYNTHETIC_ENVS:
        problems.add(
            sub_path, here, "env-version",
            f"{env_id!r} is not a leaderboard env of the installed gather-envs (ids: {', '.join(sorted(SYNTHETIC_ENVS))})",
        )  # fmt: skip
        return None
    located: list[tuple[EpisodeRecord, Path, int]] = []
    for index, name in enumerate(entry["records"]):
        file = directory / name
        if not file.is_file():
            problems.add(
                sub_path,
                line_of(lines, ("envs", env_id, "records", index)),
                "missing-file",
                f"no records file {name}",
            )
            return None
        try:
            located.extend((record, file, where.line) for record, where in iter_records_with_locations(file))
        except GatherError as exc:
            problems.add(file, 1, "records", str(exc))
            return None
    if not located:
        problems.add(sub_path, here, "missing-cell", f"{env_id}: the records files hold no episode")
        return None
    family = SYNTHETIC_ENVS[env_id]["family"]
    _check_records(env_id, family, submission, track, located, problems)
    _check_grid(env_id, family, track, located, sub_path, here, problems)
    if len(problems.items) > before:
        return None
    records = [record for record, _, _ in located]
    results = results_from_records(records, chance_floor=chance_floor_of(records))
    if "results" in entry:
        _check_claim(directory / entry["results"], records, results, problems)
    return VerifiedEnv(env_id, family, tuple(records), results)


def _check_records(
    env_id: str,
    family: str,
    submission: Mapping[str, Any],
    track: Track,
    located: Sequence[tuple[EpisodeRecord, Path, int]],
    problems: _Problems,
) -> None:
    """Per-record rules: corpus, env, agent, settings, budget grid and the published seed."""
    corpus = installed_corpus_hash()
    kwargs = dict(gym.spec(env_id).kwargs)
    agent = submission["agent"]
    budgets = expected_budgets(family)
    for record, file, line in located:
        if record.corpus_hash != corpus:
            problems.group(
                file, line, "corpus-hash",
                f"corpus hash {record.corpus_hash[:16]}... is not the installed corpus {corpus[:16]}...; "
                "rerun on the corpus this gather-envs ships",
            )  # fmt: skip
        if record.env_id != env_id:
            problems.group(
                file, line, "env-version", f"record of {record.env_id!r} in the records of {env_id!r}"
            )
        if record.env_kwargs != kwargs:
            problems.group(
                file, line, "env-kwargs",
                f"env kwargs {json.dumps(record.env_kwargs, sort_keys=True)} differ from the registered "
                f"{json.dumps(kwargs, sort_keys=True)}; leaderboard runs use the registered env unchanged",
            )  # fmt: skip
        if record.agent_id != agent["id"]:
            problems.group(
                file, line, "agent", f"agent id {record.agent_id!r}, but submission.json says {agent['id']!r}"
            )
        settings = record.extra.get(AGENT_SETTINGS_KEY, {})
        differing = sorted(
            k for k, v in agent["settings"].items() if not isinstance(settings, dict) or settings.get(k) != v
        )
        if differing:
            problems.group(
                file, line, "agent-settings",
                f"agent settings {', '.join(differing)} differ from submission.json's agent.settings",
            )  # fmt: skip
        if record.budget not in budgets:
            problems.group(
                file, line, "grid", f"T={record.budget} is not in the published grid {list(budgets)}"
            )
        if record.episode_index < 0:
            problems.group(file, line, "seed", "record has no episode index; run it with `gather-envs eval`")
            continue
        wanted = episode_seed(track.seed, record.task_id, record.budget, record.episode_index)
        if record.seed != wanted:
            problems.group(
                file, line, "seed",
                f"task {record.task_id!r}, T={record.budget}, episode {record.episode_index} has seed "
                f"{record.seed}, not the published episode seed {wanted} (base seed {track.seed})",
            )  # fmt: skip
        if record.tool_calls > record.budget:
            problems.group(
                file, line, "record", f"{record.tool_calls} tool calls exceed the budget T={record.budget}"
            )


def _check_grid(
    env_id: str,
    family: str,
    track: Track,
    located: Sequence[tuple[EpisodeRecord, Path, int]],
    sub_path: Path,
    here: int,
    problems: _Problems,
) -> None:
    """Grid rules: the task sample, n, no duplicate and no missing cell, the infra-error share."""
    tasks = expected_tasks(env_id, track)
    wanted_tasks = set(tasks)
    seen: dict[tuple[str, int, int], tuple[Path, int]] = {}
    for record, file, line in located:
        if record.task_id not in wanted_tasks:
            problems.group(
                file, line, "tasks",
                f"task {record.task_id!r} is not in the {track.name} track's sample of {len(tasks)} tasks (seed {track.seed})",
            )  # fmt: skip
        cell = (record.task_id, record.budget, record.episode_index)
        if cell in seen:
            first_file, first_line = seen[cell]
            problems.group(
                file, line, "duplicate",
                f"second record for task {cell[0]!r}, T={cell[1]}, episode {cell[2]} (first at "
                f"{first_file}:{first_line}); keep one record per cell",
            )  # fmt: skip
        else:
            seen[cell] = (file, line)
    n = 1 + max(record.episode_index for record, _, _ in located)
    if n < track.n:
        problems.add(
            sub_path, here, "n",
            f"{env_id}: {n} episodes per (task, T), the {track.name} track needs n >= {track.n}"
            + ("" if track.name == "quick" else "; or submit to the quick track"),
        )  # fmt: skip
    missing = [
        (task, budget, i)
        for task in tasks
        for budget in expected_budgets(family)
        for i in range(n)
        if (task, budget, i) not in seen
    ]
    if missing:
        task, budget, i = missing[0]
        problems.add(
            sub_path, here, "missing-cell",
            f"{env_id}: {len(missing)} of {len(tasks) * len(expected_budgets(family)) * n} cells have no record, "
            f"first task {task!r}, T={budget}, episode {i}; run the same `gather-envs eval` again to fill them",
        )  # fmt: skip
    infra = sum(record.is_infra_error for record, _, _ in located)
    if infra > INFRA_ERROR_LIMIT * len(located):
        problems.add(
            sub_path, here, "infra-errors",
            f"{env_id}: {infra} of {len(located)} records are infrastructure errors, over the "
            f"{INFRA_ERROR_LIMIT:.0%} limit; rerun the same `gather-envs eval` to retry them",
        )  # fmt: skip


def _check_claim(path: Path, records: Sequence[EpisodeRecord], results: Results, problems: _Problems) -> None:
    """A claimed results JSON must follow the schema and equal the numbers the records give."""
    try:
        text = path.read_text(encoding="utf-8")
        claim = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.add(path, getattr(exc, "lineno", 1), "json", f"claimed results are not readable JSON: {exc}")
        return
    lines = json_lines(text)
    violations = list(validate(claim, load_schema("results")))
    for where, message in violations:
        problems.add(path, line_of(lines, where), "schema", f"{format_path(where)} {message}")
    if violations:
        return
    bootstrap = claim["bootstrap"]
    if bootstrap > MAX_BOOTSTRAP:
        problems.add(
            path, line_of(lines, ("bootstrap",)), "claimed-number", f"bootstrap {bootstrap} > {MAX_BOOTSTRAP}"
        )
        return
    if (bootstrap, claim["seed"], claim["confidence"]) != (
        results.bootstrap,
        results.seed,
        results.confidence,
    ):
        results = results_from_records(
            records,
            bootstrap,
            claim["seed"],
            confidence=claim["confidence"],
            chance_floor=chance_floor_of(records),
        )
    truth = results.to_json()
    for where, claimed, actual in _differences(claim, truth, ()):
        if where and where[0] in SKIPPED_CLAIM_KEYS:
            continue
        problems.group(
            path, line_of(lines, where), "claimed-number",
            f"{format_path(where)} is {json.dumps(claimed)[:40]} but the records give {json.dumps(actual)[:40]}",
        )  # fmt: skip


def _differences(claim: Any, truth: Any, path: Path_) -> Iterable[tuple[Path_, Any, Any]]:
    """Where ``claim`` differs from ``truth`` (numbers within :data:`NUMBER_TOLERANCE` are equal)."""
    if isinstance(truth, dict) and isinstance(claim, dict):
        for key in sorted(set(truth) | set(claim)):
            if key in SKIPPED_CLAIM_KEYS and not path:
                continue
            yield from _differences(claim.get(key), truth.get(key), (*path, key))
    elif isinstance(truth, list) and isinstance(claim, list) and len(truth) == len(claim):
        for i, (a, b) in enumerate(zip(claim, truth)):
            yield from _differences(a, b, (*path, i))
    elif _number(claim) and _number(truth):
        if not math.isclose(float(claim), float(truth), rel_tol=0.0, abs_tol=NUMBER_TOLERANCE):
            yield path, claim, truth
    elif claim != truth:
        yield path, claim, truth


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
