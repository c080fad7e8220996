"""Several calls in one reply: taken in order within the budget T, in every dialect, as one turn."""

from __future__ import annotations

import json

import pytest
from conftest import small_env

from gather_envs.agents.scripted import action_text
from gather_envs.envs.actions import ANSWER, DIALECTS, INVALID, SEARCH, parse_calls
from gather_envs.envs.gather_env import (
    IGNORED_AFTER_ANSWER,
    IGNORED_AFTER_OBSERVATION,
    TERMINATION_MAX_TURNS,
)
from gather_envs.records import EpisodeRecord
from gather_envs.wrappers.record import IGNORED_CALLS_KEY, RecordPassAtKT


def start(**kwargs):
    env = small_env("bridge", **kwargs)
    env.reset(seed=0, options={"task_index": 0})
    return env, env.unwrapped.task


def reply(dialect: str, *calls: tuple[str, str], separator: str = "\n") -> str:
    """One reply holding ``calls`` written in ``dialect`` (json: one object per call)."""
    return separator.join(action_text(dialect, kind, argument) for kind, argument in calls)


def json_list(*calls: tuple[str, str]) -> str:
    """The calls as one JSON list, as a native tool-calling model writes parallel calls."""
    keys = {SEARCH: "query", ANSWER: "answer"}
    return json.dumps([{"name": kind, "arguments": {keys[kind]: argument}} for kind, argument in calls])


WRITERS = {dialect: (lambda *calls, d=dialect: reply(d, *calls)) for dialect in DIALECTS}
WRITERS["json-list"] = json_list


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_call_of_a_reply_is_taken_in_order_as_one_turn(writer: str) -> None:
    env, task = start(max_tool_calls=3)
    queries = [step.query for step in task.gold_path]
    text = WRITERS[writer](*((SEARCH, q) for q in queries), (ANSWER, task.answer))
    observation, reward, terminated, truncated, info = env.step(text)
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert [s["query"] for s in info["searches"]] == queries == info["queries"]
    assert info["tool_calls_used"] == len(queries) and info["turns"] == 1
    assert info["calls"] == [SEARCH] * len(queries) + [ANSWER]
    positions = [observation.index(f"Results for search[{q}]") for q in queries]
    assert positions == sorted(positions) and observation.index("Episode over") > positions[-1]


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_searches_past_the_budget_get_the_budget_error_and_count_as_one_invalid_action(writer: str) -> None:
    env, task = start(max_tool_calls=1)
    queries = [task.gold_path[0].query, "second query", "third query"]
    observation, reward, terminated, truncated, info = env.step(WRITERS[writer](*((SEARCH, q) for q in queries)))
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["tool_calls_used"] == 1 and [s["query"] for s in info["searches"]] == queries[:1]
    assert info["invalid_actions"] == 1 and info["error"].startswith("no searches left")
    assert observation.count("Invalid action: no searches left") == 2
    assert observation.endswith("Invalid actions allowed before the episode ends: 1.")


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_an_answer_mid_turn_ends_the_episode_and_later_calls_are_ignored_and_recorded(writer: str) -> None:
    env = RecordPassAtKT(small_env("bridge", max_tool_calls=3))
    env.reset(seed=0, options={"task_index": 0})
    task = env.unwrapped.task
    first = task.gold_path[0].query
    text = WRITERS[writer]((SEARCH, first), (ANSWER, task.answer), (SEARCH, "after the answer"))
    observation, reward, terminated, _, info = env.step(text)
    assert terminated and reward == 1.0 and info["tool_calls_used"] == 1 and info["queries"] == [first]
    assert info["calls"] == [SEARCH, ANSWER]  # the calls the env took
    (ignored,) = info["ignored_calls"]
    assert ignored["reason"] == IGNORED_AFTER_ANSWER and "after the answer" in ignored["call"]
    assert "1 call after the answer was ignored." in observation
    (record,) = env.records
    assert (record.turns, record.tool_calls, record.success) == (1, 1, True)
    assert record.extra[IGNORED_CALLS_KEY] == [{"turn": 1, **ignored}]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_invalid_calls_count_as_one_invalid_action_for_the_turn(dialect: str) -> None:
    env, task = start(max_tool_calls=3)
    empty = action_text(dialect, SEARCH, "x").replace("x", " ")
    text = "\n".join([empty, action_text(dialect, SEARCH, task.gold_path[0].query), empty])
    observation, _, terminated, _, info = env.step(text)
    assert not terminated and info["invalid_actions"] == 1 and info["tool_calls_used"] == 1
    assert info["calls"] == [INVALID, SEARCH, INVALID]
    assert observation.count("Invalid action: empty search") == 2


def test_a_turn_of_invalid_calls_past_the_limit_ends_the_episode() -> None:
    env, _ = start(max_invalid_actions=0)
    observation, reward, terminated, truncated, info = env.step("search[] answer[] search[]")
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert info["termination"] == "invalid_actions" and info["invalid_actions"] == 1
    assert observation.endswith("Too many invalid actions: the episode is over.")


def test_max_turns_truncates_and_counts_replies_not_calls() -> None:
    env, task = start(max_tool_calls=5, max_turns=2)
    _, _, terminated, truncated, info = env.step("search[alpha] search[beta]")
    assert (terminated, truncated, info["turns"], info["tool_calls_used"]) == (False, False, 1, 2)
    observation, reward, terminated, truncated, info = env.step("search[gamma]")
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert info["termination"] == TERMINATION_MAX_TURNS and not info["success"] and info["answer"] is None
    assert "turn limit (2)" in observation


