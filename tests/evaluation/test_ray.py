"""The Ray engine against a real local Ray instance: same records as a local run, lost workers, resume.

One Ray instance (2 CPUs, a small object store) serves every test of the module; the tests that
need it skip when ``ray`` is not importable (``pip install 'gather-envs[ray]'``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SMALL_WORLD

from gather_envs.agents.base import EpisodePolicy
from gather_envs.agents.heuristic import HeuristicAgent
from gather_envs.errors import BackendError, ConfigError
from gather_envs.evaluation import evaluate
from gather_envs.records import EpisodeRecord
from gather_envs.runs import read_records

TESTS_DIR = Path(__file__).resolve().parent
PACKAGE_ROOT = TESTS_DIR.parent
ENV_ID = "Gather-v0"
ENV_KWARGS = {"family": "bridge", "world": SMALL_WORLD}
GRID: dict[str, Any] = {"n": 3, "budgets": (0, 1, 3), "tasks": 4, "seed": 11}
GRID_SIZE = 3 * 3 * 4
RAY_CPUS = 2
RAY_OBJECT_STORE_BYTES = 200 * 1024 * 1024
SLOW_DELAY_S = 0.03
"""Seconds per action of the slow agent: long enough to kill a process mid-run."""
DOWN_MODULUS = 5
WAIT_S = 120.0


class SlowHeuristic(HeuristicAgent):
    """The heuristic agent, slowed down, writing its process id to ``pid_dir`` when built.

    ``delay`` and ``pid_dir`` are not settings, so its records equal the plain heuristic agent's.
    """

    def __init__(self, env: Any, delay: float = SLOW_DELAY_S, pid_dir: str = "", down: bool = False) -> None:
        super().__init__(env)
        self.delay = float(delay)
        self.down = down
        if pid_dir:
            Path(pid_dir, str(os.getpid())).touch()

    def start(self, seed: int) -> EpisodePolicy:
        if self.down and seed % DOWN_MODULUS == 0:
            raise BackendError("simulated server: connection refused")
        return _SlowPolicy(super().start(seed), self.delay)


class _SlowPolicy(EpisodePolicy):
    def __init__(self, inner: EpisodePolicy, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def act(self, observation: str, info: dict[str, Any]) -> str:
        time.sleep(self.delay)
        return self.inner.act(observation, info)

    def usage(self) -> dict[str, Any]:
        return self.inner.usage()


class BuggyHeuristic(HeuristicAgent):
    """A programming error in the agent (not an infrastructure error)."""

    def start(self, seed: int) -> EpisodePolicy:
        raise ValueError("bug in the agent")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray instance whose workers import this module; yields its address."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as patch:
        parts = [str(TESTS_DIR), str(TESTS_DIR.parent), str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]
        patch.setenv("PYTHONPATH", os.pathsep.join(p for p in parts if p))
        ray.init(
            num_cpus=RAY_CPUS,
            object_store_memory=RAY_OBJECT_STORE_BYTES,
            include_dashboard=False,
            log_to_driver=False,
        )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def run(engine: str = "local", **overrides: Any) -> list[EpisodeRecord]:
    options: dict[str, Any] = {**GRID, "env_kwargs": ENV_KWARGS, "progress": False, "backoff": 0.0}
    options.update(overrides)
    agent = options.pop("agent", "heuristic")
    return evaluate(ENV_ID, agent, engine=engine, **options)


def comparable(records: Iterable[EpisodeRecord]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """Records by cell without wall-clock time; fails on a cell recorded twice."""
    table: dict[tuple[str, int, int], dict[str, Any]] = {}
    for record in records:
        data = record.to_json()
        data.pop("wall_time")
        key = (record.task_id, record.budget, record.episode_index)
        assert key not in table, f"duplicate record for {key}"
        table[key] = data
    return table


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_until(condition: Any, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            pytest.fail(f"eval exited early with {process.returncode}: {process.communicate()[1]}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def eval_command(out: Path, address: str, pid_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "gather_envs.cli", "eval", ENV_ID,
        "--agent", "test_ray:SlowHeuristic", "--agent-option", f"pid_dir={pid_dir}",
        "--kwarg", "family=bridge", "--kwarg", "world=" + json.dumps(SMALL_WORLD),
        "--n", str(GRID["n"]), "--budgets", ",".join(map(str, GRID["budgets"])),
        "--tasks", str(GRID["tasks"]), "--seed", str(GRID["seed"]), "--backoff", "0",
        "--engine", "ray", "--ray-address", address, "--workers", "2", "--concurrency", "2",
        "--out", str(out),
    ]  # fmt: skip


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(TESTS_DIR), str(TESTS_DIR.parent), str(PACKAGE_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env


@pytest.fixture(scope="module")
def local_records() -> dict[tuple[str, int, int], dict[str, Any]]:
    """The heuristic agent's grid played serially by the local runner."""
    return comparable(run())


# --------------------------------------------------------------------------------------------
# Same records as the local runner


@pytest.mark.parametrize(("workers", "concurrency", "cpus"), [(1, 1, 1.0), (2, 2, 1.0), (4, 1, 0.5)])
def test_ray_records_equal_local_records(
    ray_cluster: str, local_records: dict, tmp_path: Path, workers: int, concurrency: int, cpus: float
) -> None:
    out = tmp_path / "ray.jsonl"
    options = {"num_cpus": cpus}
    records = run("ray", workers=workers, concurrency=concurrency, out=out, ray_actor_options=options)
    assert comparable(records) == local_records
    assert comparable(read_records(out)) == local_records
    assert line_count(out) == GRID_SIZE


