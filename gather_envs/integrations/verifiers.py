"""verifiers adapter (``verifiers.v1``, verifiers >= 0.4): a Taskset, its Task, an Env and a Toolset.

Checked against verifiers 0.4.0's ``verifiers.v1`` API: a ``Taskset`` whose ``load()`` yields
tasks, rewards and metrics as ``@vf.reward`` / ``@vf.metric`` methods of the ``Task`` that read the
finished run's trace, tools as a ``vf.Toolset`` (an MCP server with ``@vf.tool`` methods), and an
``Env`` whose ``run()`` drives the agent. verifiers finds them through a module's ``__all__`` and
imports a taskset by a top-level module name, so make a two-line module on your path::

    # gather_taskset.py
    from gather_envs.integrations.verifiers import *  # noqa: F403
    from gather_envs.integrations.verifiers import __all__  # noqa: F401

and run ``vf-eval gather_taskset --env.taskset.split test --env.taskset.limit 20 ...`` against
any OpenAI-compatible endpoint (turn the results upload off: see docs/integrations.md).

Two ways to play, picked by the taskset's ``style``:

- **text** (``react``, ``search-r1``, ``direct``; the default): :class:`GatherVerifiersEnv` steps
  the env host-side with each model reply, in the dialect the prompt shows, and sends the next
  observation back as the user's turn (like verifiers' TextArena env). The episode ends when the
  env ends it.
- **tools** (``tools``): each rollout launches a :class:`GatherToolset` MCP server whose ``search``
  and ``answer`` tools (each argument described in the schema) step that rollout's env. The host
  keeps its own copy of the episode: it replays each segment's tool calls on it (same task, seed
  and rules, so the same results) and steps a closing text reply (a bare JSON call, ``answer[...]``)
  like any other action, sending the observation back as the user's turn and queueing the reply
  in the rollout ``State`` for the server to apply before its next call. The host's copy scores
  the rollout and writes its record; a run that stops first is recorded as ``truncated``. The
  host replays the calls of one assistant message as one turn, counted as the text path counts
  them; the server, which MCP hands one call at a time with no message boundary, answers each as
  it comes (the same searches and results; only the invalid-action count of a message with
  several invalid calls can run ahead on the server's copy).

Either way the env applies its own rules, :meth:`GatherTask.env_reward` is the env's reward, and
finished episodes are appended as EpisodeRecords to ``records_path`` when one is set.
"""

from __future__ import annotations

from typing import Annotated, Any

from gather_envs.envs.actions import ANSWER, SEARCH
from gather_envs.integrations import chat
from gather_envs.integrations.episodes import DEFAULT_ENV_ID, EpisodeDriver, tool_call_text
from gather_envs.optional import require

EXTRA = "verifiers"
INFO_KEY = "gather"
TOOLS_STYLE = "tools"
DEFAULT_AGENT_ID = "verifiers"
DEFAULT_SPLIT = "test"
QUERY_DESCRIPTION = "Words to search for, such as the name of a person, place or thing."
ANSWER_DESCRIPTION = "Only the name, number, yes or no that the question asks for."
CLASS_NAMES = (
    "GatherTaskData",
    "GatherState",
    "GatherToolsetConfig",
    "GatherTaskConfig",
    "GatherToolset",
    "GatherTask",
    "GatherTasksetConfig",
    "GatherTaskset",
    "GatherEnvConfig",
    "GatherVerifiersEnv",
)
# What verifiers' loaders look for; both are built on first access (module __getattr__).
__all__ = ["GatherTaskset", "GatherVerifiersEnv"]  # noqa: F822  # pyright: ignore[reportUnsupportedDunderAll]


def _row(data: Any) -> dict[str, Any]:
    """The episode fields of a task's data as a dataset row for the episode driver."""
    return {
        "env_id": data.env_id,
        "env_kwargs": data.env_kwargs,
        "task_id": data.task_id,
        "seed": data.seed,
        "max_tool_calls": data.max_tool_calls,
    }


def _summary(driver: EpisodeDriver) -> dict[str, Any]:
    info = driver.info
    return {
        "reward": driver.total_reward,
        "success": bool(info.get("success", False)),
        "tool_calls": int(info.get("tool_calls_used", 0)),
        "invalid_actions": int(info.get("invalid_actions", 0)),
        "termination": driver.termination,
        "task_id": str(info.get("task_id", "")),
    }


