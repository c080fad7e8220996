"""Coverage: policies with nested boundaries give the known coverage curves."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from gather_envs.agents.base import Agent, EpisodePolicy
from gather_envs.analysis.coverage import coverage
from gather_envs.cli import main
from gather_envs.errors import RecordsError
from gather_envs.evaluation import evaluate
from gather_envs.records import EpisodeRecord
from gather_envs.runs import append_records

ENV_ID = "Gather-SingleHop-v0"
N = 4


class _Solver(Agent):
    """Answers correctly, with chance ``p`` per episode, the tasks in ``solves``; wrong otherwise."""

    def __init__(self, name: str, solves: frozenset[str], p: float = 1.0) -> None:
        self.agent_id = name
        self._corpus = gym.make(ENV_ID).unwrapped.corpus  # type: ignore[attr-defined]
        self._solves, self._p = solves, p

    def start(self, seed: int) -> EpisodePolicy:
        return _SolverPolicy(self, np.random.default_rng(seed))


class _SolverPolicy(EpisodePolicy):
    def __init__(self, agent: _Solver, rng: np.random.Generator) -> None:
        self._agent, self._rng = agent, rng

    def act(self, observation: str, info: dict[str, Any]) -> str:
        task = self._agent._corpus.task(info["task_id"])
        hit = task.task_id in self._agent._solves and self._rng.random() < self._agent._p
        return f"answer[{task.answer if hit else 'not it'}]"


def _tasks() -> list[str]:
    return [t.task_id for t in gym.make(ENV_ID).unwrapped.tasks[:8]]  # type: ignore[attr-defined]


def _run(agent: Agent) -> list[EpisodeRecord]:
    return evaluate(ENV_ID, agent, n=N, budgets=[0, 1], tasks=_tasks(), seed=3, progress=False)


def test_a_boundary_inside_another_is_fully_covered_and_the_reverse_is_its_share() -> None:
    tasks = _tasks()
    big = _run(_Solver("big", frozenset(tasks[:6])))
    small = _run(_Solver("small", frozenset(tasks[:3])))
    inside = coverage(big, small, bootstrap=50)
    for entry in inside.per_budget:
        assert entry.coverage == (1.0,) * N and entry.boundary_b == 3 and entry.boundary_a == 6
        assert [t for t, _ in entry.only_a] == sorted(tasks[3:6]) and entry.only_b == ()
        assert all(h == 1 for _, h in entry.only_a)
    outside = coverage(small, big, bootstrap=0).at(1)
    assert outside.coverage == (0.5,) * N and [t for t, _ in outside.only_b] == tasks[3:6]


def test_a_noisy_solver_covers_more_with_more_tries_as_its_pass_at_n_says() -> None:
    tasks = _tasks()
    noisy = _run(_Solver("noisy", frozenset(tasks), p=0.5))
    sure = _run(_Solver("sure", frozenset(tasks)))
    entry = coverage(noisy, sure, bootstrap=200).at(0)
    assert list(entry.coverage) == sorted(entry.coverage) and entry.coverage[0] < 1.0
    solved = sum(r.success for r in noisy if r.budget == 0)
    assert entry.coverage[0] == pytest.approx(solved / (N * len(tasks)))  # pass@1 = mean success
    for value, low, high in zip(entry.coverage, entry.ci_low, entry.ci_high, strict=True):
        assert low is not None and high is not None and low <= value <= high


def test_coverage_refuses_runs_on_different_tasks() -> None:
    tasks = _tasks()
    a = _run(_Solver("a", frozenset(tasks)))
    b = [r for r in _run(_Solver("b", frozenset(tasks))) if r.task_id != tasks[0]]
    with pytest.raises(RecordsError, match="different tasks"):
        coverage(a, b)


def test_analyze_coverage_prints_the_curve_and_the_one_sided_tasks(tmp_path, capsys) -> None:
    tasks = _tasks()
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    append_records(a, _run(_Solver("big", frozenset(tasks[:6]))))
    append_records(b, _run(_Solver("small", frozenset(tasks[:3]))))
    assert main(["analyze", "coverage", str(a), str(b), "--bootstrap", "20", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "coverage_big_small.png").read_bytes().startswith(b"\x89PNG")
    assert "only big solves: 3:" in out and "only small solves: none" in out
    assert main(["analyze", "coverage", str(a), str(tmp_path / "missing.jsonl")]) == 2
    assert "error" in capsys.readouterr().err
