"""TRL adapter: an ``environment_factory`` for ``GRPOTrainer`` (JSON tool calls) and a ``rollout_func``
for the text dialects (``search[...]``, ``<search>...</search>``).

**environment_factory** (TRL >= 0.29; checked against TRL 1.16's ``GRPOTrainer``):
``GRPOTrainer(environment_factory=GatherToolEnv.factory(...))``. TRL builds one instance per
rollout (pooled and reused), calls ``reset(**row)`` with the whole dataset row, exposes every
public method with type hints and a Google-style docstring as a tool (here :meth:`search` and
:meth:`answer`), sends ``str(result)`` back as a tool message, and calls :meth:`get_reward` once
per finished rollout. The tools are coroutines: TRL awaits the calls of one assistant message
together, and they reach the env as one turn (a JSON list of calls, arguments as TRL passed them:
the tools accept any, so ``search(term=...)`` is the env's invalid action, not a TypeError inside
TRL), each call answered with its own part of the observation; so reward, budget T, the turn
count and the end after ``answer`` (or after too many invalid actions) are the env's own, counted
as for the same calls written out as text. TRL parses tool calls in the chat template's format: build the dataset and the factory
with ``tool_call_format=chat.tool_call_format(tokenizer)`` so the prompt asks for that format. TRL knows no episode end:
a tool call after it gets :data:`~gather_envs.integrations.episodes.EPISODE_OVER` back and changes
nothing. A rollout that stops without answering (no further tool call, length limit) is recorded
as ``truncated`` with reward 0 when TRL asks for its reward. Set ``GRPOConfig.
max_tool_calling_iterations`` to at least ``T + max_invalid_actions + 1`` so the env, not TRL,
ends episodes. Known TRL pitfalls: a partial last batch crashes ``environment_factory``
(huggingface/trl#6137: use a dataset whose size is a multiple of the generation batch); the
whole multi-turn episode is one training sample (huggingface/trl#4543).

**rollout_func** (experimental in TRL): :func:`make_rollout_func` returns ``rollout_func(prompts,
trainer)`` that plays each prompt's episode turn by turn: generate, step the env with the text,
append the observation as the style's user turn, until the env ends it or ``max_turns`` or
``trainer.max_completion_length`` stops it. It returns what TRL 1.16 requires (``prompt_ids``,
``completion_ids``, ``logprobs``), the optional ``env_mask`` (1 for model tokens, 0 for the
observation tokens the env inserted; TRL masks them out of the loss) and ``env_reward``, which
TRL forwards to reward functions: pass :func:`env_reward` as ``reward_funcs``. Generation is
collective (every rollout in every call, the same turn count on every rank when there are several
processes) and log-probabilities are cut with their tokens; see :class:`RolloutFunction`. TRL hands the
rollout function only the prompts, so the function maps each prompt back to its dataset row (the
rows you give it); questions are unique within a split, so prompts identify rows.

One adapter, one module (over 500 lines): the tool env and the rollout function share the
episode driver and TRL's conventions, and are checked against the same TRL release.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from gather_envs.envs.actions import ANSWER, SEARCH
from gather_envs.errors import ConfigError, RetrieverError
from gather_envs.integrations import chat
from gather_envs.integrations.episodes import (
    DEFAULT_ENV_ID,
    EpisodeDriver,
    parse_env_kwargs,
    row_value,
)
from gather_envs.optional import require

EXTRA = "trl"
TOOLS_STYLE = "tools"
DEFAULT_AGENT_ID = "trl-grpo"
DEFAULT_ROLLOUT_AGENT_ID = "trl-rollout"
DEFAULT_TURN_TOKENS = 64  # new tokens per turn in the rollout function
ENV_REWARD_FIELD = "env_reward"
ENV_MASK_FIELD = "env_mask"
MODEL_TOKEN, ENV_TOKEN = 1, 0


def _lenient_tool(
    name: str, argument: str
) -> Callable[[Callable[..., Awaitable[str]]], Callable[..., Awaitable[str]]]:
    """Show a tool as ``name(argument: str) -> str`` while accepting any call, right or wrong.

    TRL builds the schema from the signature and calls ``tool(**arguments)``: with a strict
    signature a wrong argument name raises in TRL and never reaches the env. The method takes
    whatever the model sent and steps the env with it, so the env's parser decides.
    """

    def decorate(method: Callable[..., Awaitable[str]]) -> Callable[..., Awaitable[str]]:
        receiver = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        shown = inspect.Parameter(argument, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)
        method.__signature__ = inspect.Signature([receiver, shown], return_annotation=str)  # type: ignore[attr-defined]
        method.__annotations__ = {argument: str, "return": str}
        method.__name__ = name
        return method

    return decorate


def _call_arguments(argument: str, args: tuple[Any, ...], arguments: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments as sent (a positional value is taken as ``argument``)."""
    if args:
        return {argument: args[0], **arguments}
    return dict(arguments)