def _build() -> dict[str, type]:
    """Define the verifiers classes (verifiers is imported only now)."""
    vf = require("verifiers.v1", EXTRA)
    pydantic = require("pydantic", EXTRA)
    # Evaluated here, not as (postponed) annotation strings: MCP builds each tool's argument
    # schema from the signature, and these carry the per-argument descriptions.
    described = {
        SEARCH: ("query", Annotated[str, pydantic.Field(description=QUERY_DESCRIPTION)]),
        ANSWER: ("answer", Annotated[str, pydantic.Field(description=ANSWER_DESCRIPTION)]),
    }

    class GatherTaskData(vf.TaskData):
        """One Gather episode: the task, its budget T and seed, and the env that plays it."""

        task_id: str
        env_id: str = DEFAULT_ENV_ID
        env_kwargs: str = "{}"
        seed: int | None = None
        max_tool_calls: int
        family: str = ""
        hops: int = 0
        style: str = chat.DEFAULT_STYLE

    class GatherState(vf.State):
        """What a tool server and the host tell each other about the rollout's episode.

        ``pending``: text replies the host stepped into its copy of the episode; the tool server
        applies them, in order, before its next tool call, so both copies stay the same episode.
        """

        reward: float = 0.0
        success: bool = False
        tool_calls: int = 0
        invalid_actions: int = 0
        termination: str = ""
        pending: list[str] = pydantic.Field(default_factory=list)

    class GatherToolsetConfig(vf.ToolsetConfig):
        """Where the tool server writes records (it runs in its own process)."""

        records_path: str | None = None
        agent_id: str = DEFAULT_AGENT_ID

    class GatherTaskConfig(vf.TaskConfig):
        """Task settings: whether the rollout plays through the MCP tools."""

        use_tools: bool = False
        tools: GatherToolsetConfig = GatherToolsetConfig()

    class GatherToolset(vf.Toolset[GatherToolsetConfig, GatherState]):
        """``search`` and ``answer`` over one rollout's Gather episode (a per-rollout MCP server)."""

        TOOL_PREFIX = None  # the tools are called plainly `search` and `answer`

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.driver = EpisodeDriver(records_path=config.records_path, agent_id=config.agent_id)

        async def setup_task(self, task: Any) -> None:
            """Start the rollout's episode."""
            self.driver.reset(_row(task.data))

        def _act(self, action: str) -> str:
            state = self.state
            for text in state.pending:  # the host's text replies come first, in their order
                self.driver.step(text)
            state.pending = []
            result = self.driver.step(action)
            summary = _summary(self.driver)
            state.reward = summary["reward"]
            state.success = summary["success"]
            state.tool_calls = summary["tool_calls"]
            state.invalid_actions = summary["invalid_actions"]
            state.termination = summary["termination"]
            return result.observation

        @vf.tool
        def search(self, query: str = "") -> str:
            """Search the documents and return the best matches (uses one of the limited searches)."""
            return self._act(mcp_action(SEARCH, query=query))

        @vf.tool
        def answer(self, answer: str = "") -> str:
            """Give the final answer (only the name, number, yes or no); ends the episode."""
            return self._act(mcp_action(ANSWER, answer=answer))

    class GatherTask(vf.Task[GatherTaskData, GatherState, GatherTaskConfig]):
        """A Gather task; its reward is the env's, read from the finished run's trace."""

        @property
        def key(self) -> str:
            return f"{self.data.task_id}@T{self.data.max_tool_calls}"

        @classmethod
        def toolsets(cls, config: Any) -> list[Any]:
            return [GatherToolset(config.tools)] if config.use_tools else []

        @vf.reward
        async def env_reward(self, trace: Any) -> float:
            """The env's reward: 1 for a correct answer, else 0."""
            return float(_outcome(trace)["reward"])

        @vf.metric
        async def success(self, trace: Any) -> float:
            return float(bool(_outcome(trace)["success"]))

        @vf.metric
        async def tool_calls(self, trace: Any) -> float:
            return float(_outcome(trace)["tool_calls"])

        @vf.metric
        async def invalid_actions(self, trace: Any) -> float:
            return float(_outcome(trace)["invalid_actions"])

    class GatherTasksetConfig(vf.TasksetConfig):
        """Which tasks to load: ``--env.taskset.split test --env.taskset.limit 20`` and so on."""

        env_id: str = DEFAULT_ENV_ID
        split: str = DEFAULT_SPLIT
        style: str = chat.DEFAULT_STYLE
        budgets: list[int] | None = None
        limit: int | None = None
        seed: int = 0
        env_kwargs: dict[str, Any] = pydantic.Field(default_factory=dict)
        task: GatherTaskConfig = GatherTaskConfig()

    class GatherTaskset(vf.Taskset[GatherTask, GatherTasksetConfig]):
        """A split's tasks (one per task and budget T), prompted with the env's first observation."""

        def load(self) -> Any:
            from gather_envs.integrations.dataset import task_rows

            config = self.config
            task_config = config.task
            if config.style == TOOLS_STYLE and not task_config.use_tools:
                task_config = task_config.model_copy(update={"use_tools": True})
            rows = task_rows(
                config.env_id,
                config.split,
                style=config.style,
                budgets=config.budgets,
                env_kwargs=config.env_kwargs,
                limit=config.limit,
                seed=config.seed,
            )
            for row in rows:
                system, user = row["prompt"]
                yield GatherTask(
                    GatherTaskData(
                        id=f"{row['task_id']}@T{row['max_tool_calls']}",
                        name=row["task_id"],
                        prompt=user["content"],
                        system_prompt=system["content"],
                        task_id=row["task_id"],
                        env_id=row["env_id"],
                        env_kwargs=row["env_kwargs"],
                        seed=row["seed"],
                        max_tool_calls=row["max_tool_calls"],
                        family=row["family"],
                        hops=row["hops"],
                        style=row["style"],
                    ),
                    task_config,
                )

    class GatherEnvConfig(vf.EnvConfig):
        """The one seat (``--env.player.*``: a plain chat loop on the local machine by default)."""

        player: vf.AgentConfig = vf.AgentConfig(  # pyright: ignore[reportInvalidTypeForm]
            harness={"id": "null"}, runtime=vf.SubprocessConfig()
        )
        records_path: str | None = None
        agent_id: str = DEFAULT_AGENT_ID

    class GatherVerifiersEnv(vf.Env[GatherEnvConfig]):
        """Plays a Gather task with the player: text turns stepped host-side, or one tool-using segment."""

        async def run(self, task: Any, agents: Any) -> None:
            driver = EpisodeDriver(records_path=self.config.records_path, agent_id=self.config.agent_id)
            driver.reset(_row(task.data))
            tools = bool(task.config.use_tools)
            async with agents.player.interaction(task) as interaction:
                segment = await interaction.turn()
                while not segment.terminated:
                    # Tools: the server played the segment's calls; replay them on the host's copy
                    # (same task, seed and rules: same results), then step a closing text reply.
                    reply = _replay_tool_calls(driver, segment.messages) if tools else segment.last_reply
                    if driver.done or reply is None:
                        break
                    result = driver.step(reply)
                    if tools:
                        interaction.trace.state.pending.append(reply)
                    if driver.done:
                        break
                    segment = await interaction.turn(
                        chat.observation_text(task.data.style, result.observation)
                    )
                driver.cut()  # the run ended first (turn or token limit): a truncated episode
                interaction.trace.info[INFO_KEY] = _summary(driver)  # before scoring, on close
            driver.close()

    scope = dict(locals())
    found = {name: scope[name] for name in CLASS_NAMES}
    for tool, (argument, annotation) in described.items():
        getattr(GatherToolset, tool).__annotations__[argument] = annotation
    for name, cls in found.items():
        cls.__module__ = __name__
        cls.__qualname__ = name
    return found


