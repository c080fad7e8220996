"""The action parser: three dialects, the first action wins, never raises."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gather_envs.envs.actions import ANSWER, INVALID, SEARCH, parse_action


@pytest.mark.parametrize(
    ("text", "kind", "argument"),
    [
        ("search[Brathis Institute]", SEARCH, "Brathis Institute"),
        ("Thought: hmm.\nAction: Search[ Brathis ]", SEARCH, "Brathis"),
        ("answer[yes]", ANSWER, "yes"),
        ("finish[Drela]", ANSWER, "Drela"),
        ("<search>who founded X</search>", SEARCH, "who founded X"),
        ("<think>maybe</think><answer>1843</answer>", ANSWER, "1843"),
        ('{"name": "search", "arguments": {"query": "X"}}', SEARCH, "X"),
        ('<tool_call>{"name": "answer", "arguments": "{\\"answer\\": \\"no\\"}"}</tool_call>', ANSWER, "no"),
        ('{"name": "finish", "arguments": {"answer": "Y"}}', ANSWER, "Y"),
    ],
)
def test_each_dialect_parses(text: str, kind: str, argument: str) -> None:
    action = parse_action(text)
    assert (action.kind, action.argument) == (kind, argument)


def test_first_action_in_text_wins() -> None:
    text = "search[first] Observation: ... <answer>second</answer> answer[third]"
    assert parse_action(text).argument == "first"
    assert parse_action("<answer>a</answer> then search[b]").kind == ANSWER


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty action"),
        ("   ", "empty action"),
        ("I think the answer is 5", "no action found"),
        ("search[]", "empty search"),
        ("<answer>  </answer>", "empty answer"),
        ('{"name": "lookup", "arguments": {"query": "x"}}', "unknown tool"),
        ('{"name": "search", "arguments": {"q2": "x"}}', "needs an argument"),
        ('{"name": "search", "arguments": "not json"}', "not valid JSON"),
    ],
)
def test_malformed_actions_are_invalid_with_reason(text: str, fragment: str) -> None:
    action = parse_action(text)
    assert action.kind == INVALID
    assert fragment in action.error


@given(st.text(max_size=300))
def test_parser_never_raises_and_classifies(text: str) -> None:
    action = parse_action(text)
    assert action.kind in (SEARCH, ANSWER, INVALID)
    assert (action.kind == INVALID) == bool(action.error)
    if action.kind != INVALID:
        assert action.argument == action.argument.strip() and action.argument


@given(st.text(alphabet=st.characters(blacklist_characters="[]<>{}"), min_size=1, max_size=80))
def test_bracket_and_tag_and_json_round_trip(query: str) -> None:
    if not query.strip():
        return
    expected = query.strip()
    assert parse_action(f"search[{query}]").argument == expected
    assert parse_action(f"<search>{query}</search>").argument == expected
    call = json.dumps({"name": "search", "arguments": {"query": query}})
    assert parse_action(call).argument == expected