class GatherToolEnv:
    """A Gather episode as a TRL tool environment: ``search`` and ``answer`` tools, the env's reward.

    Construct through :meth:`factory` to configure it; TRL calls the factory with no arguments.
    ``env_id``/``env_kwargs`` are the defaults for rows that do not name their env (the JSON
    dialect is forced, since TRL turns tool calls into JSON actions). ``records_path`` appends one
    :class:`~gather_envs.records.EpisodeRecord` per finished episode. ``tool_call_format`` (from
    :func:`~gather_envs.integrations.chat.tool_call_format`; build the dataset with the same one)
    writes the tool calls the env's texts show in the chat template's form, which is what TRL's
    parser accepts: a bare JSON reply is plain text to TRL and ends the rollout.
    """

    def __init__(
        self,
        env_id: str = DEFAULT_ENV_ID,
        env_kwargs: Mapping[str, Any] | None = None,
        records_path: str | os.PathLike[str] | None = None,
        agent_id: str = DEFAULT_AGENT_ID,
        agent_settings: Mapping[str, Any] | None = None,
        record_trajectory: bool = False,
        tool_call_format: str | None = None,
    ) -> None:
        kwargs = {**dict(env_kwargs or {}), "dialect": "json"}
        self._call_format = tool_call_format
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._results: list[str] | None = None
        self._driver = EpisodeDriver(
            env_id,
            kwargs,
            records_path=records_path,
            agent_id=agent_id,
            agent_settings=agent_settings,
            record_trajectory=record_trajectory,
        )

    @classmethod
    def factory(cls, **config: Any) -> Callable[[], GatherToolEnv]:
        """A no-argument callable for ``GRPOTrainer(environment_factory=...)`` with this config."""
        return functools.partial(cls, **config)

    def reset(self, **row: Any) -> str | None:
        """Start the row's episode; the observation to append to the prompt, or None if it is there.

        A row exported by :mod:`gather_envs.integrations.dataset` already ends with the env's first
        observation, so nothing is appended. A row whose last message is empty (or that has no
        prompt, as when TRL trains without a dataset) gets the observation appended.
        """
        if row_value(row, "env_kwargs") is not None:  # TRL sends JSON tool calls: force that dialect
            row = {**row, "env_kwargs": {**parse_env_kwargs(row_value(row, "env_kwargs")), "dialect": "json"}}
        observation, _ = self._driver.reset(row)
        observation = chat.show_tool_calls(observation, self._call_format)
        last = _last_content(row.get("prompt"))
        if not last:
            return observation
        if last.strip() == observation.strip():
            return None
        raise ConfigError(
            "the row's prompt does not end with the env's first observation for its task and budget "
            f"(task {row_value(row, 'task_id')!r}); rebuild the dataset with "
            "gather_envs.integrations.dataset, or leave the last message empty to have it appended"
        )

    @_lenient_tool(SEARCH, "query")
    async def search(self, *args: Any, **arguments: Any) -> str:
        """Search the documents and return the best matches. Each search uses one of the limited searches.

        Args:
            query: Words to search for, such as the name of a person, place or thing.

        Returns:
            The best matching documents and the number of searches left.
        """
        return await self._call(SEARCH, _call_arguments("query", args, arguments))

    @_lenient_tool(ANSWER, "answer")
    async def answer(self, *args: Any, **arguments: Any) -> str:
        """Give the final answer. This ends the episode; a wrong answer is final.

        Args:
            answer: Only the name, number, yes or no that the question asks for.

        Returns:
            Whether the answer was correct.
        """
        return await self._call(ANSWER, _call_arguments("answer", args, arguments))

    async def _call(self, name: str, arguments: dict[str, Any]) -> str:
        """Join this call to its message's turn; the message's first call plays the turn for all.

        TRL awaits the calls of one assistant message together (``asyncio.gather``, in order):
        each registers, then yields once, so every call of the message has registered when the
        first one resumes and steps the env with all of them as one turn, as the same calls
        written out as text would be. Awaited one by one, each call is a turn of its own.
        """
        index = len(self._pending)
        self._pending.append((name, arguments))
        if index == 0:
            self._results = None
        await asyncio.sleep(0)
        if self._results is None:
            calls, self._pending = self._pending, []
            _, parts = self._driver.step_calls(calls)
            self._results = [chat.show_tool_calls(part, self._call_format) for part in parts]
        return self._results[index]

    def get_reward(self) -> float:
        """The env's reward for this episode (an unfinished episode is cut off first: reward 0)."""
        self._driver.cut()
        return self._driver.total_reward

    @property
    def driver(self) -> EpisodeDriver:
        """The episode driver (env, info and records) behind the tools."""
        return self._driver


