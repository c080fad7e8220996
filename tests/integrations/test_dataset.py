"""Dataset export: rows carry the env's own first observation and survive parquet round trips."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

datasets = pytest.importorskip("datasets", reason="dataset export needs the [datasets] extra")
pytest.importorskip("pyarrow", reason="parquet export needs pyarrow (the [datasets] extra)")

from gather_envs.agents.llm import load_examples  # noqa: E402
from gather_envs.integrations import chat  # noqa: E402
from gather_envs.integrations.dataset import (  # noqa: E402
    LAYOUTS,
    build_dataset,
    read_parquet,
    task_rows,
    to_layout,
    write_parquet,
)

from .conftest import ENV_ID  # noqa: E402

LIMIT = 3


@pytest.mark.parametrize("style", ["react", "search-r1", "tools"])
def test_prompt_is_the_style_system_prompt_then_the_envs_first_observation(style):
    rows = task_rows(ENV_ID, "train", style=style, limit=LIMIT, budgets=[1, 3])
    assert len(rows) == 2 * LIMIT
    dialect = chat.style_dialect(style)
    env = gym.make(ENV_ID, split="train", dialect=dialect)
    for row in rows:
        observation, info = env.reset(
            seed=row["seed"], options={"task_id": row["task_id"], "max_tool_calls": row["max_tool_calls"]}
        )
        system, user = row["prompt"]
        assert system == {"role": "system", "content": chat.system_prompt(style)}
        assert user == {"role": "user", "content": observation}
        assert (row["family"], row["hops"]) == (info["family"], info["hops"])
        assert json.loads(row["env_kwargs"]) == {"split": "train", "dialect": dialect}


def test_limit_is_a_seeded_sample_and_smaller_samples_are_subsets():
    small = {r["task_id"] for r in task_rows(ENV_ID, "train", limit=2)}
    large = {r["task_id"] for r in task_rows(ENV_ID, "train", limit=4)}
    assert len(small) == 2 and small < large
    assert small == {r["task_id"] for r in task_rows(ENV_ID, "train", limit=2)}


def test_system_prompt_can_be_left_out():
    (row,) = task_rows(ENV_ID, "train", limit=1, system_prompt=False)
    assert [m["role"] for m in row["prompt"]] == ["user"]


def test_worked_examples_can_be_replaced_or_left_out(tmp_path):
    (shipped,) = task_rows(ENV_ID, "train", style="act", limit=1)
    assert len(shipped["prompt"]) == 2 + len(load_examples("act_examples.json"))
    none = tmp_path / "none.json"
    none.write_text("[]")
    (bare,) = task_rows(ENV_ID, "train", style="act", limit=1, examples=str(none))
    assert bare["prompt"] == [shipped["prompt"][0], shipped["prompt"][-1]]
    mine = [{"role": "user", "content": "Question: q?"}, {"role": "assistant", "content": "answer[a]"}]
    (own := tmp_path / "own.json").write_text(json.dumps(mine))
    (row,) = task_rows(ENV_ID, "train", style="act", limit=1, examples=str(own))
    assert row["prompt"] == [shipped["prompt"][0], *mine, shipped["prompt"][-1]]


def test_layout_columns_are_what_each_trainer_reads():
    rows = task_rows(ENV_ID, "test", limit=1)
    trl, verl, skyrl, openrlhf = (to_layout(rows, layout)[0] for layout in LAYOUTS)
    assert {"prompt", "task_id", "seed", "max_tool_calls", "env_id", "env_kwargs"} <= set(trl)
    assert "answer" not in trl  # the env is the only judge; TRL passes rows to reset(**row)
    assert set(verl) == {"data_source", "prompt", "ability", "reward_model", "agent_name", "extra_info"}
    assert verl["reward_model"] == {"style": "rule", "ground_truth": rows[0]["answer"]}
    assert verl["extra_info"]["task_id"] == rows[0]["task_id"]
    assert set(skyrl) == {"prompt", "env_class", "reward_spec", "extra_info"}
    assert set(openrlhf) == {"prompt", "label"}
    assert json.loads(openrlhf["label"])["task_id"] == rows[0]["task_id"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_parquet_round_trip_keeps_every_row(tmp_path, layout):
    path = write_parquet(tmp_path / "sub" / f"{layout}.parquet", ENV_ID, "train", layout=layout, limit=LIMIT)
    back = read_parquet(path)
    original = build_dataset(ENV_ID, "train", layout=layout, limit=LIMIT)
    assert isinstance(back, datasets.Dataset)
    assert back.to_list() == original.to_list()
