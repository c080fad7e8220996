"""Scripted agents without an LLM: the gold-path oracle, random actions and a heuristic searcher.

- ``oracle`` follows the task's gold path (one search per step with the recorded query) and then
  answers the gold answer. It is the one agent that reads the task (through the corpus of the env
  given to its factory), so it is an upper bound and a check that every task is solvable. It stays
  honest about the budget: it answers the gold answer only when it has run the whole gold path
  (static tasks have an empty path: their documents are in the prompt), otherwise ``unknown``.
- ``random`` writes seeded random actions from the grammar: searches of random words it has seen,
  answers of a random word, number, ``yes`` or ``no``.
- ``heuristic`` (:mod:`gather_envs.agents.heuristic`) is a seeded, stochastic searcher that reads
  only the question and observations.

Every agent writes its actions in the env's dialect with the env's own syntax table
(:data:`gather_envs.envs.prompts.SYNTAX`), so agent and env never disagree.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from gather_envs.agents.base import Agent, EpisodePolicy, register_agent
from gather_envs.envs.actions import ANSWER, SEARCH
from gather_envs.envs.prompts import SYNTAX
from gather_envs.errors import ConfigError
from gather_envs.parameters import Parameter, parse_parameters

UNKNOWN_ANSWER = "unknown"
YES, NO = "yes", "no"

# random agent
RANDOM_SEARCH_PROBABILITY = 0.7
RANDOM_MAX_QUERY_WORDS = 3
RANDOM_MIN_WORD_LENGTH = 3

# heuristic agent
_PLACEHOLDER = {SEARCH: "<query>", ANSWER: "<answer>"}
_SEARCH_SYNTAX_INDEX = {SEARCH: 0, ANSWER: 1}

WORD = re.compile(r"\w+")
NUMBER = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+\b")


def action_text(dialect: str, kind: str, argument: str) -> str:
    """``argument`` written as a ``kind`` action in ``dialect``, from the env's syntax table.

    >>> action_text("react", "search", "Brathis Institute")
    'search[Brathis Institute]'
    >>> action_text("tags", "answer", "yes")
    '<answer>yes</answer>'
    >>> action_text("json", "answer", 'say "hi"')
    '{"name": "answer", "arguments": {"answer": "say \\\\"hi\\\\""}}'
    """
    if dialect not in SYNTAX:
        raise ConfigError(f"unknown dialect {dialect!r}; choose one of {tuple(SYNTAX)}")
    template = SYNTAX[dialect][_SEARCH_SYNTAX_INDEX[kind]]
    argument = " ".join(argument.split())
    if dialect == "json":
        value = json.dumps(argument, ensure_ascii=False)[1:-1]
    elif dialect == "react":
        value = argument.replace("]", ")")  # a bracket argument ends at the first "]"
    else:
        value = argument.replace("</", "< /")  # a tag argument ends at the closing tag
    head, _, tail = template.rpartition(_PLACEHOLDER[kind])  # tags: the placeholder is the 2nd tag
    return f"{head}{value}{tail}"


def parse_options(agent: Agent, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``agent``'s declared options, with every default filled in."""
    return parse_parameters(
        f"agent {agent.agent_id!r}", agent.options or (), options, defaults=True, noun="option"
    )


# -- oracle --------------------------------------------------------------------------------------


class OracleAgent(Agent):
    """Follows the gold path, then answers the gold answer (``unknown`` if the path was cut short)."""

    agent_id = "oracle"
    options = ()

    def __init__(self, env: Any, **options: Any) -> None:
        parse_options(self, options)
        self._corpus = env.corpus
        self.dialect: str = env.dialect

    def settings(self) -> dict[str, Any]:
        return {"agent": self.agent_id, "dialect": self.dialect}

    def start(self, seed: int) -> EpisodePolicy:
        return _OraclePolicy(self._corpus, self.dialect)


class _OraclePolicy(EpisodePolicy):
    def __init__(self, corpus: Any, dialect: str) -> None:
        self._corpus = corpus
        self._dialect = dialect
        self._searched = 0

    def act(self, observation: str, info: dict[str, Any]) -> str:
        task = self._corpus.task(info["task_id"])
        path = task.gold_path
        if self._searched < len(path) and info.get("tool_calls_left", 0) > 0:
            self._searched += 1
            return action_text(self._dialect, SEARCH, path[self._searched - 1].query)
        answer = task.answer if self._searched == len(path) else UNKNOWN_ANSWER
        return action_text(self._dialect, ANSWER, answer)

    def usage(self) -> dict[str, Any]:
        return {"searches": self._searched}


# -- random --------------------------------------------------------------------------------------


class RandomAgent(Agent):
    """Seeded random actions from the grammar, built from words seen in the observations."""

    agent_id = "random"
    options = (
        Parameter(
            "search_probability",
            float,
            RANDOM_SEARCH_PROBABILITY,
            minimum=0.0,
            maximum=1.0,
            help="chance that an action is a search while calls are left",
        ),
    )

    def __init__(self, env: Any, **options: Any) -> None:
        self.search_probability: float = parse_options(self, options)["search_probability"]
        self.dialect: str = env.dialect

    def settings(self) -> dict[str, Any]:
        return {
            "agent": self.agent_id,
            "dialect": self.dialect,
            "search_probability": self.search_probability,
        }

    def start(self, seed: int) -> EpisodePolicy:
        return _RandomPolicy(np.random.default_rng(seed), self.dialect, self.search_probability)


class _RandomPolicy(EpisodePolicy):
    def __init__(self, rng: np.random.Generator, dialect: str, search_probability: float) -> None:
        self._rng = rng
        self._dialect = dialect
        self._search_probability = search_probability
        self._words: dict[str, None] = {}  # insertion-ordered set of seen words
        self._numbers: dict[str, None] = {}

    def act(self, observation: str, info: dict[str, Any]) -> str:
        for word in WORD.findall(observation):
            if len(word) >= RANDOM_MIN_WORD_LENGTH and not word.isdigit():
                self._words.setdefault(word)
        for number in NUMBER.findall(observation):
            self._numbers.setdefault(number)
        words = list(self._words) or [UNKNOWN_ANSWER]
        if info.get("tool_calls_left", 0) > 0 and self._rng.random() < self._search_probability:
            size = int(self._rng.integers(1, RANDOM_MAX_QUERY_WORDS + 1))
            query = " ".join(words[int(i)] for i in self._rng.integers(len(words), size=size))
            return action_text(self._dialect, SEARCH, query)
        pools = [words, list(self._numbers) or words, [YES, NO]]
        pool = pools[int(self._rng.integers(len(pools)))]
        return action_text(self._dialect, ANSWER, pool[int(self._rng.integers(len(pool)))])


# -- heuristic -----------------------------------------------------------------------------------


register_agent(OracleAgent.agent_id, OracleAgent)
register_agent(RandomAgent.agent_id, RandomAgent)