def _last_content(prompt: Any) -> str:
    if not prompt:
        return ""
    last = prompt[-1]
    content = last.get("content") if isinstance(last, Mapping) else None
    return content if isinstance(content, str) else ""


def env_reward(
    completions: Sequence[Any], env_reward: Sequence[float] | None = None, **_: Any
) -> list[float]:
    """TRL reward function for :func:`make_rollout_func`: the env's reward of each rollout."""
    if env_reward is None:
        raise ConfigError(
            "env_reward needs the 'env_reward' field that make_rollout_func returns; use it "
            "together with GRPOTrainer(rollout_func=make_rollout_func(...))"
        )
    return [float(r) for r in env_reward]


# -- rollout_func ------------------------------------------------------------------------------

Generated = tuple[list[int], list[float] | None]
"""One turn's generated token ids and (optionally) their sampling log-probabilities."""
GenerateFn = Callable[[list[list[int]], Any, int], list[Generated]]
"""``generate(prompt_ids_batch, trainer, max_new_tokens)``: one (ids, logprobs) per prompt."""


def transformers_generate(prompt_ids: list[list[int]], trainer: Any, max_new_tokens: int) -> list[Generated]:
    """Sample one turn per prompt with the trainer's own model and sampling settings (no logprobs).

    Unwraps the model the way ``GRPOTrainer`` does for its own generation (DDP, DeepSpeed, FSDP,
    gradient checkpointing switched off meanwhile); for vLLM, pass a ``generate`` of your own.
    """
    import copy

    torch = require("torch", EXTRA)
    model_utils = require("trl.models.utils", EXTRA)
    tokenizer = _tokenizer(trainer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in prompt_ids])
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids])
    config = copy.deepcopy(trainer.generation_config)
    config.max_new_tokens = max_new_tokens
    config.min_new_tokens = None
    args = trainer.args
    with (
        model_utils.unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=args.ds3_gather_for_generation,
            generation_kwargs=getattr(trainer, "generation_kwargs", None),
            gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs,
        ) as model,
        torch.no_grad(),
    ):
        device = trainer.accelerator.device
        output = model.generate(
            input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config
        )
    eos = set(_eos_ids(trainer))
    results: list[Generated] = []
    for row in output[:, width:].tolist():
        cut = next((i + 1 for i, token in enumerate(row) if token in eos), len(row))
        results.append((row[:cut], None))
    return results


def vllm_generate(prompt_ids: list[list[int]], trainer: Any, max_new_tokens: int) -> list[Generated]:
    """Sample one turn per prompt with TRL's vLLM backend (``use_vllm=True``), with log-probabilities.

    Calls ``trainer.vllm_generation.generate`` (TRL 1.16's signature) with the per-turn token limit;
    the trainer syncs the weights into vLLM before each rollout. Not exercised by the CPU tests.
    """
    generation = trainer.vllm_generation
    saved = generation.max_completion_length
    generation.max_completion_length = max_new_tokens
    try:
        _, completion_ids, logprobs, _ = generation.generate(
            prompts=prompt_ids, images=None, num_generations=1
        )
    finally:
        generation.max_completion_length = saved
    return [
        (list(ids), [float("nan") if top[0] is None else float(top[0]) for top in lps])
        for ids, lps in zip(completion_ids, logprobs)
    ]


def _tokenizer(trainer: Any) -> Any:
    processing = trainer.processing_class
    return getattr(processing, "tokenizer", processing)