def test_ray_resumes_exactly_the_missing_cells_of_a_local_file(
    ray_cluster: str, local_records: dict, tmp_path: Path
) -> None:
    out = tmp_path / "run.jsonl"
    run(out=out, n=1)
    first = out.read_bytes()
    records = run("ray", workers=2, out=out)
    assert out.read_bytes().startswith(first)  # the local run's lines are kept, not replayed
    assert line_count(out) == GRID_SIZE
    assert comparable(read_records(out)) == comparable(records) == local_records


def test_infra_errors_are_retried_then_recorded_as_locally(ray_cluster: str, tmp_path: Path) -> None:
    options = {"agent": "test_ray:SlowHeuristic", "agent_options": {"delay": 0.0, "down": True}, "retries": 1}
    local = comparable(run(**options))
    on_ray = comparable(run("ray", workers=2, out=tmp_path / "down.jsonl", **options))
    assert on_ray == local
    infra = [data for data in on_ray.values() if data["infra_error"]]
    assert infra and all(data["extra"]["attempts"] == 2 for data in infra)
    assert len(infra) < GRID_SIZE


def test_an_agent_bug_in_a_worker_stops_the_run_with_its_own_type(ray_cluster: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bug in the agent"):
        run("ray", agent="test_ray:BuggyHeuristic", workers=1, out=tmp_path / "bug.jsonl")


def test_a_worker_that_cannot_build_the_agent_raises_the_config_error(ray_cluster: str) -> None:
    with pytest.raises(ConfigError, match="rejected its options"):
        run("ray", agent="test_ray:SlowHeuristic", agent_options={"no_such_option": 1}, workers=1)


def test_more_workers_than_the_cluster_can_hold_is_a_config_error(ray_cluster: str) -> None:
    with pytest.raises(ConfigError, match=f"3 Ray workers need 3 CPU .* the cluster has {RAY_CPUS}"):
        run("ray", workers=3)


def test_the_ray_engine_without_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    with pytest.raises(ConfigError, match=r'pip install "gather-envs\[ray\]"'):
        run("ray")


def test_ray_options_without_the_ray_engine_are_refused() -> None:
    with pytest.raises(ConfigError, match="need engine='ray'"):
        run(workers=2)
    with pytest.raises(ConfigError, match="engine must be one of"):
        run("spark")


# --------------------------------------------------------------------------------------------
# Killed processes


def test_a_killed_worker_costs_no_record_and_duplicates_none(
    ray_cluster: str, local_records: dict, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "killed.jsonl"
    pids = tmp_path / "pids"
    pids.mkdir()
    outcome: dict[str, Any] = {}

    def evaluation() -> None:
        try:
            outcome["records"] = run(
                "ray", agent="test_ray:SlowHeuristic", agent_options={"pid_dir": str(pids)},
                workers=2, concurrency=2, out=out,
            )  # fmt: skip
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    def workers() -> list[int]:  # the driver builds the agent too (for the run's identity)
        return sorted(int(p.name) for p in pids.iterdir() if int(p.name) != os.getpid())

    thread = threading.Thread(target=evaluation, daemon=True)
    thread.start()
    wait_until(lambda: len(workers()) == 2 and line_count(out) >= 2, "two workers and a record")
    victim = workers()[0]
    os.kill(victim, signal.SIGKILL)
    recorded_at_kill = line_count(out)
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert recorded_at_kill < GRID_SIZE  # the worker died mid-run
    # Ray restarts the worker (a third process builds the agent) unless the survivor finishes the
    # grid first, which a loaded machine allows; never more than that one restart.
    assert len(workers()) in (2, 3)
    err = capfd.readouterr().err
    assert "in-flight episode(s) go back to the queue" in err or "is restarting" in err  # replayed
    assert line_count(out) == GRID_SIZE
    assert comparable(read_records(out)) == comparable(outcome["records"]) == local_records


def test_a_killed_driver_resumes_like_a_local_run(
    ray_cluster: str, local_records: dict, tmp_path: Path
) -> None:
    out = tmp_path / "driver.jsonl"
    pids = tmp_path / "pids"
    pids.mkdir()
    command = eval_command(out, ray_cluster, pids)
    driver = subprocess.Popen(
        command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_until(lambda: line_count(out) >= 3, "three records", driver)
    driver.send_signal(signal.SIGKILL)
    driver.communicate()
    recorded = line_count(out)
    assert 3 <= recorded < GRID_SIZE
    workers = [int(p.name) for p in pids.iterdir() if int(p.name) != driver.pid]
    assert len(workers) == 2
    wait_until(lambda: not any(alive(pid) for pid in workers), "the workers to die with their driver")
    resumed = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=WAIT_S)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert line_count(out) == GRID_SIZE
    assert comparable(read_records(out)) == local_records


def test_ctrl_c_exits_130_with_every_received_record_on_disk(ray_cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "interrupted.jsonl"
    pids = tmp_path / "pids"
    pids.mkdir()
    driver = subprocess.Popen(
        eval_command(out, ray_cluster, pids),
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_until(lambda: line_count(out) >= 2, "two records", driver)
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=WAIT_S)
    assert driver.returncode == 130, stderr
    assert "resume by running the same command again" in stderr
    recorded = line_count(out)
    assert f"{recorded} of {GRID_SIZE} episodes recorded" in stderr, stderr[-1500:]
    assert comparable(read_records(out))  # whole lines, no duplicate
