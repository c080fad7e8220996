"""The evaluation entry point: every (task, T, i) episode of a PASS@(k,T) grid, resumable and concurrent.

The pieces live by role: the plan (:mod:`.plan`), the agent spec (:mod:`.agent_spec`), resume
(:mod:`.resume`), the player and group commit (:mod:`.player`), the thread pool (:mod:`.pool`) or
Ray (:mod:`.ray_engine`), and progress (:mod:`.progress`); the records file is :mod:`gather_envs.runs`.

:func:`evaluate` plays ``n`` episodes per task and budget T, seeded by
:func:`~gather_envs.evaluation.seeds.episode_seed`, and appends one record per episode to a
JSON-lines file as soon as the episode ends.

* **Resume.** Pointed at an existing file, it reads it and repairs its tail (a torn or unreadable
  last line is moved to ``<file>.corrupt``; see :func:`~gather_envs.runs.read_for_append`),
  checks that it belongs to the same run (env id and kwargs, corpus, agent id and settings, base
  seed; a ConfigError otherwise), refuses a cell recorded twice (a RecordsError naming both lines)
  and plays exactly the missing (task, T, i). A cell never gets two records.
  Records of the file outside the grid (other budgets, i >= n) are kept but not returned, so a run
  can be extended with a larger ``n`` or more budgets.
* **Infrastructure errors.** A :class:`~gather_envs.errors.BackendError` raised by the agent is
  retried ``retries`` times with exponential backoff (``backoff * 2**attempt`` seconds, capped at
  ``max_backoff``); then the episode is recorded with ``infra_error`` set and termination
  ``"infra_error"``. Reports exclude such records from n and count them. On resume they are
  retried: the file is first rewritten without them (atomically), so each cell still has one line.
* **Concurrency.** ``concurrency`` worker threads, each with its own env made with the same
  kwargs (corpora and BM25 indexes are shared per process and safe to read from many threads).
  One agent object serves every thread; its per-episode state lives in the policy it starts.
  Workers are daemon threads rather than a ``ThreadPoolExecutor``, whose workers are joined at
  interpreter exit: after Ctrl-C an in-flight LLM call would otherwise keep the process alive.
  Records of episodes that end together share one fsync (a group commit), so 256 and more
  episodes in flight are not serialized on the disk; each is on disk before its worker moves on.
* **Ctrl-C.** ``KeyboardInterrupt`` stops the run: queued episodes are dropped, in-flight ones are
  abandoned at their next step, and :class:`EvaluationInterrupted` (a ``KeyboardInterrupt``) is
  raised. Every finished episode is already on disk; rerun the same call to resume.
* **Secrets.** No record holds an API key: the agent option ``api_key`` and the keys in the
  environment (``GATHER_API_KEY``, ``OPENAI_API_KEY``) are scrubbed from every record before it is
  written, and credentials (``Authorization`` values, bearer tokens) from every ``infra_error``.
* **Order.** ``order="episodes"`` (the default) plays episode index first, so a partial run is
  balanced; ``order="cells"`` plays each (task, T)'s ``n`` episodes together, so a local model
  whose backend keeps prompt prefixes (the transformers backend's KV store) computes their shared
  first prompt once. Seeds belong to cells, so both orders give the same records.
* **Static family.** It is closed-book: budgets other than T = 0 are skipped with a note.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from gather_envs.agents.backends.base import known_secrets
from gather_envs.errors import ConfigError
from gather_envs.evaluation.agent_spec import AgentSpec, resolve_agent
from gather_envs.evaluation.plan import (
    DEFAULT_BUDGETS,
    DEFAULT_N,
    DEFAULT_SEED,
    ORDER_EPISODES,
    ORDERS,
    RunPlan,
    plan_run,
)
from gather_envs.evaluation.player import Player, PlayerSettings
from gather_envs.evaluation.pool import Workers
from gather_envs.evaluation.progress import Progress
from gather_envs.evaluation.resume import load_existing
from gather_envs.files import PathLike
from gather_envs.records import EpisodeRecord
from gather_envs.runs import Cell, RecordWriter, RunIdentity, RunLock, canonical_json
from gather_envs.wrappers.record import env_identity

DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 1.0
"""First retry delay; each further retry doubles it."""
MAX_BACKOFF_S = 60.0
ENGINE_LOCAL = "local"
ENGINE_RAY = "ray"
ENGINES = (ENGINE_LOCAL, ENGINE_RAY)
"""Who plays the episodes: threads of this process, or Ray actors (:mod:`.ray_engine`)."""


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`evaluate`; every finished episode is on disk and a rerun resumes."""

    def __init__(self, completed: int, total: int, out: Path | None) -> None:
        self.completed = completed
        self.total = total
        self.out = out
        where = f"recorded in {out}" if out is not None else "finished (no records file was given)"
        super().__init__(f"evaluation interrupted: {completed} of {total} episodes {where}")