def _eos_ids(trainer: Any) -> list[int]:
    ids = getattr(trainer, "eos_token_ids", None)
    if ids:
        return list(ids)
    return [_tokenizer(trainer).eos_token_id]


def prompt_key(prompt: Any) -> str:
    """A lookup key for a prompt: its messages' roles and contents, as canonical JSON."""
    if isinstance(prompt, str):
        return json.dumps(prompt)
    return json.dumps([[m.get("role"), m.get("content")] for m in prompt], ensure_ascii=False)


@dataclass
class _Rollout:
    """One prompt's episode in progress: its tokens, mask and log-probabilities."""

    driver: EpisodeDriver
    prompt_ids: list[int]
    style: str
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    has_logprobs: bool = True
    turns: int = 0
    active: bool = True


class RolloutFunction:
    """TRL ``rollout_func`` playing multi-turn text-dialect episodes (see the module docstring).

    ``rows``: the dataset rows the trainer samples from (train and eval), used to map each prompt
    back to its episode. ``style`` wraps later observations (``Observation: ...`` for react,
    ``<information>...`` for search-r1). ``generate`` defaults to :func:`transformers_generate`;
    use :func:`vllm_generate` with ``use_vllm=True``, or your own with the same signature. ``max_turns`` defaults to the row's
    ``T + max_invalid_actions + 1``, the most steps an env episode can take.

    Generation is collective across ranks (TRL's vLLM server mode gathers every rank's prompts and
    slices the results by ``process_index * len(prompts)``; colocate with tensor parallelism and
    DeepSpeed ZeRO-3 all-gather too), so each turn calls ``generate`` with *every* rollout: a
    finished one is padded with a one-token dummy prompt whose output is dropped, and every call
    asks for the same ``turn_tokens``. With several processes (or ``lockstep=True``) every rank
    plays the same number of turns, the most any row's episode can take (``max_turns`` if set),
    computed from the rows every rank holds; on one process the loop stops once all are done.
    Tokens and log-probabilities are cut together to each rollout's room.
    """

    def __init__(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        generate: GenerateFn | None = None,
        style: str | None = None,
        env_id: str = DEFAULT_ENV_ID,
        env_kwargs: Mapping[str, Any] | None = None,
        turn_tokens: int = DEFAULT_TURN_TOKENS,
        max_turns: int | None = None,
        lockstep: bool | None = None,
        records_path: str | os.PathLike[str] | None = None,
        agent_id: str = DEFAULT_ROLLOUT_AGENT_ID,
        agent_settings: Mapping[str, Any] | None = None,
        record_trajectory: bool = False,
    ) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        for row in rows:
            key = prompt_key(row["prompt"])
            if key in self.rows and self.rows[key].get("task_id") != row.get("task_id"):
                raise ConfigError(
                    f"two rows share one prompt (tasks {self.rows[key].get('task_id')!r} and "
                    f"{row.get('task_id')!r}); the rollout function could not tell them apart"
                )
            self.rows[key] = dict(row)
        self.generate = generate or transformers_generate
        self.style = style
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.turn_tokens = turn_tokens
        self.max_turns = max_turns
        self.lockstep = lockstep
        self._most_turns: int | None = None
        self._driver_config = {
            "records_path": records_path,
            "agent_id": agent_id,
            "agent_settings": agent_settings,
            "record_trajectory": record_trajectory,
        }
        self._drivers: list[EpisodeDriver] = []

    def _driver(self, index: int) -> EpisodeDriver:
        while len(self._drivers) <= index:
            self._drivers.append(EpisodeDriver(self.env_id, self.env_kwargs, **self._driver_config))
        return self._drivers[index]

    @property
    def records(self) -> list[Any]:
        """Records of every episode played so far (bounded per env; all on disk with a path)."""
        return [record for driver in self._drivers for record in driver.records]

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        """Play one episode per prompt; TRL's rollout output plus ``env_mask`` and ``env_reward``.

        A failing remote retriever ends the batch (a GRPO group needs all of its rollouts): its
        unfinished episodes are dropped unrecorded, none with a made-up reward, and the
        RetrieverError reaches the trainer (resume it from its checkpoint).
        """
        try:
            return self._play(prompts, trainer)
        except RetrieverError:
            for driver in self._drivers[: len(prompts)]:
                driver.void()
            raise

    def _play(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        tokenizer = _tokenizer(trainer)
        template_kwargs = dict(getattr(trainer, "chat_template_kwargs", None) or {})
        rollouts: list[_Rollout] = []
        for index, prompt in enumerate(prompts):
            row = self.rows.get(prompt_key(prompt))
            if row is None:
                raise ConfigError(
                    "a prompt is not among the rows given to make_rollout_func; pass the same "
                    "rows (train and eval datasets) that the trainer samples from"
                )
            driver = self._driver(index)
            driver.reset(row)
            style = self.style or str(row.get("style") or "") or _dialect_style(driver)
            tools = chat.tool_schemas() if style == TOOLS_STYLE else None
            ids = tokenizer.apply_chat_template(
                list(prompt),
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
                **({"tools": tools} if tools else {}),
                **template_kwargs,
            )
            rollouts.append(_Rollout(driver, _flat_ids(ids), style))
        limit = int(getattr(trainer, "max_completion_length", 0) or 0) or None
        eos_ids = _eos_ids(trainer)
        turn_tokens = self.turn_tokens if limit is None else min(self.turn_tokens, limit)
        lockstep_turns = self._lockstep_turns() if self._in_lockstep(trainer) else None
        turn = 0
        while any(r.active for r in rollouts) if lockstep_turns is None else turn < lockstep_turns:
            # Every rollout is in every call (a finished one with a one-token dummy prompt), every
            # call asks for the same number of tokens, and in lockstep every rank makes the same
            # number of calls: what TRL's collective vLLM generation (and ZeRO-3) requires.
            batch = [r.prompt_ids + r.completion_ids if r.active else r.prompt_ids[:1] for r in rollouts]
            outputs = self.generate(batch, trainer, turn_tokens)
            if len(outputs) != len(batch):
                raise ConfigError(
                    f"the generate function returned {len(outputs)} completions for {len(batch)} prompts; "
                    "it must return one (token ids, log-probabilities) pair per prompt"
                )
            for rollout, (ids, logprobs) in zip(rollouts, outputs):
                if rollout.active:
                    ids, logprobs = _cut(list(ids), logprobs, self._room(rollout, limit))
                    self._advance(rollout, ids, logprobs, tokenizer, template_kwargs, limit, eos_ids)
            turn += 1
        for rollout in rollouts:
            rollout.driver.cut()
        any_missing = any(not r.has_logprobs for r in rollouts)
        return {
            "prompt_ids": [r.prompt_ids for r in rollouts],
            "completion_ids": [r.completion_ids for r in rollouts],
            "logprobs": None if any_missing else [r.logprobs for r in rollouts],
            ENV_MASK_FIELD: [r.env_mask for r in rollouts],
            ENV_REWARD_FIELD: [r.driver.total_reward for r in rollouts],
        }

    def _in_lockstep(self, trainer: Any) -> bool:
        """Whether generation is collective: forced by ``lockstep``, else several processes."""
        if self.lockstep is not None:
            return self.lockstep
        accelerator = getattr(trainer, "accelerator", None)
        return int(getattr(accelerator, "num_processes", 1) or 1) > 1

    def _lockstep_turns(self) -> int:
        """The turn count every rank plays in lockstep: the most any row's episode can take.

        Computed from the rows alone, which every rank holds, so ranks agree without talking.
        """
        if self.max_turns is not None:
            return self.max_turns
        if self._most_turns is None:
            most = 0
            limits: dict[str, tuple[int, int]] = {}  # env -> (default budget T, invalid-action limit)
            for row in self.rows.values():
                env_id = str(row_value(row, "env_id") or self.env_id)
                kwargs = {**self.env_kwargs, **parse_env_kwargs(row_value(row, "env_kwargs"))}
                key = json.dumps([env_id, kwargs], sort_keys=True, default=repr)
                if key not in limits:
                    env = gym.make(env_id, **kwargs)
                    base = env.unwrapped
                    limits[key] = (
                        int(getattr(base, "max_tool_calls", 0)),
                        int(getattr(base, "max_invalid_actions", 0)),
                    )
                    env.close()
                default_budget, invalid_limit = limits[key]
                budget = row_value(row, "max_tool_calls")
                most = max(most, (default_budget if budget is None else int(budget)) + invalid_limit + 1)
            self._most_turns = most
        return self._most_turns

    def _room(self, rollout: _Rollout, limit: int | None) -> int:
        if limit is None:
            return self.turn_tokens
        return max(1, min(self.turn_tokens, limit - len(rollout.completion_ids)))

    def _advance(
        self,
        rollout: _Rollout,
        ids: list[int],
        logprobs: list[float] | None,
        tokenizer: Any,
        template_kwargs: dict[str, Any],
        limit: int | None,
        eos_ids: list[int],
    ) -> None:
        """Append one generated turn, step the env, and append the observation turn if it goes on."""
        rollout.completion_ids += ids
        rollout.env_mask += [MODEL_TOKEN] * len(ids)
        if logprobs is None:
            rollout.has_logprobs = False
            rollout.logprobs += [0.0] * len(ids)
        else:
            rollout.logprobs += logprobs
        rollout.turns += 1
        text = tokenizer.decode(ids, skip_special_tokens=True)
        result = rollout.driver.step(text)  # any reply, tool call or text, is the env's to judge
        if result.done or rollout.turns >= self._max_turns(rollout):
            rollout.active = False
            return
        # Close a turn cut by the token limit; a turn that ended on any EOS id is closed already
        # (Qwen2.5 ends on <|im_end|> or <|endoftext|>: neither gets a second end-of-turn token).
        closing = [] if ids and ids[-1] in eos_ids else [eos_ids[0]]
        suffix = closing + self._observation_ids(result.observation, tokenizer, template_kwargs, rollout)
        if limit is not None and len(rollout.completion_ids) + len(suffix) >= limit:
            rollout.active = False  # no room for the observation and another turn
            return
        rollout.completion_ids += suffix
        rollout.env_mask += [ENV_TOKEN] * len(suffix)
        rollout.logprobs += [0.0] * len(suffix)

    def _max_turns(self, rollout: _Rollout) -> int:
        if self.max_turns is not None:
            return self.max_turns
        env = rollout.driver.env.unwrapped
        return int(getattr(env, "budget", 0)) + int(getattr(env, "max_invalid_actions", 0)) + 1

    def _observation_ids(
        self, observation: str, tokenizer: Any, template_kwargs: dict[str, Any], rollout: _Rollout
    ) -> list[int]:
        """Tokens of the user turn with the observation plus the next assistant header.

        Computed like TRL's tool suffix: render a dummy exchange with and without the new turn and
        keep the difference after the end-of-turn token, so the model's own tokens are never
        re-tokenized.
        """
        message = chat.observation_message(rollout.style, observation)
        prefix_messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "x"}]
        prefix = _flat_ids(
            tokenizer.apply_chat_template(
                prefix_messages, tokenize=True, return_dict=False, **template_kwargs
            )
        )
        full = _flat_ids(
            tokenizer.apply_chat_template(
                [*prefix_messages, message],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
                **template_kwargs,
            )
        )
        eos = tokenizer.eos_token_id
        ends = [i for i, token in enumerate(prefix) if token == eos]
        if ends:
            prefix = prefix[: ends[-1] + 1]
        if full[: len(prefix)] != prefix:
            raise ConfigError("the chat template is not prefix-preserving; cannot append observation turns")
        return full[len(prefix) :]


