"""Scripted agents: the oracle bounds every task, random rarely wins, the heuristic's PASS@(k,T) grows."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from conftest import SMALL_WORLD, SYNTHETIC_IDS, small_env

import gather_envs.agents.scripted  # noqa: F401  (registers oracle, random, heuristic)
from gather_envs.agents import agent_names, make_agent
from gather_envs.agents.heuristic import HeuristicAgent
from gather_envs.agents.scripted import UNKNOWN_ANSWER, action_text
from gather_envs.envs.actions import ANSWER, DIALECTS, INVALID, SEARCH, parse_action
from gather_envs.errors import ConfigError
from gather_envs.evaluation import evaluate
from gather_envs.metrics.passk import pass_at_k

HEURISTIC_N = 32
SELECT_SEEDS = 4  # episodes per select-comparison task
SELECT_WORLD = {**SMALL_WORLD, "tasks_per_family": 24}
HEURISTIC_TASKS = 24
KS = (1, 4, 8, HEURISTIC_N)


def play(env: gym.Env, agent_name: str, seed: int, **options) -> tuple[dict, list[str]]:
    """One episode of a registered agent; the final info and the actions it took."""
    agent = make_agent(agent_name, env)
    observation, info = env.reset(seed=seed, options=options)
    policy = agent.start(seed)
    actions = []
    while True:
        actions.append(policy.act(observation, info))
        observation, _, terminated, truncated, info = env.step(actions[-1])
        if terminated or truncated:
            return info, actions


def pass_at_k_by_budget(records: list) -> dict[int, dict[int, float]]:
    """Empirical PASS@(k,T): the mean over tasks of the unbiased pass@k, per budget T."""
    successes: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in records:
        successes[record.budget][record.task_id] += int(record.success)
    table = {}
    for budget, per_task in successes.items():
        counts = np.array(list(per_task.values()))
        table[budget] = {k: float(np.mean(pass_at_k(HEURISTIC_N, counts, k))) for k in KS}
    return table


def test_all_three_agents_are_registered() -> None:
    assert {"oracle", "random", "heuristic"} <= set(agent_names())


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("argument", ["Brathis Institute", 'a "quoted" ]tricky</answer> {text}'])
def test_action_text_round_trips_through_the_parser(dialect: str, argument: str) -> None:
    for kind in (SEARCH, ANSWER):
        parsed = parse_action(action_text(dialect, kind, argument))
        assert parsed.kind == kind
        assert parsed.argument.split()[0] == argument.split()[0]


def test_action_text_rejects_an_unknown_dialect() -> None:
    with pytest.raises(ConfigError, match="unknown dialect"):
        action_text("xml", SEARCH, "x")


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
def test_oracle_solves_every_test_task_with_exactly_its_gold_path(env_id: str) -> None:
    env = gym.make(env_id)
    for index, task in enumerate(env.unwrapped.tasks):
        info, _ = play(env, "oracle", seed=index, task_index=index)
        assert info["success"], task.task_id
        assert info["tool_calls_used"] == len(task.gold_path), task.task_id


@pytest.mark.parametrize("dialect", DIALECTS)
def test_oracle_speaks_the_env_dialect(dialect: str) -> None:
    env = small_env("bridge", dialect=dialect)
    info, actions = play(env, "oracle", seed=0, task_index=0)
    assert info["success"] and info["invalid_actions"] == 0
    assert all(parse_action(a).kind != INVALID for a in actions)


def test_oracle_fails_every_bridge_task_when_the_budget_is_below_its_hops() -> None:
    env = gym.make("Gather-MultiHop-v0")
    for index, task in enumerate(env.unwrapped.tasks):
        info, _ = play(env, "oracle", seed=index, task_index=index, max_tool_calls=task.hops - 1)
        assert not info["success"], task.task_id
        assert info["answer"] == UNKNOWN_ANSWER
        assert info["tool_calls_used"] == task.hops - 1


@pytest.mark.parametrize("env_id", SYNTHETIC_IDS)
def test_random_agent_never_crashes_and_rarely_succeeds(env_id: str) -> None:
    env = gym.make(env_id)
    successes = 0
    episodes = 60
    for seed in range(episodes):
        info, actions = play(env, "random", seed=seed, task_index=seed % len(env.unwrapped.tasks))
        assert all(parse_action(a).kind != INVALID for a in actions)
        assert info["tool_calls_used"] <= info["max_tool_calls"]
        successes += info["success"]
    # yes/no comparisons are coin flips; elsewhere random answers almost never match
    assert successes / episodes < (0.5 if env_id == "Gather-Compare-v0" else 0.1)


@pytest.mark.parametrize("name", ["random", "heuristic"])
def test_seeded_agents_repeat_their_episodes(name: str) -> None:
    env = gym.make("Gather-MultiHop-v0")
    first = play(env, name, seed=3, task_index=5)[1]
    assert play(env, name, seed=3, task_index=5)[1] == first
    others = {tuple(play(env, name, seed=s, task_index=5)[1]) for s in range(8)}
    assert len(others) > 1


def test_scripted_agents_refuse_unknown_options() -> None:
    env = gym.make("Gather-MultiHop-v0")
    for name in ("oracle", "random", "heuristic"):
        with pytest.raises(ConfigError, match="no option"):
            make_agent(name, env, temperature=1.0)


def test_heuristic_pass_at_k_rises_with_budget_and_k_on_bridge_tasks() -> None:
    records = evaluate(
        "Gather-MultiHop-v0",
        "heuristic",
        n=HEURISTIC_N,
        budgets=(1, 2, 5),
        tasks=HEURISTIC_TASKS,
        seed=0,
        progress=False,
    )
    table = pass_at_k_by_budget(records)
    for budget in table:
        values = [table[budget][k] for k in KS]
        assert values == sorted(values), (budget, values)
    # every bridge task needs >= 2 searches: with one, no evidence for the answer is ever shown
    assert table[1][HEURISTIC_N] < 0.05
    assert table[1][HEURISTIC_N] < table[2][HEURISTIC_N] < table[5][HEURISTIC_N]
    assert table[1][1] < table[5][1]
    # pass@1 well below pass@k: the heuristic is stochastic, and k tries help a lot
    assert table[5][1] < 0.5 * table[5][HEURISTIC_N]


def test_heuristic_pass_at_k_rises_with_k_on_binary_comparison_tasks() -> None:
    """On the opt-in yes/no and which-of-two styles a guessing searcher's pass@k rises with k."""
    world = {
        **SMALL_WORLD,
        "tasks_per_family": HEURISTIC_TASKS,
        "comparison_styles": ["earlier", "same", "which"],
    }
    records = evaluate(
        "Gather-v0",
        "heuristic",
        n=HEURISTIC_N,
        budgets=(1, 2),
        tasks=HEURISTIC_TASKS,
        progress=False,
        env_kwargs={"family": "comparison", "world": world},
    )
    table = pass_at_k_by_budget(records)
    assert table[2][1] + 0.2 < table[2][HEURISTIC_N]
    assert table[1][1] < table[2][1]