def test_without_max_turns_replies_are_unlimited() -> None:
    env, task = start(max_tool_calls=1, max_invalid_actions=100)
    for _ in range(50):
        _, _, terminated, truncated, info = env.step("Thinking it over.")
        assert not (terminated or truncated)
    assert info["turns"] == 50 and info["max_turns"] is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_turns_must_be_a_positive_int(bad) -> None:
    from gather_envs.errors import ConfigError

    with pytest.raises(ConfigError, match="max_turns"):
        small_env("bridge", max_turns=bad)


@pytest.mark.parametrize(
    ("text", "taken", "ignored"),
    [
        ("Action: search[Ann]\nObservation: Ann was born in Bo.\nAction: search[Bo]", ["Ann"], ["search[Bo]"]),
        ("<search>Ann</search>\n<information>made up</information>\n<search>Bo</search>", ["Ann"], ["<search>Bo</search>"]),
        # The made-up result's own "search[Ann]" is dropped too.
        ("search[Ann]\nResults for search[Ann]:\n1. [Ann] ...\nsearch[Bo]", ["Ann"], ["search[Ann]", "search[Bo]"]),
        ("search[Ann]\n  searches left: 2.\nanswer[Bo]", ["Ann"], ["answer[Bo]"]),
        (
            '<tool_call>{"name": "search", "arguments": {"query": "Ann"}}</tool_call>\n<tool_response>x'
            '</tool_response>\n<tool_call>{"name": "search", "arguments": {"query": "Bo"}}</tool_call>',
            ["Ann"],
            ['{"name": "search", "arguments": {"query": "Bo"}}'],
        ),
        # The first call is always taken; only calls after a marker that follows it are dropped.
        ("Observation: earlier\nsearch[Ann]\nsearch[Bo]", ["Ann", "Bo"], []),
        # A marker inside a call's argument is part of the call, not a made-up observation.
        ("search[Ann\nObservation] search[Bo]", ["Ann\nObservation", "Bo"], []),
        # A call that quotes a marker is still followed by calls.
        (
            '[{"name": "search", "arguments": {"query": "<information>"}}, {"name": "answer", "arguments": {"answer": "Bo"}}]',
            ["<information>", "Bo"],
            [],
        ),
        # A word that merely starts like a marker mid-line is not one.
        ("search[Ann] my observation: search[Bo]", ["Ann", "Bo"], []),
    ],
)
def test_calls_after_a_made_up_observation_are_not_calls(text: str, taken: list[str], ignored: list[str]) -> None:
    turn = parse_calls(text)
    assert [call.argument for call in turn.calls] == taken
    assert list(turn.ignored) == ignored


def test_the_env_reports_calls_dropped_after_a_made_up_observation() -> None:
    env, task = start(max_tool_calls=3)
    query = task.gold_path[0].query
    observation, _, _, _, info = env.step(f"search[{query}]\nObservation: invented\nanswer[{task.answer}]")
    assert info["tool_calls_used"] == 1 and info["calls"] == [SEARCH] and not info.get("answer")
    assert info["ignored_calls"] == [{"call": f"answer[{task.answer}]", "reason": IGNORED_AFTER_OBSERVATION}]
    assert "1 call after a made-up observation was ignored." in observation


def test_nested_and_overlapping_calls_count_once() -> None:
    turn = parse_calls('<search>search[x]</search> {"name": "search", "arguments": {"query": "<answer>y</answer>"}}')
    assert [(c.kind, c.argument) for c in turn.calls] == [(SEARCH, "search[x]"), (SEARCH, "<answer>y</answer>")]


def test_a_one_call_reply_reads_as_before() -> None:
    env, task = start(max_tool_calls=2)
    observation, _, _, _, info = env.step(f"Thought: go. Action: search[{task.gold_path[0].query}]")
    assert observation.startswith("Results for search[") and observation.endswith("Searches left: 1.")
    assert "ignored" not in observation and "ignored_calls" not in info
    observation, _, _, _, _ = env.step("no action here")
    assert observation.startswith("Invalid action: no action found. No search was used.\nReply with exactly")


def test_records_count_turns_and_searches_apart_and_old_records_read() -> None:
    env = RecordPassAtKT(small_env("bridge", max_tool_calls=4))
    env.reset(seed=0, options={"task_index": 0})
    task = env.unwrapped.task
    env.step("search[alpha] search[beta]")
    env.step(f"search[gamma] answer[{task.answer}]")
    (record,) = env.records
    assert (record.turns, record.tool_calls, record.queries) == (2, 3, ("alpha", "beta", "gamma"))
    assert len(record.retrieved_doc_ids or ()) == 3 and record.reward_kind == "em"
    assert EpisodeRecord.from_json(record.to_json()) == record
    old = {k: v for k, v in record.to_json().items() if k not in ("turns", "reward_kind")}
    read = EpisodeRecord.from_json({**old, "schema_version": 2})
    assert read.turns is None and read.reward_kind == "em" and read.tool_calls == 3


def test_parsing_a_megabyte_of_calls_takes_each_once() -> None:
    text = "search[a] " * 100_000
    turn = parse_calls(text)
    assert len(turn.calls) == 100_000 and not turn.ignored
    env, _ = start(max_tool_calls=2)
    observation, _, _, _, info = env.step(text)
    assert info["tool_calls_used"] == 2 and info["invalid_actions"] == 1
    assert "99993 more invalid calls in this reply." in observation
