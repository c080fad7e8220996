"""One Gather episode driven by a trainer: a dataset row resets it, text actions step it, a record ends it.

Every adapter goes through :class:`EpisodeDriver`, so the rules (reward, budget T, invalid-action
limit, termination) are the env's own and nothing is implemented twice. The driver wraps the env
in :class:`~gather_envs.wrappers.record.RecordPassAtKT`, so each finished training episode becomes
the same :class:`~gather_envs.records.EpisodeRecord` line that ``gather-envs eval`` writes.

A trainer can stop a rollout before the env ends it (length limit, no further tool call, turn
limit). :meth:`EpisodeDriver.cut` then ends the episode as ``truncated`` with reward 0 and
``termination="truncated"``, the way an outer time limit would, so such rollouts are recorded too.

A remote retriever that fails (:class:`~gather_envs.errors.RetrieverError`, after its client's own
connection retries) voids the episode: the error reaches the trainer unchanged, nothing is recorded
and no reward is given (a made-up 0 would teach the policy that its search was wrong), and the
driver is ready for its next ``reset``. The trainer's step fails; resume it from its checkpoint.

Dataset rows name their episode with these keys, at the top level or inside ``extra_info`` (verl,
SkyRL): ``env_id``, ``env_kwargs`` (a dict or its JSON string), ``task_id`` or ``task_index``,
``seed`` and ``max_tool_calls``. Other keys are ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym

import gather_envs  # noqa: F401  (registers the env ids)
from gather_envs.errors import ConfigError, RetrieverError
from gather_envs.json_files import NotJson, loads_bounded
from gather_envs.records import TERMINATION_TRUNCATED, EpisodeRecord
from gather_envs.wrappers.record import RecordPassAtKT

DEFAULT_ENV_ID = "Gather-MultiHop-v0"
NESTED_ROW_KEY = "extra_info"  # verl and SkyRL keep per-row metadata under this key
ROW_KEYS = ("env_id", "env_kwargs", "task_id", "task_index", "seed", "max_tool_calls")
CUTOFF_ACTION = "<the trainer ended this rollout>"
"""The action a cut-off episode's last trajectory step shows (never sent to the env)."""
CUTOFF_OBSERVATION = "The episode is over: the trainer ended the rollout before an answer."
TERMINATION_VOID = "retriever_error"
"""The driver's termination for an episode a failing retriever voided (never in a record)."""
EPISODE_OVER = "The episode is over ({termination}); no further actions are taken. Stop calling tools."
KEPT_RECORDS = 1000  # finished records kept in memory per env (all of them are on disk with a path)


def tool_call_text(name: str, arguments: Any) -> str:
    """A native tool call as the env's JSON-dialect action text, arguments passed through unchanged.

    Every tool path (TRL tools, MCP tools, parsed tool calls) steps the env with this text, so the
    env's own parser judges each call: a wrong argument name or an unknown tool is the same invalid
    action (counted the same) as when the model writes that call out as text.
    """
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False, default=str)


def tool_calls_text(calls: Sequence[tuple[str, Any]]) -> str:
    """The native tool calls of one assistant message as one action: one call's object, or a JSON
    list of them, so the env takes them as one turn in order, as it takes the same calls written
    out as text."""
    if len(calls) == 1:
        return tool_call_text(*calls[0])
    listed = [{"name": name, "arguments": arguments} for name, arguments in calls]
    return json.dumps(listed, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class StepResult:
    """What one env step returned (Gymnasium's 5-tuple, named)."""

    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]

    @property
    def done(self) -> bool:
        """Whether this step ended the episode."""
        return self.terminated or self.truncated


def row_value(row: Mapping[str, Any], key: str) -> Any:
    """``row[key]``, else ``row["extra_info"][key]``, else None (missing and null are the same)."""
    value = row.get(key)
    if value is None:
        nested = row.get(NESTED_ROW_KEY)
        if isinstance(nested, Mapping):
            value = nested.get(key)
    return value


