"""Evaluation: the seeded episode grid, the resumable concurrent runner behind ``gather-envs eval`` (local or Ray)."""

from __future__ import annotations

from gather_envs.evaluation.agent_spec import resolve_agent
from gather_envs.evaluation.plan import DEFAULT_BUDGETS, DEFAULT_N, RunPlan, plan_run
from gather_envs.evaluation.runner import ENGINES, EvaluationInterrupted, evaluate
from gather_envs.evaluation.seeds import episode_seed, sample_tasks

__all__ = [
    "DEFAULT_BUDGETS",
    "DEFAULT_N",
    "ENGINES",
    "EvaluationInterrupted",
    "RunPlan",
    "episode_seed",
    "evaluate",
    "plan_run",
    "resolve_agent",
    "sample_tasks",
]
