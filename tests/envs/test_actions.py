"""The action parser: three dialects, the first action wins, never raises."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gather_envs
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


# -- hostile input: non-string arguments, huge and deeply nested texts ------------------------------

MEGABYTE = 1 << 20
TOOL_CALL = '{"name": "search", "arguments": {"query": "Gryga"}}'


@pytest.mark.parametrize(
    "arguments",
    [
        '{"answer": null}',
        '{"answer": ["1915", 2]}',
        '{"answer": [["1915"]]}',
        '{"answer": 1915}',
        '{"answer": {"a": "1915"}}',
        '"{\\"answer\\": null}"',
        '"{\\"answer\\": [1915]}"',
    ],
)
def test_a_non_string_json_argument_is_an_invalid_action(arguments: str) -> None:
    action = parse_action('{"name": "answer", "arguments": ' + arguments + "}")
    assert action.kind == INVALID
    assert "must be a JSON string" in action.error


@pytest.mark.parametrize(
    "arguments", ['{"answer": ["Ann, Jr.", " Bo "]}', '"{\\"answer\\": [\\"Ann, Jr.\\", \\"Bo\\"]}"']
)
def test_a_json_list_of_strings_is_a_set_answer(arguments: str) -> None:
    action = parse_action('{"name": "answer", "arguments": ' + arguments + "}")
    assert (action.kind, action.items) == (ANSWER, ("Ann, Jr.", "Bo"))
    assert json.loads(action.argument) == ["Ann, Jr.", "Bo"]


@pytest.mark.parametrize("arguments", ['{"query": ["Gryga"]}', '"{\\"query\\": [\\"Gryga\\"]}"'])
def test_a_json_list_is_invalid_for_any_argument_but_the_answer(arguments: str) -> None:
    action = parse_action('{"name": "search", "arguments": ' + arguments + "}")
    assert action.kind == INVALID
    assert "must be a JSON string" in action.error


def test_an_empty_or_blank_json_list_answer_is_invalid() -> None:
    for items in ("[]", '["  ", ""]'):
        assert parse_action('{"name": "answer", "arguments": {"answer": ' + items + "}}").kind == INVALID


@pytest.mark.parametrize("name", ["null", '["search"]', "1", '{"n": "search"}'])
def test_a_non_string_tool_name_is_an_invalid_action(name: str) -> None:
    action = parse_action('{"name": ' + name + ', "arguments": {"query": "x"}}')
    assert action.kind == INVALID and "'name' must be a JSON string" in action.error


def test_escaped_json_keys_and_values_are_decoded() -> None:
    action = parse_action('{"n\\u0061me": "se\\u0061rch", "arguments": {"query": "a\\"b"}}')
    assert (action.kind, action.argument) == (SEARCH, 'a"b')


def test_a_tool_call_inside_an_unterminated_object_is_found() -> None:
    """A truncated outer object does not hide a complete tool call inside it."""
    action = parse_action('{"thought": "look it up", "call": ' + TOOL_CALL)
    assert (action.kind, action.argument) == (SEARCH, "Gryga")


HOSTILE = [
    "search[" * 150_000,
    "{" * MEGABYTE,
    "[" * MEGABYTE,
    '{"name":' + "[" * 2000,
    '{"name":' + "[" * MEGABYTE,
    '{"name":' + "{" * MEGABYTE,
    '{"name":' * 130_000,
    '{"a":' * 200_000 + '"name"',
    '{"' * 500_000 + '"name"',
    '{"name": "search", "arguments": "' + "[" * 100_000 + '"}',
    '{"name": "search", "arguments": "' + '{\\"a\\":' * 100_000 + '"}',
    "<search>" * 130_000,
    "<answer></search>" * 60_000,
    "search" + " " * MEGABYTE,
    '{"name":"' + '\\"' * 500_000,
    "]" * MEGABYTE,
    "[" * (MEGABYTE // 2) + "]" * (MEGABYTE // 2),
    '{"name": "x", "arguments": ' + "[" * 300_000 + "]" * 300_000 + "}",
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda text: f"{text[:12]!r}x{len(text)}")
def test_huge_and_deeply_nested_inputs_never_raise(text: str) -> None:
    action = parse_action(text)
    assert action.kind in (SEARCH, ANSWER, INVALID)
    assert action.kind == INVALID  # none of these holds a well-formed action


@pytest.mark.parametrize(
    "garbage",
    [
        "{" * MEGABYTE,
        '{"a":' * 200_000,
        "[" * MEGABYTE,
        '{"name":' + "[" * MEGABYTE + "]",
        "search" * 150_000,
    ],
    ids=["braces", "open-objects", "brackets", "bad-call", "words"],
)
def test_a_tool_call_after_a_megabyte_of_garbage_is_still_found(garbage: str) -> None:
    action = parse_action(garbage + " " + TOOL_CALL)
    assert (action.kind, action.argument) == (SEARCH, "Gryga")


def test_the_first_action_wins_after_megabytes_of_unclosed_openers() -> None:
    text = "<answer>" * 100_000 + "search[" * 100_000 + "answer[late]"
    assert parse_action(text).argument.startswith("search[")  # search[ ... up to the first "]"
    text = "<search>" * 100_000 + "</search>"
    assert parse_action(text).argument.startswith("<search>")


def _reference_json_action(text: str) -> tuple[int, str] | None:
    """The old definition, slow but plain: the first ``{`` where json decodes a dict with "name"."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict) and "name" in value:
            return start, json.dumps(value, sort_keys=True)
        start = text.find("{", start + 1)
    return None


_FRAGMENTS = st.sampled_from(
    [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        '"',
        '"name"',
        '"search"',
        '"answer"',
        '"arguments"',
        '"query"',
        '"x"',
        " ",
        "1",
        "null",
        "NaN",
        '\\"',
        "\\u0061",
        '{"q": "',
        '{"name": "search", "arguments": {"query": "a"}}',
        "search[",
        "b]",
        "<answer>",
        "</answer>",
    ]
)


@given(st.lists(_FRAGMENTS, max_size=40).map("".join))
def test_json_calls_are_found_where_json_itself_finds_them(text: str) -> None:
    """The linear scanner agrees with json.raw_decode tried at every "{" (the old, quadratic way)."""
    from gather_envs.envs.actions import _from_json

    reference = _reference_json_action(text)
    found = _from_json(text)
    assert (reference is None) == (found is None)
    if reference is not None and found is not None:
        assert found[0] == reference[0]
        value = json.loads(reference[1])
        name = value["name"].strip().lower() if isinstance(value["name"], str) else None
        arguments = value.get("arguments", value.get("parameters", {}))
        keys = {"search": ("query", "q", "text"), "answer": ("answer", "text", "final_answer")}
        if name in keys and isinstance(arguments, dict):
            present = [arguments[key] for key in keys[name] if key in arguments]
            if present and isinstance(present[0], str) and present[0].strip():
                assert found[1].argument == present[0].strip()
            else:
                assert found[1].kind == INVALID


@given(st.text(alphabet=st.sampled_from('[]{}"\\:,<>/ searchnwfi'), max_size=400))
def test_bracket_soup_never_raises(text: str) -> None:
    action = parse_action(text)
    assert (action.kind == INVALID) == bool(action.error)


@pytest.mark.parametrize("env_id", gather_envs.ENV_IDS)
def test_step_never_raises_on_hostile_text_in_any_registered_env(env_id: str) -> None:
    env = gym.make(env_id)
    huge_query = "search[" + "Brathis " * 200_000 + "]"
    for text in [*HOSTILE[:6], huge_query, "answer[\u200b\u202e\x00]", "\x00" * 1000]:
        env.reset(seed=0)
        observation, reward, terminated, truncated, info = env.step(text)
        assert isinstance(observation, str) and reward == 0.0 and not (terminated and truncated)
    env.reset(seed=0)
    *_, info = env.step(huge_query)
    assert info["action_type"] == INVALID and "the limit is" in info["error"]


def test_answers_match_through_nfkc_zero_width_bidi_and_control_characters() -> None:
    from gather_envs.scoring.normalize import exact_match, normalize_answer

    gold = "Brathis Institute"
    for noisy in [
        "Bra\u200bthis Institute",
        "\u200fBrathis Institute\u200e",
        "Brathis\x00 Institute",
        "Ｂｒａｔｈｉｓ Institute",
        "\ufeffBrathis\u2066 Institute\u2069",
        "Brathis\tInstitute",
    ]:
        assert exact_match(noisy, [gold]), noisy
        assert exact_match(gold, [noisy]), noisy  # gold answers are normalized the same way
    assert normalize_answer("ﬁnal\u00adist") == "finalist"
    assert not exact_match("Brathis Institutes", [gold])


@given(st.lists(st.text(max_size=12), max_size=6))
def test_any_json_list_of_strings_round_trips_as_the_answers_items(items: list[str]) -> None:
    call = json.dumps({"name": "answer", "arguments": {"answer": items}})
    action = parse_action(f"Thought: all of them. {call}")
    kept = tuple(item.strip() for item in items if item.strip())
    assert (action.kind, action.items) == ((ANSWER, kept) if kept else (INVALID, ()))


_HEAD_FRAGMENTS = st.sampled_from(
    ['{"a":', '{"name":', '{ "a" : ', '{"a{":', '{"a[":', "[", "[ ", "{", "}", "]", ",", '"x"', "1", '"name"', " ", "{}",
     '"search"', '{"name": "search", "arguments": {"query": "a"}}', '"a{"', ':']
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_HEAD_FRAGMENTS, max_size=60).map("".join))
def test_runs_of_nested_heads_are_read_as_json_reads_them(text: str) -> None:
    """Nested heads (``{"a": {"b": [{...``) read in one match give what json.raw_decode gives."""
    from gather_envs.envs.actions import _from_json

    reference = _reference_json_action(text)
    found = _from_json(text)
    assert (reference is None) == (found is None)
    if reference is not None and found is not None:
        assert found[0] == reference[0]


@pytest.mark.parametrize("depth", [2, 3, 50, 5000])
def test_deep_nested_heads_that_close_find_the_call_inside(depth: int) -> None:
    call = '{"name": "search", "arguments": {"query": "deep"}}'
    balanced = '{"a": [' * depth + call + "]}" * depth
    open_then_call = '{"a":' * depth + call
    for text in (balanced, open_then_call, '{"x": 1, "y": ' + balanced + "}"):
        action = parse_action(text)
        assert (action.kind, action.argument) == (SEARCH, "deep")
