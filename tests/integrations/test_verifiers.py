"""verifiers adapter: tasks, the env's run loop, tools and rewards exercised on verifiers.v1 objects.

The env's ``run()`` is driven with a stand-in player whose interaction has verifiers' own
``Segment`` shape (scripted replies instead of a model server), and scoring goes through
``Task.score`` on a real ``vf.Trace``. ``vf-eval`` end to end (a model server, uv-launched chat
program and MCP servers) is not run here; see docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import pytest

vf = pytest.importorskip("verifiers.v1", reason="the verifiers adapter needs the [verifiers] extra")

from gather_envs.integrations import chat  # noqa: E402
from gather_envs.integrations import verifiers as gather_vf  # noqa: E402
from gather_envs.records import TERMINATION_TRUNCATED, read_records  # noqa: E402

from .conftest import ENV_ID, replay  # noqa: E402

SHIM = "from gather_envs.integrations.verifiers import *  # noqa: F403\nfrom gather_envs.integrations.verifiers import __all__  # noqa: F401\n"


@pytest.fixture()
def taskset_id(tmp_path, monkeypatch) -> str:
    """A two-line taskset module on sys.path, as a user would write one."""
    (tmp_path / "gather_taskset_shim.py").write_text(SHIM)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "gather_taskset_shim"
    sys.modules.pop("gather_taskset_shim", None)


def _env(taskset_id: str, records_path=None, **taskset: Any):
    classes = gather_vf.classes()
    config = classes["GatherEnvConfig"](
        taskset={"id": taskset_id, "split": "train", "limit": 2, "budgets": [1], **taskset},
        records_path=None if records_path is None else str(records_path),
    )
    return classes["GatherVerifiersEnv"](config)


class _Trace:
    def __init__(self) -> None:
        self.info: dict[str, Any] = {}


class _Interaction:
    """A player's interaction: replies come from ``reply(turn_index, user_message)``."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.trace = _Trace()
        self.messages: list[str | None] = []

    async def turn(self, message: str | None = None):
        self.messages.append(message)
        text = self.reply(len(self.messages) - 1, message)
        if text is None:
            return vf.Segment(messages=[], terminated=True)
        return vf.Segment(messages=[vf.AssistantMessage(content=text)])


class _Player:
    def __init__(self, reply) -> None:
        self.interaction_obj = _Interaction(reply)

    @contextlib.asynccontextmanager
    async def interaction(self, task):
        yield self.interaction_obj


class _Agents:
    def __init__(self, reply) -> None:
        self.player = _Player(reply)


def test_taskset_loads_tasks_prompted_with_the_envs_first_observation(taskset_id):
    from verifiers.v1.utils.loaders import environment_class, taskset_class

    assert taskset_class(taskset_id).__name__ == "GatherTaskset"
    assert environment_class(taskset_id).__name__ == "GatherVerifiersEnv"
    env = _env(taskset_id, style="search-r1")
    tasks = list(env.taskset)
    assert len(tasks) == 2 and len({t.key for t in tasks}) == 2
    for task in tasks:
        data = task.data
        assert data.system_prompt == chat.system_prompt("search-r1")
        assert data.prompt.startswith("Question: ") and "<search>" in data.prompt
        assert not task.config.use_tools and type(task).toolsets(task.config) == []


@pytest.mark.parametrize("correct", [True, False])
def test_run_steps_the_env_with_each_reply_and_scores_the_envs_reward(taskset_id, oracle, tmp_path, correct):
    records = tmp_path / "vf.jsonl"
    env = _env(taskset_id, records_path=records)
    task = next(t for t in env.taskset if t.data.hops == 2)
    gold = oracle.by_id[task.data.task_id]
    actions = [oracle.text_action("react", gold, step, correct) for step in range(gold.hops + 1)]
    agents = _Agents(lambda i, message: f"Thought: go.\nAction: {actions[i]}" if i < len(actions) else None)
    asyncio.run(env.run(task, agents))

    interaction = agents.player.interaction_obj
    expected = replay(
        ENV_ID, {"split": "train", "dialect": "react"}, task.data.model_dump(), actions
    )  # T = 1: the second search is refused
    assert interaction.messages[0] is None  # the task's prompt opens the exchange
    assert interaction.messages[1:] == [chat.observation_text("react", step[0]) for step in expected[:-1]]
    outcome = interaction.trace.info[gather_vf.INFO_KEY]
    assert outcome["reward"] == expected[-1][1] == float(correct)
    assert (outcome["tool_calls"], outcome["invalid_actions"]) == (1, 1)
    (record,) = read_records(records)
    assert record.success is correct and record.task_id == gold.task_id and record.agent_id == "verifiers"

    trace = vf.Trace(
        task=vf.TraceTask(type="GatherTask", data=task.data),
        agent=vf.AgentInfo(config=vf.AgentConfig()),
        info=interaction.trace.info,
    )
    asyncio.run(task.score(trace))
    assert trace.rewards["env_reward"].score == float(correct)
    assert trace.metrics == {"success": float(correct), "tool_calls": 1.0, "invalid_actions": 1.0}


def test_a_run_that_stops_early_is_recorded_as_truncated(taskset_id, tmp_path):
    records = tmp_path / "vf.jsonl"
    env = _env(taskset_id, records_path=records)
    task = next(iter(env.taskset))
    agents = _Agents(
        lambda i, message: "Thought: hmm." if i == 0 else None
    )  # one invalid reply, then the limit
    asyncio.run(env.run(task, agents))
    assert agents.player.interaction_obj.trace.info[gather_vf.INFO_KEY]["reward"] == 0.0
    (record,) = read_records(records)
    assert record.termination == TERMINATION_TRUNCATED and record.invalid_actions == 1


def test_toolset_tools_play_the_episode_and_report_through_state(taskset_id, oracle, tmp_path):
    classes = gather_vf.classes()
    env = _env(taskset_id, style="tools", budgets=[2])
    task = next(t for t in env.taskset if t.data.hops == 2)
    assert task.config.use_tools
    (server,) = type(task).toolsets(task.config)
    assert isinstance(server, classes["GatherToolset"]) and server.server_name == ""

    records = tmp_path / "tools.jsonl"
    toolset = classes["GatherToolset"](classes["GatherToolsetConfig"](records_path=str(records)))
    gold = oracle.by_id[task.data.task_id]
    asyncio.run(toolset.setup_task(task))
    results = [toolset.search(query=step.query) for step in gold.gold_path]
    results.append(toolset.answer(answer=gold.answer))
    assert results[0].startswith(f"Results for search[{gold.gold_path[0].query}]")
    state = toolset.state
    assert (state.reward, state.success, state.tool_calls) == (1.0, True, gold.hops)
    (record,) = read_records(records)
    assert record.success and record.tool_calls == gold.hops

    trace = vf.Trace(
        task=vf.TraceTask(type="GatherTask", data=task.data),
        agent=vf.AgentInfo(config=vf.AgentConfig()),
        state=state,
    )
    asyncio.run(task.score(trace))
    assert trace.rewards["env_reward"].score == 1.0
