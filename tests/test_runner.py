"""The evaluation runner: seeded grid, concurrency, resume, infra errors, SIGKILL and Ctrl-C.

The scripted agents here (also used by ``test_cli_eval`` through ``test_runner:CoinAgent``) follow a
task's gold path and then flip a coin seeded by the episode seed, so every expected count is known.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import SMALL_WORLD

import gather_envs
from gather_envs.agents.base import Agent, EpisodePolicy
from gather_envs.errors import BackendError, ConfigError
from gather_envs.evaluation import EpisodeKey, EvaluationInterrupted, episode_seed, evaluate, sample_tasks
from gather_envs.evaluation import runner as runner_module
from gather_envs.metrics import results_from_records
from gather_envs.records import TERMINATION_INFRA_ERROR, EpisodeRecord, read_records
from gather_envs.reports import render_results

ENV_ID = "Gather-v1"  # the generic id: tests vary family= per run
ENV_KWARGS: dict[str, Any] = {"world": SMALL_WORLD}
P_LEVELS = (0.0, 0.25, 0.6, 0.9)
"""Success probability of the coin agent on the tasks at split positions 0, 1, 2, 3 (mod 4)."""
SHORT_BUDGET_FACTOR = 0.5
"""The probability is scaled by this when T is too small to walk the whole gold path."""
DOWN_MODULUS = 5
"""With ``fail="down"`` the backend is down for episodes whose seed is a multiple of this."""
WRONG_ANSWER = "no idea"
TESTS_DIR = Path(__file__).resolve().parent
PACKAGE_ROOT = Path(gather_envs.__file__).resolve().parent.parent


def success_probability(position: int, path_length: int, budget: int) -> float:
    """The coin agent's chance to answer a task right at budget T."""
    base = P_LEVELS[position % len(P_LEVELS)]
    return base if budget >= path_length else base * SHORT_BUDGET_FACTOR


def coin(seed: int) -> float:
    """The uniform draw that decides an episode's success."""
    return float(np.random.default_rng(seed).random())


class CoinPolicy(EpisodePolicy):
    """Search the gold path while calls last, then answer right iff the episode's coin says so."""

    def __init__(self, agent: CoinAgent, seed: int) -> None:
        self.agent = agent
        self.seed = seed
        self.draw = coin(seed)
        self.requests = 0

    def act(self, observation: str, info: dict[str, Any]) -> str:
        self.agent.backend(self.seed)
        self.requests += 1
        if self.agent.delay:
            time.sleep(self.agent.delay)
        task = self.agent.env.corpus.task(info["task_id"])
        used = info["tool_calls_used"]
        if used < len(task.gold_path) and info["tool_calls_left"] > 0:
            return f"Thought: next hop. search[{task.gold_path[used].query}]"
        p = self.agent.probability(
            self.agent.position[task.task_id], len(task.gold_path), info["max_tool_calls"]
        )
        return f"answer[{task.answer if self.draw < p else WRONG_ANSWER}]"

    def usage(self) -> dict[str, Any]:
        return {"requests": self.requests}


class CoinAgent(Agent):
    """A scripted stochastic agent with known per-task success probabilities.

    ``delay`` (seconds per action) and ``fail`` (``"none"``, ``"flaky"``: the first try of every
    episode hits a backend error, ``"down"``: every try of some episodes does) are not settings,
    so a run can be resumed with other values.
    """

    agent_id = "coin"

    def __init__(self, env: Any, delay: float = 0.0, fail: str = "none") -> None:
        self.env = env
        self.delay = float(delay)
        self.fail = fail
        self.position = {task.task_id: i for i, task in enumerate(env.tasks)}
        self.started = 0
        self._failed: set[int] = set()
        self._lock = threading.Lock()

    def settings(self) -> dict[str, Any]:
        return {"p_levels": list(P_LEVELS), "short_budget_factor": SHORT_BUDGET_FACTOR}

    def probability(self, position: int, path_length: int, budget: int) -> float:
        """The chance to answer right (see :func:`success_probability`)."""
        return success_probability(position, path_length, budget)

    def start(self, seed: int) -> EpisodePolicy:
        with self._lock:
            self.started += 1
        return CoinPolicy(self, seed)

    def backend(self, seed: int) -> None:
        """Raise BackendError when the simulated LLM server is failing for this episode."""
        if self.fail == "down" and seed % DOWN_MODULUS == 0:
            raise BackendError("simulated server: connection refused")
        if self.fail == "flaky":
            with self._lock:
                first_try = seed not in self._failed
                self._failed.add(seed)
            if first_try:
                raise BackendError("simulated server: timed out")