def parse_env_kwargs(value: Any) -> dict[str, Any]:
    """Env kwargs from a row: a dict, its JSON string, or nothing."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = loads_bounded(value)
        except NotJson as exc:
            raise ConfigError(f"row field 'env_kwargs': {exc}") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"row field 'env_kwargs' must be an object, got {type(value).__name__}")
    return dict(value)


def reset_arguments(row: Mapping[str, Any]) -> tuple[int | None, dict[str, Any]]:
    """The ``seed`` and ``options`` of ``env.reset`` for a dataset row."""
    options: dict[str, Any] = {}
    task_id = row_value(row, "task_id")
    if task_id is not None:
        options["task_id"] = str(task_id)
    else:
        task_index = row_value(row, "task_index")
        if task_index is not None:
            options["task_index"] = int(task_index)
    budget = row_value(row, "max_tool_calls")
    if budget is not None:
        options["max_tool_calls"] = int(budget)
    seed = row_value(row, "seed")
    return (None if seed is None else int(seed)), options


class _TrainerCutoff(gym.Wrapper[str, str, str, str]):
    """Passes steps through; while armed by the driver, turns the cut-off action into a truncation."""

    def __init__(self, env: gym.Env[str, str]) -> None:
        super().__init__(env)
        self.armed = False
        self._last_info: dict[str, Any] = {}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        self.armed = False
        observation, info = self.env.reset(seed=seed, options=options)
        self._last_info = dict(info)
        return observation, info

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        if self.armed and action == CUTOFF_ACTION:
            self.armed = False
            return CUTOFF_OBSERVATION, 0.0, False, True, self._cutoff_info()
        result = self.env.step(action)
        self._last_info = dict(result[4])
        return result

    def _cutoff_info(self) -> dict[str, Any]:
        env = self.env.unwrapped
        task = getattr(env, "task", None)
        step_keys = (
            "action_type", "query", "retrieved_doc_ids", "searches", "calls", "call_observations", "ignored_calls", "error"
        )  # fmt: skip
        info = {k: v for k, v in self._last_info.items() if k not in step_keys}
        info.update(
            answer=None,
            gold_answer=getattr(task, "answer", ""),
            success=False,
            em=0.0,
            f1=0.0,
            termination=TERMINATION_TRUNCATED,
            queries=list(getattr(env, "queries", ())),
        )
        return info


class EpisodeDriver:
    """Plays Gather episodes for a trainer: reset from a row, step with text, record when it ends.

    ``env_id`` and ``env_kwargs`` are defaults; a row that names its own env switches to it (one
    env per distinct id and kwargs, built once). ``records_path`` appends every finished episode
    to that JSON-lines file; ``agent_id`` and ``agent_settings`` label the records.
    """

    def __init__(
        self,
        env_id: str = DEFAULT_ENV_ID,
        env_kwargs: Mapping[str, Any] | None = None,
        *,
        records_path: str | os.PathLike[str] | None = None,
        agent_id: str = "trainer",
        agent_settings: Mapping[str, Any] | None = None,
        record_trajectory: bool = False,
    ) -> None:
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.records_path = None if records_path is None else os.fspath(records_path)
        self.agent_id = agent_id
        self.agent_settings = dict(agent_settings or {})
        self.record_trajectory = record_trajectory
        self._envs: dict[str, tuple[RecordPassAtKT, _TrainerCutoff]] = {}
        self._env: RecordPassAtKT | None = None
        self._cutoff: _TrainerCutoff | None = None
        self.observation = ""
        self.info: dict[str, Any] = {}
        self.total_reward = 0.0
        self.done = True
        self.started = False
        self.termination = ""

    # -- env -----------------------------------------------------------------------------------

    def _env_for(self, env_id: str, env_kwargs: dict[str, Any]) -> tuple[RecordPassAtKT, _TrainerCutoff]:
        key = json.dumps([env_id, env_kwargs], sort_keys=True, default=repr)
        if key not in self._envs:
            cutoff = _TrainerCutoff(gym.make(env_id, **env_kwargs))
            recorder = RecordPassAtKT(
                cutoff,
                agent_id=self.agent_id,
                path=self.records_path,
                record_trajectory=self.record_trajectory,
                agent_settings=self.agent_settings or None,
            )
            self._envs[key] = (recorder, cutoff)
        return self._envs[key]

    @property
    def env(self) -> RecordPassAtKT:
        """The env of the current episode (wrapped by the recorder)."""
        if self._env is None:
            raise ConfigError("no episode yet: call reset(row) first")
        return self._env

    @property
    def records(self) -> list[EpisodeRecord]:
        """Every episode this driver finished, oldest first, across all of its envs."""
        found: list[EpisodeRecord] = []
        for recorder, _ in self._envs.values():
            found.extend(recorder.records)
        return found

    # -- episode -------------------------------------------------------------------------------

    def reset(self, row: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start the episode a dataset row names (an unfinished previous one is cut off first)."""
        row = row or {}
        if self.started and not self.done:
            self.cut()
        env_id = row_value(row, "env_id") or self.env_id
        kwargs = {**self.env_kwargs, **parse_env_kwargs(row_value(row, "env_kwargs"))}
        self._env, self._cutoff = self._env_for(str(env_id), kwargs)
        seed, options = reset_arguments(row)
        self.total_reward = 0.0
        try:
            self.observation, self.info = self._env.reset(seed=seed, options=options)
        except RetrieverError:
            self._void()
            raise
        self.done = False
        self.started = True
        self.termination = ""
        return self.observation, self.info

    def step(self, action: str) -> StepResult:
        """Apply one text action in any dialect; after the end, a StepResult that says so."""
        if not self.started:
            raise ConfigError("no episode yet: call reset(row) first")
        if self.done:
            return StepResult(self.episode_over_message(), 0.0, False, False, dict(self.info))
        try:
            observation, reward, terminated, truncated, info = self.env.step(action)
        except RetrieverError:
            self._void()
            raise
        self._after_step(observation, float(reward), terminated, truncated, info)
        return StepResult(observation, float(reward), terminated, truncated, info)

    def void(self) -> None:
        """Drop an unfinished episode unrecorded: a failure elsewhere abandoned its rollout (a group's)."""
        if self.started and not self.done:
            self._void()

    def _void(self) -> None:
        """End an episode a failing retriever voided: unrecorded, no reward, nothing left to cut."""
        self.started = True
        self.done = True
        self.total_reward = 0.0
        self.termination = TERMINATION_VOID

    def step_calls(self, calls: Sequence[tuple[str, Any]]) -> tuple[StepResult, list[str]]:
        """Apply one message's native tool calls as one turn; the step and each call's result.

        Each call gets its own part of the observation (``info["call_observations"]``); a call the
        env did not take (after the answer, or once the episode is over) gets the turn's last part.
        """
        if not calls:
            raise ConfigError("a message's tool calls: give at least one (name, arguments) pair")
        over = self.started and self.done
        result = self.step(tool_calls_text(calls))
        parts = [result.observation] if over else list(result.info.get("call_observations") or [result.observation])
        return result, (parts + [parts[-1]] * len(calls))[: len(calls)]

    def cut(self) -> None:
        """End an unfinished episode as truncated by the trainer (reward 0), recording it."""
        if not self.started or self.done:
            return
        assert self._cutoff is not None
        self._cutoff.armed = True
        observation, reward, terminated, truncated, info = self.env.step(CUTOFF_ACTION)
        self._after_step(observation, float(reward), terminated, truncated, info)

    def _after_step(
        self, observation: str, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]
    ) -> None:
        self.observation = observation
        self.info = dict(info)
        self.total_reward += reward
        if terminated or truncated:
            self.done = True
            self.termination = str(info.get("termination", TERMINATION_TRUNCATED))
            kept = self.env.records
            del kept[: max(0, len(kept) - KEPT_RECORDS)]

    def episode_over_message(self) -> str:
        """What a tool call after the end of the episode gets back."""
        return EPISODE_OVER.format(termination=self.termination or "ended")

    @property
    def last_record(self) -> EpisodeRecord | None:
        """The record of the current episode once it has ended, else None."""
        if not self.done or self.termination == TERMINATION_VOID or self._env is None or not self._env.records:
            return None
        return self._env.records[-1]

    def close(self) -> None:
        """Close every env (and its records file)."""
        for recorder, _ in self._envs.values():
            recorder.close()
        self._envs.clear()
        self._env = self._cutoff = None
