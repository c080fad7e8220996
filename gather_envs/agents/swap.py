"""The cross-policy swap: the first J turns of every episode from policy A, the rest from policy B.

It is an ordinary agent (``--agent swap --agent-option first=A --agent-option then=B
--agent-option after=J``), so a swap run has the same seeds, records, resume and retries as any
run, and ``gather-envs analyze swap`` compares it with the pure runs of A and B on the same cells.
A composite agent spec was chosen over ``eval --then-agent/--swap-after`` flags because it needs
nothing new in the runner and composes with every other flag and the Python API.

Both policies are started with the episode's seed. At the hand-over, B is given the turns A
played (observation, info and A's action, in order) through ``take_over`` when its policy has
one (the LLM agents do: the turns become their conversation, as if B had written A's replies).
A policy without it is *replayed*: it is shown each earlier observation and its replies are
discarded, so it knows the question and what the searches returned (a scripted agent reads the
question from the first observation only) but counts its own replayed replies as its past
actions. Each record notes the swap (``extra["swap"]``: first, then, after, the turns A played,
and the hand-over, ``take_over`` or ``replay``); ``usage`` adds both policies' counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gather_envs.agents.base import Agent, EpisodePolicy, make_agent, register_agent
from gather_envs.agents.llm import LOGPROBS_KEY
from gather_envs.errors import ConfigError
from gather_envs.parameters import Parameter, parse_parameters

SWAP_KEY = "swap"
"""Key in a record's ``extra`` (and in the agent settings) that describes the swap."""

MAX_SWAP_TURN = 1000
"""Largest J accepted: far beyond any budget, it only catches typos such as after=10000."""

HANDOVER_TAKE_OVER = "take_over"
HANDOVER_REPLAY = "replay"

Turn = tuple[str, dict[str, Any], str]
"""One played turn handed to the next policy: (observation, info, action)."""


def swap_agent_id(first: str, then: str, after: int) -> str:
    """The agent id of a swap run, e.g. ``oracle>random@2`` (2 turns of oracle, then random)."""
    return f"{first}>{then}@{after}"


SWAP_OPTIONS = (
    Parameter("first", str, None, optional=False, help="registered agent for the first turns"),
    Parameter("then", str, None, optional=False, help="registered agent for the remaining turns"),
    Parameter("after", int, None, minimum=0, maximum=MAX_SWAP_TURN, optional=False, help="turns J of first"),
    Parameter("first_options", dict, None, help="options of the first agent, as a JSON object"),
    Parameter("then_options", dict, None, help="options of the second agent, as a JSON object"),
)


class SwapAgent(Agent):
    """Policy ``first`` for the first ``after`` turns of each episode, then policy ``then``."""

    options = SWAP_OPTIONS

    def __init__(self, env: Any, **options: Any) -> None:
        given = {key: value for key, value in options.items() if not isinstance(value, Agent)}
        agents = {key: value for key, value in options.items() if isinstance(value, Agent)}
        parsed = parse_parameters("agent 'swap'", SWAP_OPTIONS, given, defaults=True, noun="option")
        for name in ("first", "then", "after"):
            if parsed[name] is None and name not in agents:
                raise ConfigError(f"agent 'swap' needs the option {name}, e.g. --agent-option {name}=...")
        self.after: int = parsed["after"]
        self.first = agents.get("first") or make_agent(
            parsed["first"], env, **(parsed["first_options"] or {})
        )
        self.then = agents.get("then") or make_agent(parsed["then"], env, **(parsed["then_options"] or {}))
        self.agent_id = swap_agent_id(self.first.agent_id, self.then.agent_id, self.after)

    def settings(self) -> dict[str, Any]:
        return {
            "agent": "swap",
            SWAP_KEY: {"first": self.first.agent_id, "then": self.then.agent_id, "after": self.after},
            "first_settings": self.first.settings(),
            "then_settings": self.then.settings(),
        }

    def start(self, seed: int) -> EpisodePolicy:
        return _SwapPolicy(self, self.first.start(seed), self.then.start(seed))


class _SwapPolicy(EpisodePolicy):
    def __init__(self, agent: SwapAgent, first: EpisodePolicy, then: EpisodePolicy) -> None:
        self._agent = agent
        self._first, self._then = first, then
        self._turns: list[Turn] = []
        self._handover: str | None = None  # None until the hand-over happens

    def act(self, observation: str, info: dict[str, Any]) -> str:
        if len(self._turns) < self._agent.after:
            action = self._first.act(observation, info)
            self._turns.append((observation, dict(info), action))
            return action
        if self._handover is None:
            take_over = getattr(self._then, "take_over", None)
            if callable(take_over):
                self._handover = HANDOVER_TAKE_OVER
                take_over(list(self._turns))
            else:
                self._handover = HANDOVER_REPLAY
                for past_observation, past_info, _ in self._turns:
                    self._then.act(past_observation, past_info)
        return self._then.act(observation, info)

    def usage(self) -> dict[str, Any]:
        return _merged(self._first.usage(), self._then.usage())

    def record_extra(self) -> dict[str, Any]:
        first, then = self._first.record_extra(), self._then.record_extra()
        extra = {**first, **then}
        if LOGPROBS_KEY in first and LOGPROBS_KEY in then:  # one call list, in turn order
            calls = [*first[LOGPROBS_KEY]["calls"], *then[LOGPROBS_KEY]["calls"]]
            extra[LOGPROBS_KEY] = {**then[LOGPROBS_KEY], "calls": calls}
        extra[SWAP_KEY] = {
            "first": self._agent.first.agent_id,
            "then": self._agent.then.agent_id,
            "after": self._agent.after,
            "first_turns": len(self._turns),
            "handover": self._handover,
        }
        return extra


def _merged(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two usage dicts summed key by key where both values are numbers, else B's value wins."""
    merged = dict(a)
    for key, value in b.items():
        old = merged.get(key)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, value))
        merged[key] = old + value if numbers else value
    return merged


register_agent("swap", SwapAgent)