class BuggyAgent(CoinAgent):
    """An agent with a programming error on its 5th episode (not an infrastructure error)."""

    def start(self, seed: int) -> EpisodePolicy:
        if self.started >= 4:
            raise ValueError("bug in the agent")
        return super().start(seed)


def small_env() -> Any:
    return gym.make(ENV_ID, **ENV_KWARGS).unwrapped


def run(tmp_path: Path | None = None, name: str = "run.jsonl", **overrides: Any) -> list[EpisodeRecord]:
    options: dict[str, Any] = {
        "n": 4,
        "budgets": (0, 1, 3),
        "tasks": 4,
        "seed": 11,
        "env_kwargs": ENV_KWARGS,
        "progress": False,
        "backoff": 0.0,
        "out": None if tmp_path is None else tmp_path / name,
    }
    options.update(overrides)
    agent = options.pop("agent", CoinAgent)
    return evaluate(ENV_ID, agent, **options)


def comparable(records: Iterable[EpisodeRecord]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """Records by cell, without the one field that legitimately differs between runs."""
    table: dict[tuple[str, int, int], dict[str, Any]] = {}
    for record in records:
        data = record.to_json()
        data.pop("wall_time")
        key = (record.task_id, record.budget, record.episode_index)
        assert key not in table, f"duplicate record for {key}"
        table[key] = data
    return table


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(TESTS_DIR), str(PACKAGE_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env


def eval_command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "gather_envs.cli", "eval", ENV_ID,
        "--agent", "test_runner:CoinAgent", "--kwarg", "world=" + json.dumps(SMALL_WORLD),
        "--n", "6", "--budgets", "0,1,3", "--tasks", "4", "--seed", "11", "--backoff", "0",
        "--out", str(out), *extra,
    ]  # fmt: skip


def wait_for_lines(path: Path, count: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"eval exited early with {process.returncode}: {process.communicate()[1]}")
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"{path} never reached {count} lines")


# --------------------------------------------------------------------------------------------
# Seeds


def test_episode_seed_is_pinned_and_independent_of_pythonhashseed() -> None:
    cells = [(0, "bridge-00001", 5, 0), (7, "single-hop-00003", 0, 63), (-1, "x", 2, 1)]
    here = [episode_seed(*cell) for cell in cells]
    assert here[0] == 1277002558039588991  # the documented scheme; changing it breaks old runs
    assert all(0 <= seed < 2**63 for seed in here)
    code = f"from gather_envs.evaluation import episode_seed; print([episode_seed(*c) for c in {cells!r}])"
    for hash_seed in ("0", "12345"):
        env = {**subprocess_env(), "PYTHONHASHSEED": hash_seed}
        output = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(output.stdout) == here


def test_episode_seeds_differ_between_cells() -> None:
    seeds = {
        episode_seed(base, task, budget, index)
        for base in (0, 1)
        for task in ("t1", "t2", "t10")
        for budget in (0, 1, 2, 3, 5)
        for index in range(16)
    }
    assert len(seeds) == 2 * 3 * 5 * 16


def test_task_sample_is_seeded_nested_and_in_split_order() -> None:
    ids = [f"task-{i:03d}" for i in range(50)]
    ten, twenty = sample_tasks(ids, 10, 3), sample_tasks(ids, 20, 3)
    assert ten == sample_tasks(ids, 10, 3) and set(ten) < set(twenty)
    assert list(ten) == sorted(ten)
    assert sample_tasks(ids, 10, 4) != ten
    with pytest.raises(ConfigError, match="only 50"):
        sample_tasks(ids, 51, 3)


# --------------------------------------------------------------------------------------------
# The grid


def test_runs_exactly_n_episodes_per_task_and_budget(tmp_path: Path) -> None:
    records = run(tmp_path, n=5, budgets=(3, 0, 1), tasks=4)
    assert len(records) == 5 * 4 * 3
    position = CoinAgent(small_env()).position
    cells = [(position[r.task_id], r.budget, r.episode_index) for r in records]
    assert cells == sorted(set(cells)) and len(cells) == 60  # grid order, each cell once
    assert {r.budget for r in records} == {0, 1, 3}
    assert {r.episode_index for r in records} == set(range(5))
    assert all(r.seed == episode_seed(11, r.task_id, r.budget, r.episode_index) for r in records)
    assert all(r.agent_id == "coin" and r.env_id == ENV_ID for r in records)
    assert all(r.extra["usage"]["requests"] >= 1 for r in records)
    assert comparable(read_records(tmp_path / "run.jsonl")) == comparable(records)