def evaluate(
    env_id: str,
    agent: AgentSpec,
    n: int = DEFAULT_N,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    tasks: int | Sequence[str] | None = None,
    seed: int = DEFAULT_SEED,
    concurrency: int = 1,
    out: PathLike | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    agent_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    record_trajectory: bool = False,
    record_actions: bool = False,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    max_backoff: float = MAX_BACKOFF_S,
    engine: str = ENGINE_LOCAL,
    ray_address: str | None = None,
    workers: int | None = None,
    ray_actor_options: Mapping[str, Any] | None = None,
    order: str = ORDER_EPISODES,
) -> list[EpisodeRecord]:
    """Play every (task, T, i) of the grid (resuming ``out`` if it exists); the grid's records.

    ``agent`` is a registered name, a ``module:attr`` path or an Agent (see :func:`resolve_agent`);
    ``tasks`` is all tasks of the split (None), a seeded sample of that many, or a list of ids.
    Returns one record per cell, sorted by task (split order), T and episode index, the resumed ones
    included. See the module docstring for resume, retries, concurrency and Ctrl-C.
    ``engine="ray"`` plays the same grid on ``workers`` Ray actors (``concurrency`` episodes each)
    of the cluster at ``ray_address`` (a local instance if None); see
    :mod:`gather_envs.evaluation.ray_engine`.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == ENGINE_LOCAL and (ray_address is not None or workers is not None or ray_actor_options):
        raise ConfigError("ray_address, workers and ray_actor_options need engine='ray'")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be an int >= 1, got {concurrency!r}")
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be an int >= 0, got {retries!r}")
    if backoff < 0 or max_backoff < 0:
        raise ConfigError(f"backoff and max_backoff must be >= 0, got {backoff}, {max_backoff}")
    env_kwargs = dict(env_kwargs or {})
    try:
        env = gym.make(env_id, **env_kwargs)
    except gym.error.Error as exc:
        raise ConfigError(f"cannot make env {env_id!r}: {exc}") from exc
    try:
        agent_obj = resolve_agent(agent, env, agent_options)
        plan = plan_run(env, n=n, budgets=budgets, tasks=tasks, seed=seed)
        spec_id, spec_kwargs = env_identity(env)
        unwrapped: Any = env.unwrapped
        run = RunIdentity(
            env_id=spec_id,
            env_kwargs=spec_kwargs,
            corpus_hash=unwrapped.corpus.content_hash,
            retriever=unwrapped.retriever_identity,
            agent_id=agent_obj.agent_id,
            agent_settings=json.loads(canonical_json(agent_obj.settings())),
        )
        tasks_by_id = {task.task_id: task for task in unwrapped.tasks}
    finally:
        env.close()
    if progress:
        for note in plan.notes:
            print(note, file=sys.stderr)
    path = None if out is None else Path(out)

    settings = PlayerSettings(
        env_id=env_id,
        env_kwargs=env_kwargs,
        plan=plan,
        run=run,
        record_trajectory=record_trajectory,
        retries=retries,
        backoff=backoff,
        max_backoff=max_backoff,
        secrets=known_secrets(agent_options),
        record_actions=record_actions,
    )

    def execute(writer: RecordWriter | None, done: dict[Cell, EpisodeRecord]) -> list[EpisodeRecord]:
        player = Player(settings, agent_obj, tasks_by_id, writer, threading.Event())
        if engine == ENGINE_LOCAL:
            return _run(plan, run, player, done, concurrency, progress, order=order)
        from gather_envs.evaluation import ray_engine  # optional: imports ray

        with ray_engine.RayEngine(ray_address, workers, concurrency, ray_actor_options) as cluster:
            worker = ray_engine.WorkerSettings(settings, agent, dict(agent_options or {}))

            def pool(todo: Sequence[Cell]) -> Any:
                return ray_engine.RayWorkers(cluster, worker, concurrency, todo, writer)

            return _run(plan, run, player, done, concurrency, progress, pool, order)

    if path is None:
        return execute(None, {})
    with RunLock(path) as lock:
        done = load_existing(path, run, plan)
        with RecordWriter(path) as writer:
            lock.cover_file()  # the file exists now: every other name of it meets the lock
            return execute(writer, done)


def _run(
    plan: RunPlan,
    run: RunIdentity,
    player: Player,
    done: dict[Cell, EpisodeRecord],
    concurrency: int,
    progress: bool,
    pool: Callable[[Sequence[Cell]], Any] | None = None,
    order: str = ORDER_EPISODES,
) -> list[EpisodeRecord]:
    """Play the cells ``done`` lacks and return the whole grid's records in grid order.

    ``pool`` makes what plays them (default: ``concurrency`` threads of ``player``): an object with
    the ``results``, ``drain`` and ``join`` of :class:`~gather_envs.evaluation.pool.Workers` that writes each record first.
    """
    grid = plan.grid_order()
    in_grid = sum(1 for key in grid if key in done)
    todo = [key for key in plan.run_order(order) if key not in done]
    label = f"eval {run.agent_id} on {run.env_id}"
    if progress and in_grid:
        print(f"{label}: resuming, {in_grid} of {plan.size} episodes already recorded", file=sys.stderr)
    results: dict[Cell, EpisodeRecord] = {key: done[key] for key in grid if key in done}
    if not todo:
        return [results[key] for key in grid]
    workers = Workers(concurrency, player.play, todo, player.stop) if pool is None else pool(todo)
    bar = Progress(len(todo), label) if progress else None
    finished = False
    try:
        for key, record in workers.results():
            results[key] = record
            if bar is not None:
                bar.update(record)
        finished = True
    except KeyboardInterrupt:
        player.stop.set()
        results.update(workers.drain())  # finished (and on disk) before the interrupt was seen
        out = None if player.writer is None else player.writer.path
        raise EvaluationInterrupted(len(results), plan.size, out) from None
    finally:
        player.stop.set()
        if bar is not None:
            bar.close()
        if finished:
            workers.join()
            player.close()
    return [results[key] for key in grid]