def mcp_action(name: str, **arguments: str) -> str:
    """An MCP tool call as the env's JSON-dialect action (an argument the call left out stays out)."""
    return tool_call_text(name, {key: value for key, value in arguments.items() if value != ""})


def _replay_tool_calls(driver: EpisodeDriver, messages: Any) -> str | None:
    """Step the segment's tool calls as the tool server received them; the closing text reply, if any.

    The calls of one assistant message are one turn (in order), as for the same calls written out
    as text, so the host's copy, which scores and records the rollout, counts turns, searches and
    invalid actions as the text path does.

    MCP validates arguments against the tool's schema first: names it does not declare are
    dropped, so the call reaches the env as the server saw it. A call to an unknown tool never
    reaches the server; here it reaches the host's copy as the invalid action it is.
    """
    reply: str | None = None
    for message in messages:
        calls = getattr(message, "tool_calls", None)
        if getattr(message, "role", "") != chat.ASSISTANT:
            continue
        if not calls:
            reply = (getattr(message, "content", None) or "").strip() or None
            continue
        reply = None
        driver.step_calls([_as_served(call.name, _arguments(call.arguments)) for call in calls])
    return reply


def _as_served(name: str, arguments: Any) -> tuple[str, Any]:
    """A tool call as the tool server received it: (name, arguments) for the env's JSON action."""
    if name not in (SEARCH, ANSWER):
        return name, arguments
    key = "query" if name == SEARCH else "answer"
    value = arguments.get(key, "") if isinstance(arguments, dict) else ""
    return name, ({key: str(value)} if str(value) != "" else {})


def _arguments(raw: str) -> Any:
    """A tool call's raw argument string as JSON (left a string when it is not JSON)."""
    import json

    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw


def _outcome(trace: Any) -> dict[str, Any]:
    """The episode's outcome: from the env's run (text) or the tool server's state (tools)."""
    if INFO_KEY in trace.info:
        return trace.info[INFO_KEY]
    state = trace.state
    return {
        "reward": getattr(state, "reward", 0.0),
        "success": getattr(state, "success", False),
        "tool_calls": getattr(state, "tool_calls", 0),
        "invalid_actions": getattr(state, "invalid_actions", 0),
    }


_CLASSES: dict[str, type] | None = None


def classes() -> dict[str, type]:
    """Every verifiers class of this adapter, built on first use."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _build()
    return _CLASSES


def __getattr__(name: str) -> Any:
    """The classes are built lazily so that importing this module never needs verifiers."""
    if name in CLASS_NAMES:
        return classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # verifiers launches a rollout's tool server as `python -m <module>`
    classes()["GatherToolset"].run()
