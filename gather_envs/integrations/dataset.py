"""Export a split's tasks as trainer dataset rows: Hugging Face ``datasets.Dataset`` and parquet.

One row per (task, budget T). Every layout carries the same episode fields, which the adapters map
onto ``env.reset(seed, options={"task_id", "max_tool_calls"})``:

========================  ==========================================================================
``env_id``                registered id, e.g. ``Gather-MultiHop-v0``
``env_kwargs``            JSON string of the env kwargs (``split``, ``dialect``, ``world``...)
``task_id``               the task (stable across processes and machines)
``seed``                  the episode seed (:func:`~gather_envs.evaluation.seeds.episode_seed`, i = 0)
``max_tool_calls``        the budget T of the episode
``family``, ``hops``      the task's family and hop count (for filtering and curricula)
``split``, ``style``      the split and the agent style whose prompt the row carries
========================  ==========================================================================

``prompt`` is a list of chat messages: the agent style's system prompt, then the env's own first
observation (the task prompt with the question, the action syntax and the budget), built by
resetting the env on that very task. Layouts (``layout=``):

- ``trl``: ``prompt`` plus the episode fields as top-level columns. TRL passes the whole row to
  ``environment.reset(**row)``; other columns are ignored by the trainer.
- ``verl``: verl's RL dataset schema: ``data_source`` (the env id), ``prompt``, ``ability``
  (``"search"``), ``reward_model`` (``{"style": "rule", "ground_truth": answer}``),
  ``agent_name`` (the agent loop registered by :mod:`gather_envs.integrations.verl`) and
  ``extra_info`` (the episode fields plus ``index``).
- ``skyrl``: SkyRL's schema: ``prompt``, ``env_class`` (``"gather"``), ``reward_spec``
  (``{"method": "env", "ground_truth": answer}``) and ``extra_info`` (the episode fields).
- ``openrlhf``: ``prompt`` and ``label``, the JSON string of the episode fields (OpenRLHF hands
  the label to the agent: ``--data.input_key prompt --data.label_key label``).

The gold answer appears only in the ``verl`` and ``skyrl`` layouts, whose schemas have a field for
it; the reward always comes from the env, never from that field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from gather_envs.errors import ConfigError
from gather_envs.evaluation.seeds import episode_seed, sample_tasks
from gather_envs.integrations import chat
from gather_envs.integrations.episodes import DEFAULT_ENV_ID, NESTED_ROW_KEY
from gather_envs.optional import require

LAYOUTS = ("trl", "verl", "skyrl", "openrlhf")
EXTRA = "datasets"
EPISODE_FIELDS = (
    "env_id",
    "env_kwargs",
    "task_id",
    "seed",
    "max_tool_calls",
    "family",
    "hops",
    "split",
    "style",
)
VERL_ABILITY = "search"
VERL_AGENT_NAME = "gather_agent"
SKYRL_ENV_CLASS = "gather"
DEFAULT_SPLIT = "train"


def task_rows(
    env_id: str = DEFAULT_ENV_ID,
    split: str = DEFAULT_SPLIT,
    *,
    style: str = chat.DEFAULT_STYLE,
    budgets: int | Sequence[int] | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    limit: int | None = None,
    seed: int = 0,
    system_prompt: bool = True,
    tool_call_format: str | None = None,
    examples: str | None = None,
) -> list[dict[str, Any]]:
    """One row per (task, budget) of a split, with the prompt and the episode fields.

    ``budgets`` defaults to the env's own T; ``limit`` keeps a seeded sample of that many tasks
    (in split order, so a smaller sample is a subset of a larger one); ``seed`` is the base seed of
    that sample and of the episode seeds. ``system_prompt=False`` leaves the style's system prompt
    out (the prompt is then the env's task prompt alone, which already states the action syntax).
    ``tool_call_format`` (from :func:`~gather_envs.integrations.chat.tool_call_format` of the
    model's tokenizer) writes every tool call the prompt shows in the chat template's own form, so
    a ``tools`` prompt asks for what the trainer's tool-call parser accepts; give the same format
    to :class:`~gather_envs.integrations.trl.GatherToolEnv`. ``examples`` replaces the style's
    worked example turns (a JSON file, as the agents' ``examples`` option; ``[]`` for none).
    """
    kwargs = dict(env_kwargs or {})
    kwargs["split"] = split
    env_dialect = str(kwargs.get("dialect", "react"))
    kwargs["dialect"] = chat.style_dialect(style, env_dialect)
    env = gym.make(env_id, **kwargs)
    try:
        base = env.unwrapped
        tasks = list(getattr(base, "tasks", ()))
        if limit is not None:
            keep = set(sample_tasks([t.task_id for t in tasks], limit, seed))
            tasks = [t for t in tasks if t.task_id in keep]
        if budgets is None:
            budget_list = [int(getattr(base, "max_tool_calls", 0))]
        elif isinstance(budgets, int):
            budget_list = [budgets]
        else:
            budget_list = [int(b) for b in budgets]
        if not budget_list:
            raise ConfigError("budgets is empty: give at least one tool-call budget T")
        kwargs_json = json.dumps(kwargs, sort_keys=True)

        def messages(observation: str) -> list[dict[str, Any]]:
            full = chat.prompt_messages(style, observation, kwargs["dialect"], examples)
            full = [{**m, "content": chat.show_tool_calls(m["content"], tool_call_format)} for m in full]
            return full if system_prompt else full[1:]

        rows = []
        for task in tasks:
            for budget in budget_list:
                episode = episode_seed(seed, task.task_id, budget, 0)
                observation, _ = env.reset(
                    seed=episode, options={"task_id": task.task_id, "max_tool_calls": budget}
                )
                rows.append(
                    {
                        "prompt": messages(observation),
                        "env_id": env_id,
                        "env_kwargs": kwargs_json,
                        "task_id": task.task_id,
                        "seed": episode,
                        "max_tool_calls": budget,
                        "family": task.family,
                        "hops": task.hops,
                        "split": split,
                        "style": style,
                        "answer": task.answer,
                    }
                )
        return rows
    finally:
        env.close()


def to_layout(rows: Iterable[Mapping[str, Any]], layout: str = "trl") -> list[dict[str, Any]]:
    """Canonical rows from :func:`task_rows` in one trainer's column layout (see the module doc)."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    out = []
    for index, row in enumerate(rows):
        episode = {key: row[key] for key in EPISODE_FIELDS}
        if layout == "trl":
            out.append({"prompt": list(row["prompt"]), **episode})
        elif layout == "verl":
            out.append(
                {
                    "data_source": row["env_id"],
                    "prompt": list(row["prompt"]),
                    "ability": VERL_ABILITY,
                    "reward_model": {"style": "rule", "ground_truth": row["answer"]},
                    "agent_name": VERL_AGENT_NAME,
                    NESTED_ROW_KEY: {**episode, "index": index},
                }
            )
        elif layout == "openrlhf":
            out.append({"prompt": list(row["prompt"]), "label": json.dumps(episode, sort_keys=True)})
        else:
            out.append(
                {
                    "prompt": list(row["prompt"]),
                    "env_class": SKYRL_ENV_CLASS,
                    "reward_spec": {"method": "env", "ground_truth": row["answer"]},
                    NESTED_ROW_KEY: episode,
                }
            )
    return out


def build_dataset(
    env_id: str = DEFAULT_ENV_ID, split: str = DEFAULT_SPLIT, *, layout: str = "trl", **options: Any
) -> Any:
    """A ``datasets.Dataset`` of a split's tasks in ``layout``; ``options`` go to :func:`task_rows`."""
    datasets = require("datasets", EXTRA)
    return datasets.Dataset.from_list(to_layout(task_rows(env_id, split, **options), layout))


def write_parquet(
    path: str | os.PathLike[str],
    env_id: str = DEFAULT_ENV_ID,
    split: str = DEFAULT_SPLIT,
    *,
    layout: str = "trl",
    **options: Any,
) -> Path:
    """Write a split's rows in ``layout`` to a parquet file (parent folders created); its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_dataset(env_id, split, layout=layout, **options).to_parquet(str(path))
    return path


def read_parquet(path: str | os.PathLike[str]) -> Any:
    """A ``datasets.Dataset`` read back from a parquet file written by :func:`write_parquet`."""
    datasets = require("datasets", EXTRA)
    return datasets.Dataset.from_parquet(os.fspath(path))
