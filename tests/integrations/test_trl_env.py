"""The TRL tool environment played by scripted tool calls: the env's reward, budget and records."""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest

from gather_envs.errors import ConfigError
from gather_envs.integrations.dataset import task_rows, to_layout
from gather_envs.integrations.trl import GatherToolEnv, env_reward, prompt_key
from gather_envs.records import TERMINATION_TRUNCATED
from gather_envs.runs import read_records

from .conftest import ENV_ID, replay


def run(coroutine):
    """A tool call's result: the tools are coroutines (TRL awaits a message's calls together)."""
    return asyncio.run(coroutine)


def _row(oracle, budget: int, hops: int = 2, **kwargs):
    rows = task_rows(ENV_ID, "train", style="tools", limit=40, budgets=[budget], **kwargs)
    row = next(r for r in to_layout(rows, "trl") if r["hops"] == hops)
    return row, oracle.by_id[row["task_id"]]


def _json(kind: str, argument: str) -> str:
    key = "query" if kind == "search" else "answer"
    return json.dumps({"name": kind, "arguments": {key: argument}})


def test_only_the_two_tools_are_public_methods():
    public = {
        name
        for name, _ in inspect.getmembers(GatherToolEnv, predicate=inspect.isfunction)
        if not name.startswith("_")
    }
    assert public == {"reset", "search", "answer", "get_reward"}  # TRL exposes all but reset/get_reward


def test_tool_schemas_render_with_transformers():
    utils = pytest.importorskip("transformers.utils", reason="needs the [trl] extra")
    env = GatherToolEnv()
    search = utils.get_json_schema(env.search)["function"]
    answer = utils.get_json_schema(env.answer)["function"]
    assert search["name"] == "search" and search["parameters"]["required"] == ["query"]
    assert answer["name"] == "answer" and answer["parameters"]["required"] == ["answer"]


def test_search_then_answer_gets_the_envs_reward_and_writes_a_record(oracle, records_path):
    row, task = _row(oracle, budget=2)
    env = GatherToolEnv.factory(records_path=records_path)()
    assert env.reset(**row) is None  # the row's prompt already ends with the first observation
    replies = [run(env.search(query=step.query)) for step in task.gold_path]
    replies.append(run(env.answer(answer=task.answer)))
    expected = replay(
        ENV_ID,
        json.loads(row["env_kwargs"]),
        row,
        [*(_json("search", step.query) for step in task.gold_path), _json("answer", task.answer)],
    )
    assert replies == [step[0] for step in expected]
    assert env.get_reward() == expected[-1][1] == 1.0
    (record,) = read_records(records_path)
    assert record.success and record.tool_calls == task.hops and record.agent_id == "trl-grpo"
    assert record.task_id == row["task_id"] and record.budget == 2 and record.seed == row["seed"]


def test_budget_is_enforced_by_the_env(oracle, records_path):
    row, task = _row(oracle, budget=1)
    env = GatherToolEnv(records_path=records_path)
    env.reset(**row)
    run(env.search(query=task.gold_path[0].query))
    refused = run(env.search(query=task.gold_path[1].query))
    assert refused.startswith("Invalid action: no searches left")
    run(env.answer(answer="unknown"))
    assert env.get_reward() == 0.0
    (record,) = read_records(records_path)
    assert (record.tool_calls, record.invalid_actions, record.success) == (1, 1, False)


def test_tool_calls_after_the_answer_say_the_episode_is_over(oracle):
    row, task = _row(oracle, budget=2)
    env = GatherToolEnv()
    env.reset(**row)
    run(env.answer(answer=task.answer))
    assert "episode is over" in run(env.search(query="more"))
    assert env.get_reward() == 1.0 and env.get_reward() == 1.0


def test_a_rollout_without_an_answer_is_recorded_as_truncated(oracle, records_path):
    row, task = _row(oracle, budget=2)
    env = GatherToolEnv(records_path=records_path)
    env.reset(**row)
    run(env.search(query=task.gold_path[0].query))
    assert env.get_reward() == 0.0
    (record,) = read_records(records_path)
    assert record.termination == TERMINATION_TRUNCATED and record.tool_calls == 1


def test_reset_appends_the_observation_when_the_prompt_leaves_room(oracle):
    row, _ = _row(oracle, budget=2)
    env = GatherToolEnv()
    blank = {**row, "prompt": [*row["prompt"][:-1], {"role": "user", "content": ""}]}
    assert env.reset(**blank) == row["prompt"][-1]["content"]
    assert env.reset() is not None  # no row at all: the env draws a task (TRL without a dataset)


def test_reset_refuses_a_prompt_built_for_another_budget(oracle):
    row, _ = _row(oracle, budget=2)
    with pytest.raises(ConfigError, match="first observation"):
        GatherToolEnv().reset(**{**row, "max_tool_calls": 3})


def test_env_reward_reads_the_rollout_field():
    assert env_reward(["a", "b"], env_reward=[1.0, 0.0]) == [1.0, 0.0]
    with pytest.raises(ConfigError, match="make_rollout_func"):
        env_reward(["a"])


def test_prompt_key_ignores_extra_message_fields():
    messages = [{"role": "user", "content": "q"}]
    assert prompt_key(messages) == prompt_key([{"role": "user", "content": "q", "tool_calls": None}])


def test_tools_prompt_shows_calls_in_the_form_trls_parser_accepts(oracle):
    """Qwen2.5's template (the SmolLM2 checkpoint carries it): the prompt asks for what TRL parses."""
    transformers = pytest.importorskip("transformers", reason="needs the [trl] extra")
    template_utils = pytest.importorskip("trl.chat_template_utils", reason="needs the [trl] extra")
    from gather_envs.integrations import chat
    from gather_envs.integrations.models import smollm2_checkpoint

    tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_checkpoint())
    call_format = chat.tool_call_format(tokenizer)
    assert call_format == "<tool_call>\n{call}\n</tool_call>"
    row, task = _row(oracle, budget=2, tool_call_format=call_format)
    system, user = row["prompt"]
    for message in (system, user):
        assert (
            '<tool_call>\n{"name": "search", "arguments": {"query": "<query>"}}\n</tool_call>'
            in message["content"]
        )
        assert message["content"].count('{"name"') == message["content"].count("<tool_call>")
    env = GatherToolEnv(tool_call_format=call_format)
    assert env.reset(**row) is None  # the row's prompt is the env's observation in that form

    # A reply written as the prompt shows it is a tool call to TRL's parser, a bare JSON one is not.
    parsing = template_utils.add_response_schema(tokenizer)
    prefix = tokenizer.apply_chat_template(
        row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False
    )

    def parse(text: str):  # as GRPOTrainer parses a completion: after the prompt it continues
        ids = tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
        return template_utils.parse_response(parsing, ids, prefix=list(prefix))

    shown = call_format.replace("{call}", _json("search", task.gold_path[0].query))
    (call,) = parse(shown)["tool_calls"]
    assert call["function"] == {"name": "search", "arguments": {"query": task.gold_path[0].query}}
    assert not parse(_json("search", "x")).get("tool_calls")  # bare JSON is plain text to TRL
    refused = run(env.search(term="x"))  # the env's error message shows the same form
    assert "<tool_call>" in refused and refused.startswith("Invalid action")
