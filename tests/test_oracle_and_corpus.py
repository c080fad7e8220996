"""Every test task is solvable along its gold path, and the gold path is really needed."""

from __future__ import annotations

import gymnasium as gym
import pytest
from conftest import SYNTHETIC_IDS

from gather_envs.scoring.normalize import answer_in_text
from gather_envs.tasks.builder import SHORTCUT_K


def follow_gold_path(env: gym.Env, task_id: str, budget: int | None = None) -> tuple[float, dict, list[str]]:
    options = {"task_id": task_id} if budget is None else {"task_id": task_id, "max_tool_calls": budget}
    observation, info = env.reset(seed=0, options=options)
    task = env.unwrapped.task
    seen = [observation]
    for step in task.gold_path[: info["max_tool_calls"]]:
        observation, *_ = env.step(f"search[{step.query}]")
        seen.append(observation)
    _, reward, terminated, _, info = env.step(f"answer[{task.answer}]")
    assert terminated
    return reward, info, seen


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
def test_gold_path_solves_every_test_task_with_exactly_hops_calls(env_id: str) -> None:
    env = gym.make(env_id)
    tasks = env.unwrapped.tasks
    assert len(tasks) >= 500
    for task in tasks:
        reward, info, seen = follow_gold_path(env, task.task_id)
        assert reward == 1.0, task.task_id
        assert info["tool_calls_used"] == len(task.gold_path)
        doc_titles = {env.unwrapped.corpus.doc(d).title for d in task.supporting_doc_ids}
        assert all(f"[{title}]" in "\n".join(seen) for title in doc_titles), task.task_id


def test_bridge_answers_appear_only_after_the_last_hop() -> None:
    """With T < hops the evidence for the answer is never shown: the budget really binds."""
    env = gym.make("Gather-MultiHop-v0")
    leaks = 0
    for task in env.unwrapped.tasks:
        _, _, seen = follow_gold_path(env, task.task_id, budget=task.hops - 1)
        last_doc = env.unwrapped.corpus.doc(task.supporting_doc_ids[-1])
        assert f"[{last_doc.title}] {last_doc.text}" not in "\n".join(seen)
        leaks += any(answer_in_text(task.answer, text) for text in seen)
    assert leaks / len(env.unwrapped.tasks) < 0.05


def test_no_bridge_test_task_is_a_shortcut() -> None:
    """The final supporting document is not in BM25's top-k for the question text alone."""
    env = gym.make("Gather-MultiHop-v0")
    corpus = env.unwrapped.corpus
    index = corpus.index()
    for split in corpus.splits:
        for task in corpus.tasks(split, "bridge"):
            final = corpus.position[task.supporting_doc_ids[-1]]
            assert final not in [doc for doc, _ in index.search(task.question, SHORTCUT_K)], task.task_id


def test_default_corpus_answers_follow_from_its_graph() -> None:
    """Rebuild the default world from the manifest's knobs and recompute every answer."""
    from test_world_and_tasks import recompute_answer

    from gather_envs.corpus.frozen import config_from_knobs, load_frozen
    from gather_envs.world.generator import generate_world

    corpus = load_frozen()
    world = generate_world(config_from_knobs(corpus.knobs))
    for tasks in corpus.splits.values():
        for task in tasks:
            assert recompute_answer(world, task) == task.answer, task.task_id
