"""The env's contract lives in GatherEnv's docstring: its kwargs and ids agree with the code."""

from __future__ import annotations

import inspect
import re

import gymnasium as gym
import pytest

import gather_envs
from gather_envs.envs.gather_env import GatherEnv
from gather_envs.envs.parameters import docstring_section, documented_arguments, env_parameters
from gather_envs.envs.registration import GENERIC_ENV_ID

SECTIONS = (
    "Description",
    "Action space",
    "Observation",
    "Rewards",
    "Termination and truncation",
    "Budget",
    "Arguments",
    "Registered configurations",
)


@pytest.mark.parametrize("title", SECTIONS)
def test_the_docstring_has_every_section_of_the_contract(title: str) -> None:
    assert docstring_section(title).strip(), f"GatherEnv's docstring has no '## {title}' section"


def test_the_arguments_section_lists_every_kwarg_with_its_default_in_signature_order() -> None:
    signature = [
        (name, repr(parameter.default))
        for name, parameter in inspect.signature(GatherEnv.__init__).parameters.items()
        if name != "self"
    ]
    documented = [(name, default) for name, (default, _) in documented_arguments().items()]
    assert documented == signature
    assert all(meaning for _, meaning in documented_arguments().values())


@pytest.mark.parametrize("env_id", [*gather_envs.ENV_IDS, GENERIC_ENV_ID])
def test_the_declared_parameters_carry_the_documented_defaults_and_help(env_id: str) -> None:
    documented = documented_arguments()
    declared = env_parameters(env_id)
    assert declared is not None
    forwarded = {p.name: p for p in declared}
    for name, (default, meaning) in documented.items():
        assert repr(forwarded[name].default) == default
        assert forwarded[name].help == meaning
    assert set(forwarded) == set(documented)


def test_the_registered_configurations_are_the_registered_ids() -> None:
    listed = re.findall(r"^- ``([\w-]+)``", docstring_section("Registered configurations"), re.MULTILINE)
    assert listed == [*gather_envs.ENV_IDS, GENERIC_ENV_ID]
    for env_id in listed:
        assert env_id in gym.registry


def test_the_documented_reward_kinds_and_dialects_are_the_accepted_ones() -> None:
    from gather_envs.envs.actions import DIALECTS
    from gather_envs.envs.gather_env import REWARD_KINDS

    rewards = docstring_section("Rewards")
    assert all(f'``"{kind}"``' in rewards for kind in REWARD_KINDS)
    actions = docstring_section("Action space")
    assert all(f"``{dialect}``" in actions for dialect in DIALECTS)
