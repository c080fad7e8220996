"""``gather-envs list``: the registered ids with their families, task counts and default T."""

from __future__ import annotations

import argparse
from typing import Any

import gymnasium as gym

import gather_envs
from gather_envs.cli.common import (
    unwrap,
)
from gather_envs.corpus.datasets import FORMATS
from gather_envs.envs.custom_registration import NEEDS as CUSTOM_NEEDS
from gather_envs.envs.dataset_registration import DATASET_ENVS


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for env_id in gather_envs.ENV_IDS:
        env = unwrap(gym.make(env_id))
        splits = {s: len(env.corpus.tasks(s, env.family)) for s in sorted(env.corpus.splits)}
        rows.append((env_id, env.family, env.max_tool_calls, splits, env.corpus.name))
    print(f"{'id':<22} {'family':<11} {'T':>2}  {'tasks per split':<22} corpus")
    for env_id, family, budget, splits, corpus in rows:
        sizes = ", ".join(f"{s}={n}" for s, n in splits.items())
        print(f"{env_id:<22} {family:<11} {budget:>2}  {sizes:<22} {corpus}")
    print("\nReal-data ids (need path= to a file you supply; see `gather-envs docs datasets`):")
    for env_id, name in DATASET_ENVS.items():
        print(f"{env_id:<22} format={name:<9} e.g. path=.../{FORMATS[name].example_file}")
    print("\nYour own data (see `gather-envs docs custom`):")
    for env_id, needs in CUSTOM_NEEDS.items():
        print(f"{env_id:<22} {needs}")
    return 0


def add_parser(sub: Any) -> None:
    """Declare ``list``."""
    sub.add_parser("list", help="registered ids, families, task counts, default T").set_defaults(
        func=cmd_list
    )
