"""Evaluate a trained checkpoint: agent factories for the LLM agents on a local transformers model.

A GRPO or SFT run saves a transformers checkpoint; ``gather-envs eval`` plays it with the same
prompts, dialect and observation wrappers as any other agent, through
:class:`~gather_envs.agents.backends.transformers_local.TransformersBackend`::

    gather-envs eval Gather-MultiHop-v0 --agent gather_envs.integrations.transformers_agent:react \\
        --agent-option model=runs/grpo/model --n 4 --budgets 1,3,5 --out runs/grpo.jsonl

Factories: ``react``, ``search_r1``, ``act``, ``direct`` (``tools`` needs native tool calls, which this
backend does not parse). Options: ``model`` (a checkpoint folder; default: the converted
SmolLM2-135M from :mod:`gather_envs.integrations.models`), ``context_tokens``, ``device``,
``agent_id`` (the name in records and reports; default the style's), plus the LLM agents' own
(``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``stop``). The same backend without these
factories: ``--agent react --agent-option backend=transformers --agent-option model=FOLDER``.
"""

from __future__ import annotations

from typing import Any


def _agent(style_name: str, env: Any, **options: Any) -> Any:
    from gather_envs.agents.llm import STYLES, LLMAgent

    if options.get("model") is None:
        from gather_envs.integrations.models import smollm2_checkpoint

        options["model"] = str(smollm2_checkpoint())
    options["backend"] = "transformers"
    agent_id = options.pop("agent_id", None)
    options.setdefault("grammar", False)  # this backend cannot constrain decoding
    agent = LLMAgent(env, STYLES[style_name], **options)
    if agent_id:
        agent.agent_id = str(agent_id)  # tells runs of one style on different checkpoints apart
    return agent


def react(env: Any, **options: Any) -> Any:
    """The react agent (``search[...]``) on a transformers checkpoint."""
    return _agent("react", env, **options)


def search_r1(env: Any, **options: Any) -> Any:
    """The Search-R1 agent (``<search>...</search>``) on a transformers checkpoint."""
    return _agent("search-r1", env, **options)


def act(env: Any, **options: Any) -> Any:
    """The act agent (one bare ``search[...]`` or ``answer[...]`` a turn, worked examples first)."""
    return _agent("act", env, **options)


def direct(env: Any, **options: Any) -> Any:
    """The closed-book agent on a transformers checkpoint."""
    return _agent("direct", env, **options)
