"""OpenRLHF adapter: an ``AgentInstanceBase`` and ``AgentExecutor`` for ``--train.agent_func_path``.

Written against OpenRLHF 0.11.2's ``openrlhf/utils/agent.py``. OpenRLHF loads the file given by
``--train.agent_func_path``, instantiates its ``AgentExecutor`` with no arguments, and for every
prompt its ``MultiTurnAgentExecutor`` creates one ``AgentInstance()``: ``reset({"observation":
prompt, "label": label})`` returns the starting text, then after each generation ``step(states)``
gets the reply as ``states["action_text"]`` and returns ``rewards`` (a tensor),
``environment_feedback`` (text appended to the token stream, tokenized without special tokens),
``done`` and ``extra_logs``. The episode is named by the label: use the ``openrlhf`` dataset
layout (``--data.input_key prompt --data.label_key label --data.apply_chat_template``), whose
label is the JSON of the episode fields.

The feedback must carry the model's chat markup, since OpenRLHF splices it between the reply's
tokens and the next generation: a *turn renderer* turns an observation message into that text.
:func:`chatml_renderer` (the default) writes ChatML (``<|im_start|>``/``<|im_end|>``: Qwen,
SmolLM2...); :func:`template_renderer` derives the text from any tokenizer's chat template. The
file you pass to OpenRLHF is two lines::

    # gather_agent.py
    from gather_envs.integrations.openrlhf import make_agent_classes
    AgentInstance, AgentExecutor = make_agent_classes(records_path="runs/openrlhf_train.jsonl")
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from gather_envs.errors import ConfigError
from gather_envs.integrations import chat
from gather_envs.integrations.episodes import EpisodeDriver, row_value
from gather_envs.optional import require

EXTRA = "openrlhf"
DEFAULT_AGENT_ID = "openrlhf"
CHATML_TURN = "\n<|im_start|>{role}\n{content}<|im_end|>\n<|im_start|>assistant\n"

TurnRenderer = Callable[[dict[str, Any]], str]
"""Renders the observation message as the text between the end of a reply and the next one."""


def chatml_renderer(message: dict[str, Any]) -> str:
    """ChatML markup for a user turn after a reply that ended with ``<|im_end|>``.

    >>> chatml_renderer({"role": "user", "content": "Observation: none"})
    '\\n<|im_start|>user\\nObservation: none<|im_end|>\\n<|im_start|>assistant\\n'
    """
    return CHATML_TURN.format(role=message["role"], content=message["content"])


def template_renderer(tokenizer: Any) -> TurnRenderer:
    """A renderer from a tokenizer's chat template: the text it adds for one more user turn.

    The text after the end-of-turn token of a rendered dummy exchange, up to and including the
    next assistant header (the same split TRL uses for tool responses).
    """
    eos = tokenizer.eos_token
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "x"}]
    prefix = tokenizer.apply_chat_template(probe, tokenize=False)
    cut = prefix.rfind(eos) + len(eos) if eos and eos in prefix else len(prefix)

    def render(message: dict[str, Any]) -> str:
        full = tokenizer.apply_chat_template([*probe, message], tokenize=False, add_generation_prompt=True)
        if not full.startswith(prefix[:cut]):
            raise ConfigError("the chat template is not prefix-preserving; pass a renderer of your own")
        return full[cut:]

    return render


def parse_label(label: Any) -> dict[str, Any]:
    """The episode fields of an OpenRLHF label (the JSON string the ``openrlhf`` layout writes)."""
    if isinstance(label, Mapping):
        return dict(label)
    try:
        value = json.loads(str(label))
    except ValueError:
        raise ConfigError(
            f"the label {str(label)[:80]!r} is not the JSON of an episode; export the dataset with "
            "gather_envs.integrations.dataset (layout='openrlhf') and pass --data.label_key label"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError("an episode label must be a JSON object")
    return value


def make_agent_classes(
    *,
    records_path: str | os.PathLike[str] | None = None,
    agent_id: str = DEFAULT_AGENT_ID,
    render_turn: TurnRenderer = chatml_renderer,
    style: str | None = None,
) -> tuple[type, type]:
    """``(AgentInstance, AgentExecutor)`` classes for OpenRLHF, bound to this configuration."""
    agent = require("openrlhf.utils.agent", EXTRA)
    torch = require("torch", EXTRA)

    class AgentInstance(agent.AgentInstanceBase):
        """One Gather episode: the label names it, every step applies one reply."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.driver = EpisodeDriver(records_path=records_path, agent_id=agent_id)
            self.style = style or chat.DEFAULT_STYLE

        async def reset(self, states: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            """Start the label's episode; the prompt must already hold its first observation."""
            row = parse_label(states.get("label"))
            observation, _ = self.driver.reset(row)
            self.style = style or str(row_value(row, "style") or chat.DEFAULT_STYLE)
            prompt = str(states.get("observation", ""))
            if observation.strip() not in prompt:
                raise ConfigError(
                    f"the prompt does not contain the env's first observation for task "
                    f"{row_value(row, 'task_id')!r}; export prompts and labels together with "
                    "gather_envs.integrations.dataset (layout='openrlhf')"
                )
            return {"observation": prompt}

        async def step(self, states: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            """Apply the reply; the env's reward, the next observation in chat markup, done."""
            result = self.driver.step(str(states.get("action_text", "")))
            done = self.driver.done
            feedback = "" if done else render_turn(chat.observation_message(self.style, result.observation))
            info = self.driver.info
            if done:
                self.driver.close()
            return {
                "rewards": torch.tensor(result.reward),
                "scores": self.driver.total_reward,
                "environment_feedback": feedback,
                "done": done,
                "sampling_params": states.get("sampling_params"),
                "extra_logs": {
                    "gather_success": torch.tensor(float(bool(info.get("success", False)))),
                    "gather_tool_calls": torch.tensor(float(info.get("tool_calls_used", 0))),
                },
            }

        def __del__(self) -> None:
            driver = getattr(self, "driver", None)
            if driver is not None:
                driver.cut()  # OpenRLHF stopped at its length budget: recorded as truncated
                driver.close()

    class AgentExecutor(agent.MultiTurnAgentExecutor):
        """OpenRLHF's multi-turn executor over :class:`AgentInstance`."""

        def __init__(self) -> None:
            super().__init__(AgentInstance)

    for cls in (AgentInstance, AgentExecutor):
        cls.__module__ = __name__
    return AgentInstance, AgentExecutor