def test_heuristic_answers_static_tasks_from_the_documents_in_the_prompt() -> None:
    env = gym.make("Gather-Static-v0")
    wins = sum(play(env, "heuristic", seed=s, task_index=s)[0]["success"] for s in range(40))
    assert wins > 0


def select_env() -> gym.Env:
    """The small world's default (select-style) comparisons: a fact of whichever of X and Y wins."""
    return gym.make("Gather-v0", family="comparison", world=SELECT_WORLD)


def select_success_rate(env: gym.Env, budget: int) -> float:
    episodes = [
        play(env, "heuristic", seed=s, task_index=i, max_tool_calls=budget)[0]["success"]
        for i in range(len(env.unwrapped.tasks))
        for s in range(SELECT_SEEDS)
    ]
    return sum(episodes) / len(episodes)


def test_heuristic_answers_most_select_comparisons_given_searches_for_both_entities() -> None:
    env = select_env()
    assert all(t.kind.startswith("select.") for t in env.unwrapped.tasks)
    full, one = select_success_rate(env, 5), select_success_rate(env, 1)
    # T=5 covers both lookups and a full-name retry of each (measured 1.0 on this world): only a
    # retrieval miss of an exact name could fail it
    assert full >= 0.8
    # T=1 reads one entity's year, so it answers that one's fact: right when it is the winner, about
    # half the time (measured 0.39; more when the other's document came back as well)
    assert 0.2 <= one <= 0.75
    assert one + 0.25 < full


def test_heuristic_answers_static_select_comparisons_from_the_prompt_documents() -> None:
    env = gym.make("Gather-Static-v0")
    select = [i for i, t in enumerate(env.unwrapped.tasks) if t.kind.startswith("select.")][:20]
    infos = [play(env, "heuristic", seed=i, task_index=i)[0] for i in select]
    assert all(info["tool_calls_used"] == 0 for info in infos)
    # both documents are in the prompt, so reading them is exact (measured 1.0)
    assert sum(info["success"] for info in infos) >= 0.9 * len(infos)


def test_heuristic_select_episodes_repeat_for_a_seed() -> None:
    env = select_env()
    for index in range(6):
        assert play(env, "heuristic", seed=index, task_index=index) == play(
            env, "heuristic", seed=index, task_index=index
        )


def test_heuristic_needs_only_observations_and_the_budget_not_the_task() -> None:
    """Built on a stand-in env with nothing but a dialect and fed only the budget in ``info``, the
    heuristic takes the same actions as the registered one: it never reads the task record."""
    env = select_env()
    blind = HeuristicAgent(SimpleNamespace(dialect=env.unwrapped.dialect))
    for index in range(len(env.unwrapped.tasks)):
        expected = play(env, "heuristic", seed=index, task_index=index)
        observation, info = env.reset(seed=index, options={"task_index": index})
        policy, actions = blind.start(index), []
        while True:
            actions.append(policy.act(observation, {"tool_calls_left": info["tool_calls_left"]}))
            observation, _, terminated, truncated, info = env.step(actions[-1])
            if terminated or truncated:
                break
        assert actions == expected[1]
        assert info["success"] == expected[0]["success"]
