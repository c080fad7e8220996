"""verl adapter: an ``AgentLoopBase`` subclass that plays one Gather episode per trajectory.

Written against verl 0.9.1's ``verl.experimental.agent_loop`` (verl 0.9 removed
``BaseInteraction``; an agent loop is the way in). verl instantiates the loop per trajectory
through hydra and calls ``await loop.run(sampling_params, **row)`` with the dataset row's fields
(``raw_prompt``, ``extra_info``...). The loop keeps the episode state itself, since verl's own
``ToolAgentLoop`` recreates tools on every call and so cannot hold it. Each turn generates with
``server_manager.generate`` on token ids, merges the reply with verl's Continuous Token builder
(``ct_merge_assistant_token``: mask 1), steps the env with the decoded text in any dialect, and
appends the observation as the row style's user turn (``ct_merge_context_msg``: mask 0), until the
env ends the episode, ``rollout.response_length`` is reached or ``max_turns`` (T + the invalid
action limit + 1) have been played. A reply that would overrun ``response_length`` is cut to the
room left *before* the env sees it and is never stepped: the episode is recorded as truncated
with reward 0 (like verl's own ``ToolAgentLoop``, which stops before acting on such a turn), so
no reward is paid for tokens the sample does not contain (``extra_fields["gather_overrun"]``). ``reward_score`` is the env's reward, so verl's reward manager
is not consulted; ``extra_fields`` carry success, searches and invalid actions.

Use it with a dataset in the ``verl`` layout (``gather_envs.integrations.dataset``, whose
``agent_name`` column is ``gather_agent``) and an agent loop config file::

    # gather_agent_loop.yaml  (actor_rollout_ref.rollout.agent.agent_loop_config_path)
    - name: gather_agent
      _target_: gather_envs.integrations.verl.GatherAgentLoop
      records_path: runs/verl_train.jsonl   # optional: EpisodeRecords of every training episode

Importing this module does not need verl; the class is built on first access.
"""

from __future__ import annotations

import functools
import os
from typing import Any
from uuid import uuid4

from gather_envs.integrations import chat
from gather_envs.integrations.episodes import EpisodeDriver, row_value
from gather_envs.optional import require
from gather_envs.records import TERMINATION_TRUNCATED

EXTRA = "verl"
AGENT_NAME = "gather_agent"
CLASS_NAME = "GatherAgentLoop"
DEFAULT_AGENT_ID = "verl"


def _build_class() -> type:
    """Define the AgentLoopBase subclass (verl is imported only now)."""
    agent_loop = require("verl.experimental.agent_loop.agent_loop", EXTRA)

    class GatherAgentLoop(agent_loop.AgentLoopBase):
        """One Gather episode per trajectory; the env's reward is the trajectory's reward."""

        def __init__(
            self,
            *args: Any,
            records_path: str | os.PathLike[str] | None = None,
            agent_id: str = DEFAULT_AGENT_ID,
            style: str | None = None,
            max_turns: int | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.response_length = int(self.rollout_config.response_length)
            self.records_path = records_path
            self.agent_id = agent_id
            self.style = style
            self.max_turns = max_turns

        async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> Any:
            """Play the row's episode; verl's AgentLoopOutput with the env's reward."""
            driver = EpisodeDriver(records_path=self.records_path, agent_id=self.agent_id)
            driver.reset(kwargs)
            env = driver.env.unwrapped
            style = self.style or str(row_value(kwargs, "style") or chat.DEFAULT_STYLE)
            limit = (
                self.max_turns
                or int(getattr(env, "budget", 0)) + int(getattr(env, "max_invalid_actions", 0)) + 1
            )
            messages = list(kwargs["raw_prompt"])
            runtime_ids = await self.ct_build_initial_tokens(messages)
            response_mask: list[int] = []
            logprobs: list[float] | None = None  # a list once the server returns log-probabilities
            metrics: dict[str, Any] = {}
            extra_fields: dict[str, Any] = {}
            request_id = uuid4().hex
            turns = observations = 0
            overrun = False
            while True:
                output = await self.server_manager.generate(
                    request_id=request_id, prompt_ids=runtime_ids, sampling_params=sampling_params
                )
                if not extra_fields:
                    extra_fields.update(output.extra_fields or {})
                room = self.response_length - len(response_mask)
                reply_ids = list(output.token_ids)[:room]
                reply_logprobs = list(output.log_probs)[:room] if output.log_probs else None
                if reply_logprobs and logprobs is None:
                    logprobs = [0.0] * len(response_mask)
                merge, response_mask, merged_logprobs = await self.ct_merge_assistant_token(
                    runtime_ids,
                    reply_ids,
                    response_mask,
                    logprobs,
                    assistant_logprobs=reply_logprobs if (reply_logprobs and logprobs is not None) else None,
                )
                runtime_ids = merge.token_ids
                if merged_logprobs is not None:
                    logprobs = merged_logprobs
                turns += 1
                if len(output.token_ids) > room or len(response_mask) > self.response_length:
                    # The turn overruns response_length: the sample keeps only its head, so the env
                    # never sees it (a cut answer earns nothing) and the episode ends as truncated.
                    overrun = True
                    break
                reply = self.tokenizer.decode(output.token_ids, skip_special_tokens=True)
                messages.append({"role": chat.ASSISTANT, "content": reply})
                result = driver.step(reply)
                if driver.done or turns >= limit or len(response_mask) >= self.response_length:
                    break
                updated = [*messages, chat.observation_message(style, result.observation)]
                merge, response_mask, merged_logprobs = await self.ct_merge_context_msg(
                    messages, updated, runtime_ids, response_mask, logprobs
                )
                runtime_ids, messages = merge.token_ids, updated
                observations += 1
                if merged_logprobs is not None:
                    logprobs = merged_logprobs
                if len(response_mask) >= self.response_length:
                    break
            driver.cut()  # stopped by a length or turn limit: recorded as truncated
            info = driver.info
            termination = driver.termination
            driver.close()
            split = len(runtime_ids) - len(response_mask)
            extra_fields.update(
                {
                    "turn_scores": [],
                    "tool_rewards": [],
                    "gather_success": float(bool(info.get("success", False))),
                    "gather_tool_calls": int(info.get("tool_calls_used", 0)),
                    "gather_invalid_actions": int(info.get("invalid_actions", 0)),
                    "gather_truncated": float(termination == TERMINATION_TRUNCATED),
                    "gather_overrun": float(overrun),
                }
            )
            return agent_loop.AgentLoopOutput(
                prompt_ids=runtime_ids[:split],
                response_ids=runtime_ids[split:][: self.response_length],
                response_mask=response_mask[: self.response_length],
                response_logprobs=logprobs[: self.response_length] if logprobs is not None else None,
                reward_score=driver.total_reward,
                num_turns=1 + turns + observations,  # the prompt, the replies, the observations
                metrics=metrics,
                extra_fields=extra_fields,
            )

    GatherAgentLoop.__module__ = __name__
    GatherAgentLoop.__qualname__ = CLASS_NAME
    agent_loop.register(AGENT_NAME)(GatherAgentLoop)
    return GatherAgentLoop


@functools.cache
def agent_loop_class() -> type:
    """The ``GatherAgentLoop`` class, built (and registered as ``gather_agent``) on first use."""
    return _build_class()


def __getattr__(name: str) -> Any:
    """``GatherAgentLoop`` is built lazily so that importing this module never needs verl."""
    if name == CLASS_NAME:
        return agent_loop_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
