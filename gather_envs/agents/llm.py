"""LLM agents: ``react``, ``search-r1``, ``direct`` and ``tools``, on any :class:`ChatBackend`.

Each agent speaks one dialect (``direct`` speaks the env's) and refuses an env whose prompt shows
another, so the syntax in the system prompt, the grammar and the env's observations always agree.
The system prompts are files in ``gather_envs/agents/prompts/`` whose ``$search`` and ``$answer``
placeholders are filled from the env's syntax table; the budget reaches the model through the
env's observations, and the constraint for each call allows a search only while calls are left.

The conversation is kept as chat messages: the system prompt, the task prompt, then one assistant
message per action and one message per observation. **Truncation policy**: before each call the
prompt must fit ``context_tokens - max_tokens``; the oldest search results are replaced, one at a
time, by a short note (the task prompt, the newest observation and every action stay); if that is
not enough, the longest remaining message loses characters from its middle. An agent never fails
for lack of context; it only forgets old observations.

Sampling settings (temperature, top_p, max_tokens, seed, stop sequences) are explicit options and
part of :meth:`LLMAgent.settings`, which the runner records with every result; each call's seed is
drawn from ``random.Random(f"{seed}:{episode seed}")``, so episodes are reproducible.

One job, one module (over 500 lines): every style is the same policy (conversation, truncation,
constraint, usage) with its own prompt and dialect, so the styles and the policy are read together.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from gather_envs.agents.backends import (
    BACKEND_PARAMETERS,
    ChatBackend,
    ChatResult,
    Message,
    Sampling,
    episode_backend,
    make_backend,
    parse_bool,
)
from gather_envs.agents.backends.batching import micro_batched
from gather_envs.agents.base import Agent, EpisodePolicy, register_agent
from gather_envs.agents.scripted import action_text
from gather_envs.envs.actions import ANSWER, SEARCH
from gather_envs.envs.prompts import SYNTAX
from gather_envs.errors import ConfigError
from gather_envs.parameters import ANY_KIND, Parameter, parse_parameters

DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.95
DEFAULT_MAX_TOKENS = 256  # the grammar bounds a reply to about 300 characters; this fits it
DEFAULT_SEED = 0
THOUGHT_CHARS = 200  # longest reasoning the grammar allows before the action
ARGUMENT_CHARS = 80  # longest query or answer the grammar allows
CONTEXT_SAFETY_TOKENS = 16  # slack for chat-template tokens the estimate may miss
MIN_MESSAGE_CHARS = 200  # truncation never cuts a message below this
ELIDED_NOTE = "[older search results removed to fit the context window]"
CUT_NOTE = " [...] "
TRUNCATION_POLICY = "oldest-observations-first, then middle-cut of the longest message"
REASONING_FORBIDDEN = "[]<>{}\n"  # characters that could open an action inside the reasoning
SEED_SPACE = 2**31 - 1

LOGPROBS_KEY = "logprobs"
"""Key in ``EpisodeRecord.extra`` of the completion logprobs (``--agent-option logprobs=true``)."""
LOGPROBS_VERSION = 1
"""Version of the layout under LOGPROBS_KEY (see :func:`logprobs_record`); readers check it."""

PROMPT_PACKAGE = "gather_envs.agents"  # a regular package: resources work on every Python >= 3.10
PROMPT_FOLDER = "prompts"


@dataclass(frozen=True)
class AgentStyle:
    """What distinguishes the LLM agents: prompt, dialect, reasoning prefix, observation wrapper."""

    name: str
    prompt: str
    dialect: str | None  # None: the env's dialect
    reasoning: tuple[str, str] | None  # literal text around the reasoning, e.g. ("Thought: ", "\nAction: ")
    observation: str  # how later observations are shown: "$observation" is replaced
    stop: tuple[str, ...]
    searches: bool = True
    native_tools: bool = False
    examples: str | None = None  # a JSON file of worked example turns shown after the system prompt


STYLES = {
    "react": AgentStyle(
        "react",
        "react.txt",
        "react",
        ("Thought: ", "\nAction: "),
        "Observation: $observation",
        ("\nObservation",),
    ),
    "search-r1": AgentStyle(
        "search-r1",
        "search_r1.txt",
        "tags",
        ("<think>", "</think>\n"),
        "<information>$observation</information>",
        ("<information>",),
    ),
    "direct": AgentStyle(
        "direct", "direct.txt", None, None, "$observation", ("\nQuestion:",), searches=False
    ),
    "tools": AgentStyle("tools", "tools.txt", "json", None, "Results: $observation", (), native_tools=True),
    # For small models: one bare action a turn, taught by two worked episodes as real chat turns
    # (a 135M model copies turns it has seen far better than it follows written instructions).
    "act": AgentStyle("act", "act.txt", "react", None, "$observation", (), examples="act_examples.json"),
}

TOOL_SCHEMAS = {
    SEARCH: {
        "type": "function",
        "function": {
            "name": SEARCH,
            "description": "Search the documents and return the best matches (uses one search).",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "words to search for, e.g. a name"}
                },
                "required": ["query"],
            },
        },
    },
    ANSWER: {
        "type": "function",
        "function": {
            "name": ANSWER,
            "description": "Give the final answer; this ends the episode.",
            "parameters": {
                "type": "object",
                "properties": {
                    "answer": {"type": "string", "description": "only the name, number, yes or no"}
                },
                "required": ["answer"],
            },
        },
    },
}


# -- prompts and constraints ---------------------------------------------------------------------


def load_prompt(name: str) -> str:
    """A prompt or example file shipped in the package (or any file path, for experiments)."""
    path = Path(name)
    if path.suffix in (".txt", ".json") and path.parent != Path("."):
        if not path.is_file():
            raise ConfigError(f"prompt file {path} does not exist")
        return path.read_text(encoding="utf-8")
    try:
        folder = resources.files(PROMPT_PACKAGE).joinpath(PROMPT_FOLDER)
        return folder.joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no prompt {name!r} in {PROMPT_PACKAGE}/{PROMPT_FOLDER}") from None


def _call_arguments(arguments: str) -> Any:
    """A native call's arguments as JSON, or the raw string (the env explains that it is not JSON)."""
    try:
        return json.loads(arguments)
    except (ValueError, RecursionError):
        return arguments