def test_successes_follow_the_seeded_coins() -> None:
    records = run(None, n=6)
    agent = CoinAgent(small_env())
    for record in records:
        assert record.seed is not None
        task = agent.env.corpus.task(record.task_id)
        p = success_probability(agent.position[record.task_id], len(task.gold_path), record.budget)
        assert record.success == (coin(record.seed) < p)
        assert record.tool_calls == min(len(task.gold_path), record.budget)


def test_concurrency_gives_the_same_records_as_a_serial_run() -> None:
    serial = run(None, n=6, concurrency=1)
    parallel = run(None, n=6, concurrency=4)
    assert comparable(parallel) == comparable(serial)
    assert [(r.task_id, r.budget, r.episode_index) for r in parallel] == [
        (r.task_id, r.budget, r.episode_index) for r in serial
    ]


def test_static_family_runs_closed_book_only(capsys: pytest.CaptureFixture[str]) -> None:
    records = run(None, n=2, budgets=(0, 1, 2), tasks=3, env_kwargs={"world": SMALL_WORLD, "family": "static"},
                  progress=True)  # fmt: skip
    assert {r.budget for r in records} == {0} and len(records) == 6
    assert "static family is closed-book" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="closed-book"):
        run(None, budgets=(1, 2), env_kwargs={"world": SMALL_WORLD, "family": "static"})


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="n "):
        run(None, n=0)
    with pytest.raises(ConfigError, match="budgets"):
        run(None, budgets=())
    with pytest.raises(ConfigError, match="concurrency"):
        run(None, concurrency=0)
    with pytest.raises(ConfigError, match="unknown task"):
        run(None, tasks=["nope"])
    with pytest.raises(ConfigError, match="cannot make env"):
        evaluate("Gather-Nope-v0", CoinAgent, progress=False)
    with pytest.raises(ConfigError, match="cannot import"):
        run(None, agent="no_such_module_xyz:Agent")
    with pytest.raises(ConfigError, match="rejected its options"):
        run(None, agent_options={"temperature": 0.7})
    with pytest.raises(ConfigError, match="not an Agent"):
        run(None, agent=lambda env: object())


def test_plain_progress_line_shows_eta_and_success(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runner_module, "_tqdm_class", lambda: None)
    run(None, n=2, progress=True)
    err = capsys.readouterr().err
    assert "24/24 episodes (100.0%)" in err and "success" in err and "ETA" in err


# --------------------------------------------------------------------------------------------
# Resume


def test_resume_runs_only_the_missing_episodes(tmp_path: Path) -> None:
    full = run(tmp_path, "full.jsonl", n=6)
    lines = (tmp_path / "full.jsonl").read_bytes().splitlines(keepends=True)
    partial = tmp_path / "partial.jsonl"
    kept = [line for i, line in enumerate(lines) if i % 3]
    partial.write_bytes(b"".join(kept) + lines[0][:40])  # plus a torn last line
    agent = CoinAgent(small_env())
    with pytest.warns(UserWarning, match="torn last line"):
        resumed = run(tmp_path, "partial.jsonl", n=6, agent=agent)
    assert agent.started == len(lines) - len(kept)
    assert comparable(resumed) == comparable(full)
    assert comparable(read_records(partial)) == comparable(full)
    again = CoinAgent(small_env())
    run(tmp_path, "partial.jsonl", n=6, agent=again)
    assert again.started == 0
    assert len(read_records(partial)) == len(full)


