"""Every test task is solvable along its gold path, and the gold path is really needed."""

from __future__ import annotations

import gymnasium as gym
import pytest
from conftest import SYNTHETIC_IDS

from gather_envs.corpus.frozen import load_frozen
from gather_envs.envs.registration import ID_FOR_FAMILY
from gather_envs.scoring.normalize import answer_in_text
from gather_envs.tasks.builder import GUARANTEED_TOP_K


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
    env = gym.make(ID_FOR_FAMILY["bridge"])
    leaks = 0
    for task in env.unwrapped.tasks:
        _, _, seen = follow_gold_path(env, task.task_id, budget=task.hops - 1)
        last_doc = env.unwrapped.corpus.doc(task.supporting_doc_ids[-1])
        assert f"[{last_doc.title}] {last_doc.text}" not in "\n".join(seen)
        leaks += any(answer_in_text(task.answer, text) for text in seen)
    assert leaks / len(env.unwrapped.tasks) < 0.05


def hop_skips(env: gym.Env, task_id: str) -> list[str]:
    """Searches (the question, then each earlier hop's gold query) whose results show the final document."""
    env.reset(seed=0, options={"task_id": task_id})
    task = env.unwrapped.task
    final = env.unwrapped.corpus.doc(task.supporting_doc_ids[-1]).title
    skips = []
    for query in [task.question, *(step.query for step in task.gold_path[:-1])]:
        observation, *_ = env.step(f"search[{query}]")
        if f"[{final}]" in observation:
            skips.append(query)
    return skips


@pytest.mark.parametrize("scope", ["world", "distractor"])
@pytest.mark.parametrize("split", ["test", "train"])
def test_no_bridge_task_lets_a_hop_be_skipped_in_either_scope_up_to_the_guaranteed_top_k(
    scope: str, split: str
) -> None:
    """Played through the real env: neither the question text nor an earlier hop's query shows the
    final supporting document, in both scopes, for every top_k up to GUARANTEED_TOP_K."""
    for top_k in range(1, GUARANTEED_TOP_K + 1):
        env = gym.make(ID_FOR_FAMILY["bridge"], scope=scope, top_k=top_k, split=split)
        tasks = env.unwrapped.tasks
        assert len(tasks) >= 500
        for task in tasks:
            assert hop_skips(env, task.task_id) == [], (scope, top_k, task.task_id)


def test_published_hop_skip_rates_match_a_replay_at_top_k_10() -> None:
    """The manifest's measured (not guaranteed) rates at top_k = 10 are what the env really shows."""
    import json

    from gather_envs.corpus.frozen import DEFAULT_CORPUS, corpora_root

    manifest = json.loads((corpora_root() / DEFAULT_CORPUS / "manifest.json").read_text())
    rates = manifest["hop_skip_rates"]
    assert rates["guaranteed_top_k"] == GUARANTEED_TOP_K
    for scope in ("world", "distractor"):
        assert all(rates["test"][scope][str(k)] == 0.0 for k in range(1, GUARANTEED_TOP_K + 1))
        env = gym.make(ID_FOR_FAMILY["bridge"], scope=scope, top_k=10)
        tasks = env.unwrapped.tasks
        skipped = sum(bool(hop_skips(env, task.task_id)) for task in tasks)
        assert rates["test"][scope]["10"] == round(skipped / len(tasks), 6), scope


def test_train_tasks_are_solvable_in_their_own_world() -> None:
    """The train split searches the train world: its gold paths work there, not in the test world."""
    for family in ("bridge", "comparison", "single-hop"):
        env = gym.make(ID_FOR_FAMILY[family], split="train")
        for task in env.unwrapped.tasks[::10]:
            reward, info, _ = follow_gold_path(env, task.task_id)
            assert reward == 1.0 and info["tool_calls_used"] == len(task.gold_path), task.task_id
    corpus = load_frozen()
    test_world = {d.doc_id for d in corpus.documents_of("test")}
    train_world = {d.doc_id for d in corpus.documents_of("train")}
    assert test_world and train_world and not test_world & train_world
    assert len(test_world) + len(train_world) == len(corpus.documents)


def test_default_corpus_answers_follow_from_its_graph() -> None:
    """Rebuild the default world from the manifest's knobs and recompute every answer."""
    from test_world_and_tasks import recompute_answer

    from gather_envs.corpus.frozen import config_from_knobs
    from gather_envs.world.generator import generate_worlds

    corpus = load_frozen()
    worlds = generate_worlds(config_from_knobs(corpus.knobs))
    for split, tasks in corpus.splits.items():
        for task in tasks:
            assert recompute_answer(worlds[split], task) == task.answer, task.task_id
