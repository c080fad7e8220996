"""Shared fixtures for the trainer-adapter tests.

Each test module starts with ``pytest.importorskip`` for the library it tests, so without that
library the whole module is skipped with a visible reason (``pytest -ra`` lists it) instead of
failing; ``tests/integrations/test_episodes.py`` needs nothing beyond the package itself. The RL
libraries live in their own virtual environment: see docs/integrations.md for the setup.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import pytest
from _support.retriever_stub import StubRetriever, serve_stub

import gather_envs  # noqa: F401  (registers the ids)
from gather_envs.agents.scripted import action_text
from gather_envs.envs.actions import ANSWER, SEARCH
from gather_envs.records.tasks import Task

ENV_ID = "Gather-MultiHop-v0"
WRONG_ANSWER = "unknown"
_QUESTION = re.compile(r"Question: (.*)")


class Oracle:
    """Scripted policy for tests: follows a task's gold path, found from the question in a prompt."""

    def __init__(self, env_id: str = ENV_ID, **env_kwargs: Any) -> None:
        env = gym.make(env_id, **env_kwargs)
        base = env.unwrapped
        self.splits: dict[str, list[Task]] = {name: list(tasks) for name, tasks in base.corpus.splits.items()}
        self.tasks: dict[str, Task] = {
            task.question: task for split in self.splits.values() for task in split
        }
        self.by_id: dict[str, Task] = {task.task_id: task for task in self.tasks.values()}
        env.close()

    def task_in(self, text: str) -> Task:
        """The task whose question is the last ``Question:`` line of ``text``."""
        questions = _QUESTION.findall(text)
        assert questions, f"no question in {text[-200:]!r}"
        return self.tasks[questions[-1].strip()]

    def action(self, task: Task, step: int, correct: bool = True) -> tuple[str, str]:
        """(kind, argument) of the oracle's action at ``step``: the gold searches, then the answer."""
        if step < len(task.gold_path):
            return SEARCH, task.gold_path[step].query
        return ANSWER, task.answer if correct else WRONG_ANSWER

    def text_action(self, dialect: str, task: Task, step: int, correct: bool = True) -> str:
        kind, argument = self.action(task, step, correct)
        return action_text(dialect, kind, argument)


@pytest.fixture(scope="session")
def oracle() -> Oracle:
    return Oracle()


@pytest.fixture()
def records_path(tmp_path: Any) -> Any:
    return tmp_path / "records.jsonl"


def replay(env_id: str, env_kwargs: dict[str, Any], row: dict[str, Any], actions: list[str]) -> list[Any]:
    """The same episode played straight through Gymnasium: every step's 5-tuple."""
    env = gym.make(env_id, **env_kwargs)
    env.reset(seed=row["seed"], options={"task_id": row["task_id"], "max_tool_calls": row["max_tool_calls"]})
    steps = []
    for action in actions:
        steps.append(env.step(action))
        if steps[-1][2] or steps[-1][3]:
            break
    env.close()
    return steps


def text_path_record(env_id: str, env_kwargs: dict[str, Any], row: dict[str, Any], replies: list[str]) -> Any:
    """The record of the same episode played with text replies straight through Gymnasium."""
    from gather_envs.wrappers.record import RecordPassAtKT

    env = RecordPassAtKT(gym.make(env_id, **env_kwargs))
    env.reset(seed=row["seed"], options={"task_id": row["task_id"], "max_tool_calls": row["max_tool_calls"]})
    for reply in replies:
        _, _, terminated, truncated, _ = env.step(reply)
        if terminated or truncated:
            break
    env.close()
    return env.records[-1] if env.records else None


Replay = Callable[[str, dict[str, Any], dict[str, Any], list[str]], list[Any]]


@pytest.fixture()
def flaky_retriever() -> Iterator[tuple[str, type[StubRetriever]]]:
    """A real HTTP retriever answering 503 until the test sets ``handler.mode = "anonymous"``: (URL, handler)."""
    server, url, handler = serve_stub("500")
    yield url, handler
    server.shutdown()
    server.server_close()