def load_examples(name: str | None) -> list[Message]:
    """A style's worked example turns (a JSON list of user/assistant messages), or none."""
    if name is None:
        return []
    try:
        turns = json.loads(load_prompt(name))
    except ValueError as error:
        raise ConfigError(f"example turns {name!r} are not JSON: {error}") from None
    if not isinstance(turns, list) or not all(
        isinstance(t, dict) and t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str)
        for t in turns
    ):
        raise ConfigError(f"example turns {name!r} must be a JSON list of user/assistant messages")
    return [{"role": t["role"], "content": t["content"]} for t in turns]


def render_prompt(template: str, dialect: str) -> str:
    """Fill ``$search``/``$answer`` (and ``$example_answer``) with the dialect's own syntax."""
    search, answer = SYNTAX[dialect]
    return Template(template).safe_substitute(
        search=search, answer=answer, example_answer=action_text(dialect, ANSWER, "1874")
    )


def _gbnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _gbnf_class(excluded: str) -> str:
    escaped = "".join("\\" + c if c in "\\]^-[" else ("\\n" if c == "\n" else c) for c in excluded)
    return f"[^{escaped}]"


def _regex_class(excluded: str) -> str:
    escaped = "".join("\\" + c if c in "\\]^-[" else ("\\n" if c == "\n" else c) for c in excluded)
    return f"[^{escaped}]"


def _action_pieces(dialect: str, kind: str) -> tuple[str, str, str]:
    """(text before the argument, text after it, characters the argument may not contain)."""
    template = SYNTAX[dialect][0 if kind == SEARCH else 1]
    head, _, tail = template.rpartition("<query>" if kind == SEARCH else "<answer>")
    excluded = "\n" + tail[0] + ("\\" if dialect == "json" else "")
    return head, tail, excluded


def action_constraint(dialect: str, reasoning: tuple[str, str] | None, allow_search: bool) -> tuple[str, str]:
    """A GBNF grammar and an equivalent regex for one reply: optional reasoning, then one action.

    The argument must start with a letter or digit, so a query always has searchable words.
    """
    kinds = [SEARCH, ANSWER] if allow_search else [ANSWER]
    grammar_actions, regex_actions = [], []
    for kind in kinds:
        head, tail, excluded = _action_pieces(dialect, kind)
        grammar_actions.append(
            f"{_gbnf_literal(head)} [A-Za-z0-9] {_gbnf_class(excluded)}{{0,{ARGUMENT_CHARS - 1}}} {_gbnf_literal(tail)}"
        )
        regex_actions.append(
            f"{re.escape(head)}[A-Za-z0-9]{_regex_class(excluded)}{{0,{ARGUMENT_CHARS - 1}}}{re.escape(tail)}"
        )
    grammar = "root ::= "
    regex = ""
    if reasoning:
        before, after = reasoning
        grammar += (
            f"{_gbnf_literal(before)} {_gbnf_class(REASONING_FORBIDDEN)}{{1,{THOUGHT_CHARS}}} "
            f"{_gbnf_literal(after)} "
        )
        regex += (
            f"{re.escape(before)}{_regex_class(REASONING_FORBIDDEN)}{{1,{THOUGHT_CHARS}}}{re.escape(after)}"
        )
    grammar += "action\naction ::= " + " | ".join(grammar_actions) + "\n"
    regex += "(?:" + "|".join(regex_actions) + ")"
    return grammar, regex