def _cut(ids: list[int], logprobs: Any, room: int) -> tuple[list[int], list[float] | None]:
    """One turn's tokens and their log-probabilities cut together to the rollout's room."""
    if logprobs is None:
        return ids[:room], None
    values = [float("nan") if x is None else float(x) for x in logprobs]
    if len(values) != len(ids):
        raise ConfigError(
            f"the generate function returned {len(values)} log-probabilities for {len(ids)} tokens; "
            "return one per generated token (or None to let TRL compute them)"
        )
    return ids[:room], values[:room]


def _dialect_style(driver: EpisodeDriver) -> str:
    """The agent style that speaks the env's dialect (react, search-r1 or tools)."""
    dialect = getattr(driver.env.unwrapped, "dialect", "react")
    return {"react": "react", "tags": "search-r1", "json": TOOLS_STYLE}.get(dialect, chat.DEFAULT_STYLE)


def _flat_ids(ids: Any) -> list[int]:
    """Token ids from ``apply_chat_template`` (a list, a nested list or a BatchEncoding)."""
    if isinstance(ids, Mapping) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    ids = list(ids)
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return [int(x) for x in ids]


def make_rollout_func(rows: Iterable[Mapping[str, Any]], **options: Any) -> RolloutFunction:
    """A TRL ``rollout_func`` for text-dialect episodes over ``rows``; see :class:`RolloutFunction`."""
    return RolloutFunction(rows, **options)
