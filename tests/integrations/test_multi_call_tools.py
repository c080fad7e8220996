"""Several tool calls in one assistant message through the adapters' native tool paths: one turn,
counted exactly as the same calls written out as text (turns, searches, invalid actions, reward)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from conftest import SMALL_WORLD

from gather_envs.integrations import chat
from gather_envs.integrations.dataset import task_rows, to_layout
from gather_envs.integrations.episodes import EpisodeDriver, parse_env_kwargs, row_value, tool_calls_text
from gather_envs.integrations.trl import GatherToolEnv
from gather_envs.integrations.verifiers import _replay_tool_calls

from .conftest import ENV_ID, Oracle, text_path_record

ENV_KWARGS = {"world": SMALL_WORLD}


@pytest.fixture(scope="module")
def small_oracle() -> Oracle:
    return Oracle(ENV_ID, **ENV_KWARGS)


def _row(layout: str, style: str, budget: int):
    """A two-hop task's row in the trainer's layout (its fields read by row_value, nested or not)."""
    rows = task_rows(ENV_ID, "test", style=style, budgets=[budget], env_kwargs=ENV_KWARGS, limit=6)
    (row,) = to_layout([next(row for row in rows if row["hops"] == 2)], layout)
    return row


def _text_record(row, replies):
    """The record of the row's episode played with text replies straight through Gymnasium."""
    fields = {key: row_value(row, key) for key in ("seed", "task_id", "max_tool_calls")}
    kwargs = {**parse_env_kwargs(row_value(row, "env_kwargs")), **ENV_KWARGS}
    return text_path_record(ENV_ID, kwargs, fields, replies)


def _messages(task, budget_overrun: bool):
    """Two assistant messages of native calls: the gold searches (plus extra ones past the budget),
    then the answer with a call after it."""
    searches = [("search", {"query": step.query}) for step in task.gold_path]
    if budget_overrun:
        searches += [("search", {"query": "one too many"}), ("search", {"query": "two too many"})]
    return [searches, [("answer", {"answer": task.answer}), ("search", {"query": "after the answer"})]]


def _text_replies(messages) -> list[str]:
    """The same calls written out by a text agent: one react reply per message."""
    keys = {"search": "query", "answer": "answer"}
    return [" ".join(f"{name}[{args[keys[name]]}]" for name, args in message) for message in messages]


def _counts(record):
    return (record.turns, record.tool_calls, record.invalid_actions, record.success, record.reward, record.queries)


@pytest.mark.parametrize("budget_overrun", [False, True])
def test_trl_tools_awaited_together_are_one_turn_counted_as_text(small_oracle, budget_overrun, tmp_path):
    row = _row("trl", "tools", budget=2)
    task = small_oracle.by_id[row["task_id"]]
    env = GatherToolEnv(env_kwargs=ENV_KWARGS, records_path=tmp_path / "trl.jsonl")
    env.reset(**row)
    messages = _messages(task, budget_overrun)

    async def message(calls):  # what GRPOTrainer does with one message's async tool calls
        return await asyncio.gather(*(getattr(env, name)(**arguments) for name, arguments in calls))

    results = [asyncio.run(message(calls)) for calls in messages]
    assert env.get_reward() == 1.0
    (record,) = env.driver.records
    text = _text_record(row, _text_replies(messages))
    assert _counts(record) == _counts(text)
    assert record.turns == 2 and record.tool_calls == 2
    assert record.invalid_actions == (1 if budget_overrun else 0)
    searched = results[0]
    for (_, arguments), result in zip(messages[0][:2], searched):
        assert result.startswith(f"Results for search[{arguments['query']}]")
    if budget_overrun:
        assert all(r.startswith("Invalid action: no searches left") for r in searched[2:])
    answered, after = results[1]
    assert answered.startswith("Episode over: your answer was correct.") and after == answered


