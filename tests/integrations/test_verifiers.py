"""verifiers adapter: tasks, the env's run loop, tools and rewards exercised on verifiers.v1 objects.

The env's ``run()`` is driven with a stand-in player whose interaction has verifiers' own
``Segment`` shape (scripted replies instead of a model server), and scoring goes through
``Task.score`` on a real ``vf.Trace``. The last test runs ``vf-eval`` end to end (uv-launched chat
program) against a real ``llama_cpp.server`` on 127.0.0.1; see docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

import pytest

vf = pytest.importorskip("verifiers.v1", reason="the verifiers adapter needs the [verifiers] extra")

from gather_envs.integrations import chat  # noqa: E402
from gather_envs.integrations import verifiers as gather_vf  # noqa: E402
from gather_envs.records import TERMINATION_TRUNCATED  # noqa: E402
from gather_envs.runs import read_records  # noqa: E402

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
        taskset={"id": taskset_id, "split": "train", "limit": 6, "budgets": [1], **taskset},
        records_path=None if records_path is None else str(records_path),
    )
    return classes["GatherVerifiersEnv"](config)


class _Trace:
    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.state = gather_vf.classes()["GatherState"]()


class _Interaction:
    """A player's interaction: replies come from ``reply(turn_index, user_message)``.

    A reply is a text, a list of verifiers messages (a tool-using segment), or None (the end).
    """

    def __init__(self, reply) -> None:
        self.reply = reply
        self.trace = _Trace()
        self.messages: list[str | None] = []

    async def turn(self, message: str | None = None):
        self.messages.append(message)
        reply = self.reply(len(self.messages) - 1, message)
        if reply is None:
            return vf.Segment(messages=[], terminated=True)
        if isinstance(reply, list):
            return vf.Segment(messages=reply)
        return vf.Segment(messages=[vf.AssistantMessage(content=reply)])


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
    assert len(tasks) == 6 and len({t.key for t in tasks}) == 6
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


def _tool_segment(calls: list[tuple[str, dict]], results: list[str], closing: str | None = None) -> list:
    """A tool-using segment as verifiers reports it: each call, its result, then a text reply."""
    messages: list[Any] = []
    for index, ((name, arguments), result) in enumerate(zip(calls, results)):
        call = vf.ToolCall(id=f"call{index}", name=name, arguments=json.dumps(arguments))
        messages += [
            vf.AssistantMessage(content="", tool_calls=[call]),
            vf.ToolMessage(tool_call_id=call.id, content=result),
        ]
    if closing is not None:
        messages.append(vf.AssistantMessage(content=closing))
    return messages


def test_mcp_tools_describe_each_argument():
    from mcp.server.mcpserver import MCPServer

    classes = gather_vf.classes()
    server = MCPServer("gather-test")
    classes["GatherToolset"](classes["GatherToolsetConfig"]()).register(server)
    schemas = {tool.name: tool.input_schema for tool in asyncio.run(server.list_tools())}
    assert set(schemas) == {"search", "answer"}
    assert schemas["search"]["properties"]["query"]["description"] == gather_vf.QUERY_DESCRIPTION
    assert schemas["answer"]["properties"]["answer"]["description"] == gather_vf.ANSWER_DESCRIPTION


def test_tools_mode_steps_a_text_reply_and_keeps_playing(taskset_id, oracle, tmp_path):
    records = tmp_path / "host.jsonl"
    env = _env(taskset_id, records_path=records, style="tools", budgets=[2])
    task = next(t for t in env.taskset if t.data.hops == 2)
    gold = oracle.by_id[task.data.task_id]
    first = gold.gold_path[0].query
    # The model stops calling tools and writes the second search as a bare JSON object; the host
    # steps it and answers with the observation; the model then answers in text too.
    second = json.dumps({"name": "search", "arguments": {"query": gold.gold_path[1].query}})
    final = json.dumps({"name": "answer", "arguments": {"answer": gold.answer}})
    segments = [
        _tool_segment([("search", {"query": first})], ["(the server's result)"], closing=second),
        final,
        None,
    ]
    agents = _Agents(lambda i, message: segments[i])
    asyncio.run(env.run(task, agents))
    interaction = agents.player.interaction_obj
    expected = replay(
        ENV_ID,
        {"split": "train", "dialect": "json"},
        task.data.model_dump(),
        [json.dumps({"name": "search", "arguments": {"query": first}}), second, final],
    )
    assert interaction.messages[1] == chat.observation_text("tools", expected[1][0])
    outcome = interaction.trace.info[gather_vf.INFO_KEY]
    assert (outcome["reward"], outcome["tool_calls"], outcome["termination"]) == (1.0, 2, "answered")
    assert interaction.trace.state.pending == [second, final]  # queued for the tool server
    (record,) = read_records(records)
    assert record.success and record.tool_calls == 2


def test_tools_mode_records_an_unfinished_rollout_as_truncated(taskset_id, oracle, tmp_path):
    records = tmp_path / "host.jsonl"
    env = _env(taskset_id, records_path=records, style="tools", budgets=[2])
    task = next(t for t in env.taskset if t.data.hops == 2)
    query = oracle.by_id[task.data.task_id].gold_path[0].query
    segments = [_tool_segment([("search", {"query": query})], ["(result)"]), None]
    agents = _Agents(lambda i, message: segments[i])
    asyncio.run(env.run(task, agents))
    assert agents.player.interaction_obj.trace.info[gather_vf.INFO_KEY]["reward"] == 0.0
    (record,) = read_records(records)
    assert record.termination == TERMINATION_TRUNCATED and record.tool_calls == 1


def test_the_tool_server_applies_the_hosts_text_replies_first(taskset_id, oracle):
    classes = gather_vf.classes()
    env = _env(taskset_id, style="tools", budgets=[1])
    task = next(t for t in env.taskset if t.data.hops == 2)
    gold = oracle.by_id[task.data.task_id]
    toolset = classes["GatherToolset"](classes["GatherToolsetConfig"]())
    asyncio.run(toolset.setup_task(task))
    toolset.state.pending = [f"search[{gold.gold_path[0].query}]"]  # the host stepped this text reply
    refused = toolset.search(query=gold.gold_path[1].query)
    assert refused.startswith("Invalid action: no searches left") and toolset.state.pending == []


# --- vf-eval end to end: verifiers' own CLI against a real OpenAI-compatible server --------------
#
# `vf-eval` plays two tasks (one rollout each) of a two-line taskset module with SmolLM2 served by
# `python -m llama_cpp.server` on 127.0.0.1, the results upload off (`--no-push`). verifiers'
# default `null` harness runs its chat program as a PEP 723 script through `uv` (verifiers
# v1/runtimes/base.py, `prepare_uv_script`: `uv sync --script` fetches the script's dependencies
# from PyPI into ~/.cache/uv on first use, then reuses them), so uv must be on PATH:
# `pip install uv` in this venv is enough.

VF_SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)
VF_SERVER_START_TIMEOUT_S = 90.0
VF_RUN_TIMEOUT_S = 600


def _missing_modules(names: tuple[str, ...]) -> list[str]:
    import importlib.util

    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


VF_MISSING = _missing_modules(("verifiers.v1.cli.eval.main", *VF_SERVER_MODULES))


@pytest.fixture(scope="module")
def vf_llama_server(tmp_path_factory: pytest.TempPathFactory):
    """``python -m llama_cpp.server`` serving SmolLM2 on 127.0.0.1 (tests/_support/llama_server.py); its /v1 URL."""
    from _support.llama_server import serve_smollm2

    with serve_smollm2(tmp_path_factory.mktemp("vf_llama"), VF_SERVER_START_TIMEOUT_S) as url:
        yield url


@pytest.mark.skipif(
    bool(VF_MISSING),
    reason=f"vf-eval end to end needs {', '.join(VF_MISSING)}: pip install 'gather-envs[verifiers,llm]' uv",
)
def test_vf_eval_runs_the_taskset_against_a_real_openai_compatible_server(vf_llama_server, tmp_path):
    import json
    import os
    import shutil
    import subprocess
    from pathlib import Path

    bin_dir = str(Path(sys.executable).parent)
    path = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    if shutil.which("uv", path=path) is None:
        pytest.fail(
            "vf-eval's null harness runs its chat program with uv (verifiers v1/runtimes/base.py): pip install uv"
        )
    vf_eval = shutil.which("vf-eval", path=path)
    assert vf_eval is not None, "verifiers is importable but its vf-eval script is not on PATH"
    (tmp_path / "gather_taskset.py").write_text(SHIM)
    records = tmp_path / "vf.jsonl"
    out = tmp_path / "out"
    pythonpath = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "GATHER_VF_TEST_KEY": "sk-local"}
    command = [
        vf_eval, "gather_taskset", "-m", "smollm2",
        "--client.base-url", vf_llama_server, "--client.api-key-var", "GATHER_VF_TEST_KEY",
        "--no-push", "-o", str(out), "--run.dir", "run", "-r", "1", "-c", "1",
        "--env.taskset.split", "test", "--env.taskset.limit", "2", "--env.taskset.budgets", "1",
        "--env.taskset.style", "react", "--env.records-path", str(records),
        "--sampling.max-tokens", "48", "--sampling.temperature", "0",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=VF_RUN_TIMEOUT_S
    )
    log = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, log

    run_dir = out / "run"
    assert (run_dir / "configs" / "resolved" / "eval.json").is_file(), log
    rollouts = [
        json.loads(line) for line in (run_dir / "traces.jsonl").read_text().splitlines() if line.strip()
    ]
    assert len(rollouts) == 2, log
    by_task = {record.task_id: record for record in read_records(records)}
    assert len(by_task) == 2 and all(r.agent_id == "verifiers" and r.budget == 1 for r in by_task.values())
    for rollout in rollouts:
        assert rollout["ok"] and not rollout["errors"], rollout["errors"]
        (trace,) = rollout["traces"]
        assert trace["is_completed"] and not trace["errors"], trace["errors"]
        assert trace["calls"], "no request reached the model server"
        assert all(call["model"] == "smollm2" for call in trace["calls"])
        outcome = trace["info"][gather_vf.INFO_KEY]  # written by our env's run()
        record = by_task[outcome["task_id"]]
        assert set(trace["rewards"]) == {"env_reward"}  # our Task's only reward
        assert trace["rewards"]["env_reward"]["score"] == outcome["reward"] == record.reward
        assert trace["metrics"] == {
            "success": float(record.success),
            "tool_calls": float(record.tool_calls),
            "invalid_actions": float(record.invalid_actions),
        }
