"""The declared training reward (em, f1, cover_em): paid on the answer, recorded, success unchanged."""

from __future__ import annotations

import pytest
from conftest import small_env

from gather_envs.envs.gather_env import REWARD_KINDS
from gather_envs.errors import ConfigError
from gather_envs.metrics.results import results_from_records
from gather_envs.reports.tables import render_results
from gather_envs.scoring import answer_covers, answer_f1
from gather_envs.wrappers.record import RecordPassAtKT


def answer_once(reward: str, answer: str):
    env = RecordPassAtKT(small_env("bridge", reward=reward))
    env.reset(seed=0, options={"task_index": 0})
    task = env.unwrapped.task
    _, paid, terminated, _, info = env.step(f"answer[{answer.format(gold=task.answer)}]")
    assert terminated
    return task, paid, info, env.records[-1]


@pytest.mark.parametrize("reward", REWARD_KINDS)
def test_a_correct_answer_pays_one_and_succeeds_under_every_reward(reward: str) -> None:
    _, paid, info, record = answer_once(reward, "{gold}")
    assert paid == 1.0 and info["success"] and record.success
    assert record.reward_kind == info["reward_kind"] == reward and record.reward == 1.0


@pytest.mark.parametrize("reward", REWARD_KINDS)
def test_an_unrelated_answer_pays_nothing_under_every_reward(reward: str) -> None:
    _, paid, info, record = answer_once(reward, "zzz qqq")
    assert paid == 0.0 and not info["success"] and not record.success


def test_an_answer_that_contains_the_gold_one_is_paid_by_f1_and_cover_but_never_succeeds() -> None:
    padded = "{gold} and several more words"
    task, em, em_info, _ = answer_once("em", padded)
    _, f1, f1_info, _ = answer_once("f1", padded)
    _, cover, cover_info, record = answer_once("cover_em", padded)
    prediction = padded.format(gold=task.answer)
    assert em == 0.0
    assert 0.0 < f1 < 1.0 and f1 == pytest.approx(answer_f1(prediction, task)) == f1_info["f1"]
    assert cover == 1.0 and answer_covers(prediction, task)
    assert not any(info["success"] for info in (em_info, f1_info, cover_info)) and not record.success
    assert em_info["f1"] == f1_info["f1"] == cover_info["f1"]  # the info's metrics do not depend on it


def test_cover_needs_whole_tokens_of_the_gold_answer() -> None:
    task, cover, _, _ = answer_once("cover_em", "{gold}")
    word = task.answer.split()[0]
    _, partial, _, _ = answer_once("cover_em", word[:-1] + " plus more")
    assert cover == 1.0 and partial == 0.0


def test_an_unknown_reward_is_refused_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match="cover_em"):
        small_env("bridge", reward="accuracy")


def test_the_report_shows_the_reward_kind() -> None:
    _, _, _, record = answer_once("f1", "{gold}")
    table = render_results(results_from_records([record], bootstrap=0))
    assert "reward f1 " in table