def test_trl_tools_awaited_one_by_one_are_a_turn_each(small_oracle):
    row = _row("trl", "tools", budget=2)
    task = small_oracle.by_id[row["task_id"]]
    env = GatherToolEnv(env_kwargs=ENV_KWARGS)
    env.reset(**row)
    for step in task.gold_path:
        asyncio.run(env.search(query=step.query))
    asyncio.run(env.answer(answer=task.answer))
    (record,) = env.driver.records
    assert (record.turns, record.tool_calls, record.success) == (3, 2, True)


def test_trl_sees_the_tools_as_coroutines():
    trl_utils = pytest.importorskip("trl.trainer.utils", reason="needs the [trl] extra")
    env = GatherToolEnv()
    assert trl_utils.is_async_callable(env.search) and trl_utils.is_async_callable(env.answer)


@pytest.mark.parametrize("budget_overrun", [False, True])
def test_verifiers_host_replays_a_messages_calls_as_one_turn(small_oracle, budget_overrun):
    row = _row("trl", "tools", budget=2)
    task = small_oracle.by_id[row["task_id"]]
    driver = EpisodeDriver(ENV_ID, ENV_KWARGS)
    driver.reset(row)
    messages = _messages(task, budget_overrun)
    segment = [
        SimpleNamespace(
            role=chat.ASSISTANT,
            content=None,
            tool_calls=[SimpleNamespace(name=name, arguments=json.dumps(args)) for name, args in calls],
        )
        for calls in messages
    ]
    assert _replay_tool_calls(driver, segment) is None
    (record,) = driver.records
    text = _text_record(row, _text_replies(messages))
    assert _counts(record) == _counts(text) and record.turns == 2


@pytest.mark.parametrize("style", ["react", "search-r1", "tools"])
def test_skyrl_takes_a_replys_calls_as_one_turn(small_oracle, style, tmp_path):
    skyrl_gym = pytest.importorskip("skyrl_gym", reason="the SkyRL adapter needs the [skyrl] extra")
    from gather_envs.integrations import skyrl

    skyrl.register()
    row = _row("skyrl", style, budget=2)
    task = small_oracle.by_id[row_value(row, "task_id")]
    extras = {k: v for k, v in row.items() if k not in ("prompt", "env_class")}
    env = skyrl_gym.make(skyrl.ENV_CLASS, env_config={"records_path": str(tmp_path / "s.jsonl")}, extras=extras)
    env.init(row["prompt"])
    messages = _messages(task, budget_overrun=True)
    if style == "tools":
        replies = [tool_calls_text(calls) for calls in messages]
    else:
        dialect = chat.style_dialect(style)
        replies = [
            "\n".join(small_oracle_text(dialect, name, args) for name, args in calls) for calls in messages
        ]
    outs = [env.step(reply) for reply in replies]
    assert outs[-1]["done"] and outs[-1]["reward"] == 1.0 and env.get_metrics()["turns"] == 2.0
    (record,) = env.driver.records
    text = _text_record(row, _text_replies(messages))
    assert _counts(record) == _counts(text)


def small_oracle_text(dialect: str, name: str, arguments: dict[str, str]) -> str:
    from gather_envs.agents.scripted import action_text

    return action_text(dialect, name, next(iter(arguments.values())))


def test_skyrl_honours_a_rows_max_turns(tmp_path):
    skyrl_gym = pytest.importorskip("skyrl_gym", reason="the SkyRL adapter needs the [skyrl] extra")
    from gather_envs.integrations import skyrl

    skyrl.register()
    row = _row("skyrl", "react", budget=3)
    extras = {k: v for k, v in row.items() if k not in ("prompt", "env_class")}
    env = skyrl_gym.make(skyrl.ENV_CLASS, env_config={"max_turns": 4}, extras={**extras, "max_turns": 2})
    env.init(row["prompt"])
    assert env.max_turns == 2
    assert not env.step("search[alpha]")["done"] and env.step("search[beta]")["done"]
    wider = skyrl_gym.make(skyrl.ENV_CLASS, env_config={"max_turns": 2}, extras={**extras, "max_turns": 9})
    wider.init(row["prompt"])
    assert wider.max_turns == 2  # the smaller of the row's and the config's
