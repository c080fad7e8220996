"""Declared parameters: what env kwargs and agent options accept, and that agents honour it."""

from __future__ import annotations

import doctest

import gymnasium as gym
import numpy as np
import pytest

import gather_envs.parameters
from gather_envs.agents import agent_names, agent_options, make_agent
from gather_envs.envs.parameters import env_parameters
from gather_envs.errors import ConfigError
from gather_envs.parameters import Parameter, parameters_from_signature, parse_parameters

SCRIPTED = ("oracle", "random", "heuristic")


def test_doctests() -> None:
    assert doctest.testmod(gather_envs.parameters).failed == 0


@pytest.mark.parametrize(
    ("parameter", "value", "parsed"),
    [
        (Parameter("k", int, minimum=1), "4", 4),
        (Parameter("k", int, minimum=1), 4.0, 4),
        (Parameter("p", float, minimum=0, maximum=1), "0.5", 0.5),
        (Parameter("p", float, minimum=0, maximum=1), 1, 1.0),
        (Parameter("b", bool), "off", False),
        (Parameter("s", str, choices=("a", "b")), "b", "b"),
        (Parameter("d", dict), '{"x": 1}', {"x": 1}),
        (Parameter("k", int, optional=True), None, None),
        (Parameter("k", int), np.int64(3), 3),
        (Parameter("p", float), np.float32(0.5), 0.5),
        (Parameter("b", bool), np.int64(1), True),
    ],
)
def test_values_are_converted_to_the_declared_kind(
    parameter: Parameter, value: object, parsed: object
) -> None:
    assert parameter.parse(value) == parsed


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        (Parameter("k", int, minimum=1), "abc"),
        (Parameter("k", int, minimum=1), 0),
        (Parameter("k", int), 2.5),
        (Parameter("k", int), True),
        (Parameter("p", float, minimum=0, maximum=1), 5),
        (Parameter("p", float), "nan"),
        (Parameter("p", float, minimum=0, exclusive_minimum=True), 0),
        (Parameter("b", bool), "maybe"),
        (Parameter("s", str, choices=("a", "b")), "c"),
        (Parameter("s", str), 3),
        (Parameter("d", dict), "[1]"),
        (Parameter("k", int, optional=False), None),
    ],
)
def test_bad_values_are_one_config_error_naming_what_is_expected(parameter: Parameter, value: object) -> None:
    with pytest.raises(ConfigError, match=f"^{parameter.name}=.*: expected "):
        parameter.parse(value)


def test_unknown_names_are_refused_with_the_allowed_ones() -> None:
    declared = [Parameter("explore_probability", float), Parameter("relation_boost", float)]
    with pytest.raises(
        ConfigError, match="did you mean explore_probability.*allowed: explore_probability, relation"
    ):
        parse_parameters("agent 'x'", declared, {"explore": 0.1}, noun="option")


def test_signature_gives_names_kinds_defaults_and_optionality() -> None:
    def f(
        a: int, b: float | None = None, c: str | list[str] = "x", *, d: bool = True, **rest: object
    ) -> None:
        """A signature with every shape."""

    by_name = {p.name: p for p in parameters_from_signature(f, {"a": {"minimum": 1}})}
    assert list(by_name) == ["a", "b", "c", "d"]
    assert (by_name["a"].kind, by_name["a"].minimum, by_name["a"].optional) == (int, 1, False)
    assert (by_name["b"].kind, by_name["b"].optional) == (float, True)
    assert (by_name["c"].kind, by_name["c"].default) == (None, "x")
    assert (by_name["d"].kind, by_name["d"].default) == (bool, True)


@pytest.mark.parametrize("env_id", ["Gather-MultiHop-v0", "Gather-HotpotQA-v0"])
def test_env_parameters_cover_the_entry_points_kwargs(env_id: str) -> None:
    names = {p.name for p in env_parameters(env_id) or ()}
    assert {"top_k", "max_tool_calls", "dialect", "show_budget"} <= names
    assert ("path" in names) == (env_id == "Gather-HotpotQA-v0")
    assert env_parameters(env_id) == env_parameters(env_id)  # deterministic order


def test_every_registered_agent_declares_its_options() -> None:
    for name in agent_names():
        assert agent_options(name) is not None, name


@pytest.mark.parametrize("name", SCRIPTED)
def test_scripted_agents_accept_every_declared_option_at_its_default(name: str) -> None:
    env = gym.make("Gather-MultiHop-v0")
    declared = agent_options(name) or ()
    agent = make_agent(name, env, **{p.name: p.default for p in declared})
    settings = agent.settings()
    assert all(settings[p.name] == p.default for p in declared)
    if declared:
        with pytest.raises(ConfigError, match="expected"):
            make_agent(name, env, **{declared[0].name: "not a number"})