def test_resume_can_extend_a_run_with_more_episodes(tmp_path: Path) -> None:
    run(tmp_path, n=3)
    agent = CoinAgent(small_env())
    records = run(tmp_path, n=5, agent=agent)
    assert agent.started == 2 * 4 * 3
    assert comparable(records) == comparable(run(None, n=5))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 12}, "different base seed"),
        ({"env_kwargs": {"world": SMALL_WORLD, "top_k": 2}}, "env kwargs"),
        ({"env_kwargs": {"world": {**SMALL_WORLD, "seed": 8}}}, "corpus"),
        ({"env_kwargs": {"world": SMALL_WORLD, "family": "comparison"}}, "env kwargs"),
    ],
)
def test_resume_refuses_a_file_of_another_run(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    run(tmp_path, n=2)
    before = (tmp_path / "run.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=message):
        run(tmp_path, n=2, **change)
    assert (tmp_path / "run.jsonl").read_bytes() == before


def test_resume_refuses_another_agent(tmp_path: Path) -> None:
    run(tmp_path, n=2)

    class Other(CoinAgent):
        agent_id = "other"

    with pytest.raises(ConfigError, match="agent 'coin', not 'other'"):
        run(tmp_path, n=2, agent=Other)


def test_a_second_runner_on_the_same_file_is_refused(tmp_path: Path) -> None:
    with (
        runner_module._RunLock(tmp_path / "run.jsonl"),
        pytest.raises(ConfigError, match="another evaluation"),
    ):
        run(tmp_path, n=2)
    run(tmp_path, n=2)
    assert not (tmp_path / "run.jsonl.lock").exists()


# --------------------------------------------------------------------------------------------
# Infrastructure errors


def test_backend_errors_are_retried(tmp_path: Path) -> None:
    records = run(tmp_path, n=3, agent_options={"fail": "flaky"}, retries=1)
    assert not any(r.is_infra_error for r in records)
    assert comparable(records) == comparable(run(None, n=3))


def test_persistent_backend_errors_are_recorded_apart_and_excluded_from_n(tmp_path: Path) -> None:
    records = run(tmp_path, n=6, agent_options={"fail": "down"}, retries=2)
    down = [r for r in records if r.seed is not None and r.seed % DOWN_MODULUS == 0]
    infra = [r for r in records if r.is_infra_error]
    assert infra == down and infra
    for record in infra:
        assert record.termination == TERMINATION_INFRA_ERROR and not record.success
        assert record.extra["attempts"] == 3 and "connection refused" in (record.infra_error or "")
    results = results_from_records(records, bootstrap=50)
    assert results.infra_errors_total == len(infra)
    assert sum(results.overall.infra_errors.values()) == len(infra)
    assert min(results.overall.n_min.values()) < 6
    assert "infrastructure errors excluded from n" in render_results(results)
    assert f"{len(infra)} infrastructure errors" in render_results(results)

    agent = CoinAgent(small_env())
    healed = run(tmp_path, n=6, agent=agent)
    assert agent.started == len(infra)  # resume retries exactly the infrastructure errors
    assert not any(r.is_infra_error for r in read_records(tmp_path / "run.jsonl"))
    assert comparable(healed) == comparable(run(None, n=6))


def test_an_agent_bug_stops_the_run_and_keeps_finished_records(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bug in the agent"):
        run(tmp_path, agent=BuggyAgent)
    kept = read_records(tmp_path / "run.jsonl")
    assert len(kept) == 4
    assert len(run(tmp_path)) == 4 * 4 * 3


# --------------------------------------------------------------------------------------------
# Crashes and Ctrl-C


def test_sigkill_midway_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    out = tmp_path / "killed.jsonl"
    process = subprocess.Popen(
        eval_command(out, "--agent-option", "delay=0.01", "--quiet"),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_lines(out, 15, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    survivors = read_records(out)
    assert 15 <= len(survivors) < 6 * 4 * 3

    resumed = subprocess.run(
        eval_command(out, "--quiet"), env=subprocess_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    final = read_records(out)
    uninterrupted = run(tmp_path, "clean.jsonl", n=6)
    assert len(final) == len(uninterrupted) == 6 * 4 * 3
    assert comparable(final) == comparable(uninterrupted)
    assert sum(r.success for r in final) == sum(r.success for r in uninterrupted)


def test_sigint_exits_130_keeps_records_and_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "interrupted.jsonl"
    process = subprocess.Popen(
        eval_command(out, "--agent-option", "delay=0.02", "--concurrency", "2"),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_lines(out, 8, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 130, err
    assert "interrupted" in err and "resume" in err and "--out" in err
    kept = read_records(out)
    assert 8 <= len(kept) < 6 * 4 * 3
    assert not (tmp_path / "interrupted.jsonl.lock").exists()
    assert comparable(run(tmp_path, "interrupted.jsonl", n=6)) == comparable(run(None, n=6))


def test_keyboard_interrupt_in_process_raises_evaluation_interrupted(tmp_path: Path) -> None:
    class Interrupting(CoinAgent):
        def start(self, seed: int) -> EpisodePolicy:
            if self.started == 5:
                threading.Timer(0.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
            return super().start(seed)

    with pytest.raises(EvaluationInterrupted) as caught:
        run(tmp_path, agent=Interrupting, agent_options={"delay": 0.01})
    assert caught.value.out == tmp_path / "run.jsonl"
    assert caught.value.total == 4 * 4 * 3
    on_disk = len(read_records(tmp_path / "run.jsonl"))
    assert caught.value.completed >= 5
    assert on_disk in (caught.value.completed, caught.value.completed + 1)  # + one finishing in flight
    assert isinstance(caught.value, KeyboardInterrupt)


def test_episode_key_orders_like_the_grid() -> None:
    assert sorted([EpisodeKey("b", 0, 1), EpisodeKey("a", 1, 0), EpisodeKey("a", 0, 2)])[0] == EpisodeKey(
        "a", 0, 2
    )