# -- the agent -----------------------------------------------------------------------------------


def _pop(options: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    if key not in options or options[key] is None:
        options.pop(key, None)
        return default
    value = options.pop(key)
    try:
        return parse_bool(value) if kind is bool else kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"agent option {key}={value!r} must be {kind.__name__}") from None


def _stop_option(value: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    """Stop sequences: a list, a JSON list string, or one string ("" for none)."""
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.startswith("[") else ([value] if value else [])
        except (ValueError, RecursionError):
            value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        raise ConfigError(f"stop must be a string or a list of strings, got {value!r}")
    return tuple(value)


LLM_OPTIONS = (
    Parameter("temperature", float, DEFAULT_TEMPERATURE, minimum=0.0),
    Parameter("top_p", float, DEFAULT_TOP_P, minimum=0.0, maximum=1.0, exclusive_minimum=True),
    Parameter("max_tokens", int, DEFAULT_MAX_TOKENS, minimum=1),
    Parameter("seed", int, DEFAULT_SEED),
    Parameter("grammar", bool, True, help="constrain each reply to one valid action"),
    Parameter("native_tools", bool, help="use the backend's tool calling (default: the tools agent)"),
    Parameter("stop", ANY_KIND, help="a stop string or a JSON list of them"),
    Parameter("prompt", str, help="a prompt file in gather_envs/agents/prompts or a path to a .txt"),
    Parameter("examples", str, help="worked example turns: a .json in gather_envs/agents/prompts or a path"),
    *BACKEND_PARAMETERS,
)
"""The options every LLM agent accepts: sampling, grammar, prompt, and the backend's own."""


class LLMAgent(Agent):
    """An LLM agent with one prompt style, fixed sampling settings and a shared backend."""

    options = LLM_OPTIONS

    def __init__(
        self, env: Any, style: AgentStyle, chat_backend: ChatBackend | None = None, **options: Any
    ) -> None:
        options = parse_parameters(f"agent {style.name!r}", LLM_OPTIONS, options, noun="option")
        self.style = style
        self.agent_id = style.name
        env_dialect = getattr(env, "dialect", "react")
        self.dialect = style.dialect or env_dialect
        if self.dialect != env_dialect:
            raise ConfigError(
                f"the {style.name} agent speaks the {self.dialect!r} dialect but the env shows "
                f"{env_dialect!r} actions; make the env with dialect={self.dialect!r} "
                f"(gather-envs eval ... --kwarg dialect={self.dialect})"
            )
        self.temperature = _pop(options, "temperature", float, DEFAULT_TEMPERATURE)
        self.top_p = _pop(options, "top_p", float, DEFAULT_TOP_P)
        self.max_tokens = _pop(options, "max_tokens", int, DEFAULT_MAX_TOKENS)
        self.seed = _pop(options, "seed", int, DEFAULT_SEED)
        self.grammar = _pop(options, "grammar", bool, True)
        self.native_tools = _pop(options, "native_tools", bool, style.native_tools)
        self.stop = _stop_option(options.pop("stop", None), style.stop)
        self.prompt_name = str(options.pop("prompt", style.prompt))
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_tokens < 1:
            raise ConfigError(
                f"need temperature >= 0, 0 < top_p <= 1 and max_tokens >= 1 (got {self.temperature}, "
                f"{self.top_p}, {self.max_tokens})"
            )
        self.system_prompt = render_prompt(load_prompt(self.prompt_name), self.dialect)
        self.examples_name = options.pop("examples", None) or style.examples
        self.examples = load_examples(self.examples_name)
        # A local model that batches (chat_batch) answers the runner's concurrent episodes together.
        self.backend = micro_batched(chat_backend if chat_backend is not None else make_backend(options))
        if options:
            raise ConfigError(f"agent {style.name!r} has no option(s) {sorted(options)}")
        self.uses_native_tools = bool(self.native_tools and self.backend.supports_tools)
        self._constraints = {  # built once: every call of every episode uses one of the two
            searches: action_constraint(self.dialect, style.reasoning, searches) for searches in (False, True)
        }
        if self.max_tokens >= self.backend.context_tokens:
            raise ConfigError(
                f"max_tokens={self.max_tokens} leaves no room for a prompt in a context of "
                f"{self.backend.context_tokens} tokens"
            )

    def settings(self) -> dict[str, Any]:
        return {
            "agent": self.agent_id,
            "dialect": self.dialect,
            "prompt": self.prompt_name,
            "prompt_sha256": hashlib.sha256(self.system_prompt.encode("utf-8")).hexdigest(),
            **self._examples_settings(),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "stop": list(self.stop),
            "grammar": self.grammar and not self.uses_native_tools,
            "native_tools": self.uses_native_tools,
            "truncation": TRUNCATION_POLICY,
            "backend": self.backend.settings(),
        }

    def _examples_settings(self) -> dict[str, Any]:
        """The example turns' file and hash (absent for styles without examples, as before)."""
        if not self.examples:
            return {}
        text = json.dumps(self.examples, ensure_ascii=False, sort_keys=True)
        return {
            "examples": self.examples_name,
            "examples_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }

    def start(self, seed: int) -> EpisodePolicy:
        return LLMPolicy(self, seed)

    def constraint(self, allow_search: bool) -> tuple[str | None, str | None]:
        """The (grammar, regex) pair for one call, or (None, None) when decoding is free."""
        if not self.grammar or self.uses_native_tools:
            return None, None
        return self._constraints[allow_search and self.style.searches]


class LLMPolicy(EpisodePolicy):
    """One episode's conversation with the model."""

    def __init__(self, agent: LLMAgent, seed: int) -> None:
        self._agent = agent
        self._backend = episode_backend(agent.backend)  # one endpoint for the whole episode
        self._rng = random.Random(f"{agent.seed}:{seed}")
        self._logprobs: list[dict[str, Any]] = []
        self.messages: list[Message] = [{"role": "system", "content": agent.system_prompt}, *agent.examples]
        self._first_observation = True
        self._observations: list[int] = []  # indices of observation messages, oldest first
        self._tool_call_ids: list[str] = []  # the last reply's native tool calls, awaiting their results
        self._usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "llm_calls": 0}
        self._elided = 0
        self._cut = 0

    def act(self, observation: str, info: dict[str, Any]) -> str:
        agent = self._agent
        self._add_observation(observation, info.get("call_observations"))
        allow_search = int(info.get("tool_calls_left", 0)) > 0 and agent.style.searches
        self._fit_context()
        grammar, regex = agent.constraint(allow_search)
        tools = None
        if agent.uses_native_tools:
            tools = (TOOL_SCHEMAS[SEARCH], TOOL_SCHEMAS[ANSWER]) if allow_search else (TOOL_SCHEMAS[ANSWER],)
        result = self._backend.chat(
            self.messages,
            Sampling(
                temperature=agent.temperature,
                top_p=agent.top_p,
                max_tokens=agent.max_tokens,
                seed=self._rng.randrange(SEED_SPACE),
                stop=agent.stop,
                grammar=grammar,
                regex=regex,
                tools=tools,
            ),
        )
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            self._usage[key] += result.usage.get(key, 0)
        self._usage["llm_calls"] += 1
        if result.logprobs is not None:
            self._logprobs.append(call_logprobs(result))
        return self._record_reply(result)

    def take_over(self, turns: Sequence[tuple[str, dict[str, Any], str]]) -> None:
        """Adopt turns another policy played (a cross-policy swap) as this conversation's own."""
        for observation, _, action in turns:
            self._add_observation(observation)
            self.messages.append({"role": "assistant", "content": action})

    def usage(self) -> dict[str, Any]:
        return {**self._usage, "elided_observations": self._elided, "cut_messages": self._cut}

    def record_extra(self) -> dict[str, Any]:
        """The logprobs of every model call, when the backend was asked for them."""
        if not self._logprobs:
            return {}
        return {LOGPROBS_KEY: {"version": LOGPROBS_VERSION, "calls": list(self._logprobs)}}

    def _add_observation(self, observation: str, parts: Sequence[str] | None = None) -> None:
        """The env's observation as the next message(s): the task prompt, one ``tool`` message per
        native call of the last reply (each call's own part of the observation), or a user turn."""
        if self._first_observation:  # the task prompt
            self._first_observation = False
            self.messages.append({"role": "user", "content": observation})
            return
        if self._tool_call_ids:
            ids, self._tool_call_ids = self._tool_call_ids, []
            shown = list(parts or [observation]) if len(ids) > 1 else [observation]
            shown += [shown[-1]] * (len(ids) - len(shown))  # calls the env did not take: the turn's end
            for call_id, part in zip(ids, shown, strict=False):
                self._observations.append(len(self.messages))
                self.messages.append({"role": "tool", "tool_call_id": call_id, "content": part})
            return
        text = Template(self._agent.style.observation).safe_substitute(observation=observation)
        self._observations.append(len(self.messages))
        self.messages.append({"role": "user", "content": text})

    def _record_reply(self, result: ChatResult) -> str:
        """Append the assistant turn and return the action text for the env.

        Several native tool calls are one turn: the env takes them in order as a JSON list (as it
        takes the same calls written out), and each gets its own ``tool`` message back.
        """
        if result.tool_calls:
            calls = result.tool_calls
            self._tool_call_ids = [call.call_id for call in calls]
            self.messages.append(
                {
                    "role": "assistant",
                    "content": result.text or None,
                    "tool_calls": [
                        {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                        for c in calls
                    ],
                }
            )
            actions = [{"name": call.name, "arguments": _call_arguments(call.arguments)} for call in calls]
            return json.dumps(actions[0] if len(actions) == 1 else actions, ensure_ascii=False)
        self.messages.append({"role": "assistant", "content": result.text})
        return result.text

    def _fit_context(self) -> None:
        """Apply the truncation policy until the prompt fits (see the module docstring)."""
        backend = self._agent.backend
        limit = backend.context_tokens - self._agent.max_tokens - CONTEXT_SAFETY_TOKENS
        while backend.count_tokens(self.messages) > limit:
            older = [i for i in self._observations[:-1] if self.messages[i]["content"] != ELIDED_NOTE]
            if older:
                self.messages[older[0]] = {**self.messages[older[0]], "content": ELIDED_NOTE}
                self._elided += 1
                continue
            if not self._cut_longest():
                return  # nothing left to cut: the backend reports an overflow as a BackendError

    def _cut_longest(self) -> bool:
        """Halve the longest non-system message by removing its middle; False if all are short."""
        candidates = [
            i for i in range(1, len(self.messages)) if isinstance(self.messages[i].get("content"), str)
        ]
        if not candidates:
            return False
        index = max(candidates, key=lambda i: len(self.messages[i]["content"]))
        text = self.messages[index]["content"]
        if len(text) <= MIN_MESSAGE_CHARS:
            return False
        keep = max(MIN_MESSAGE_CHARS, len(text) // 2) // 2
        shorter = text[:keep] + CUT_NOTE + text[-keep:]
        if len(shorter) >= len(text):
            return False
        self.messages[index] = {**self.messages[index], "content": shorter}
        self._cut += 1
        return True


def call_logprobs(result: ChatResult) -> dict[str, Any]:
    """One call's logprobs as stored in a record: parallel ``tokens`` and ``logprobs`` lists, and
    ``top`` (per token, ``[token, logprob]`` pairs) when alternatives were asked for."""
    tokens = result.logprobs or ()
    entry: dict[str, Any] = {
        "tokens": [token.token for token in tokens],
        "logprobs": [token.logprob for token in tokens],
    }
    if any(token.top for token in tokens):
        entry["top"] = [[[text, value] for text, value in token.top] for token in tokens]
    return entry


def logprobs_record(extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-call logprobs stored in a record's ``extra`` (one entry per model call, in order).

    Empty when the run did not ask for them; a ConfigError for a layout newer than this version.
    """
    stored = extra.get(LOGPROBS_KEY)
    if stored is None:
        return []
    version = stored.get("version") if isinstance(stored, dict) else None
    if (
        not isinstance(version, int)
        or version > LOGPROBS_VERSION
        or not isinstance(stored.get("calls"), list)
    ):
        raise ConfigError(
            f"extra[{LOGPROBS_KEY!r}] has layout version {version!r}; this gather-envs reads up to "
            f"{LOGPROBS_VERSION}: upgrade it to read these records"
        )
    return stored["calls"]


def _factory(style_name: str) -> Any:
    style = STYLES[style_name]

    def build(env: Any, **options: Any) -> LLMAgent:
        return LLMAgent(env, style, **options)

    build.__doc__ = f"Build the {style_name} agent for ``env`` (options: sampling, backend, prompt)."
    return build


for _name in STYLES:
    register_agent(_name, _factory(_name), LLM_OPTIONS)
