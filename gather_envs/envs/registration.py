"""Registered ids: one per task family on the default frozen corpus, plus a generic one.

A family id pins its family: ``gym.make("Gather-MultiHop-v1", family="comparison")`` is a
ConfigError naming ``Gather-Compare-v1``. ``Gather-v1`` takes ``family=`` (default bridge). The
v0 ids are registered only to refuse with a message saying what changed in v1, because a silent
fallback to different tasks under a familiar name would mix readings of two instruments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

from gather_envs.errors import ConfigError

if TYPE_CHECKING:
    from gather_envs.envs.gather_env import GatherEnv

PINNED_ENTRY_POINT = "gather_envs.envs.registration:make_family_env"
GENERIC_ENTRY_POINT = "gather_envs.envs.gather_env:GatherEnv"
RETIRED_ENTRY_POINT = "gather_envs.envs.registration:refuse_retired_id"
ORDER_ENFORCE = False
"""No OrderEnforcing wrapper: GatherEnv checks reset-before-step itself and raises the documented
EnvStateError, where the wrapper would raise gymnasium's ResetNeeded first."""

SYNTHETIC_ENVS = {
    "Gather-Static-v1": {"family": "static"},
    "Gather-SingleHop-v1": {"family": "single-hop"},
    "Gather-Compare-v1": {"family": "comparison"},
    "Gather-MultiHop-v1": {"family": "bridge"},
}
GENERIC_ENV_ID = "Gather-v1"
ID_FOR_FAMILY = {kwargs["family"]: env_id for env_id, kwargs in SYNTHETIC_ENVS.items()}
RETIRED_ENVS = {
    "Gather-Static-v0": "Gather-Static-v1",
    "Gather-SingleHop-v0": "Gather-SingleHop-v1",
    "Gather-Compare-v0": "Gather-Compare-v1",
    "Gather-MultiHop-v0": "Gather-MultiHop-v1",
}
V1_CHANGES = (
    "v1 regenerated the default corpus: comparison questions ask for an entity (not yes/no, not one of "
    "the two named), the train split comes from its own disjoint world, bridge tasks are sequential "
    "in both scopes for top_k <= 5, every world is time-consistent, and a family id pins its family"
)


def make_family_env(pinned_family: str, family: str | None = None, **kwargs: Any) -> GatherEnv:
    """The GatherEnv of a family id; a different ``family=`` is refused, naming the right id."""
    # Imported here so that registering the ids (at package import) stays cheap.
    from gather_envs.envs.gather_env import GatherEnv

    if family is not None and family != pinned_family:
        right = ID_FOR_FAMILY.get(family)
        suggestion = f"gym.make({right!r})" if right else f"a family from {sorted(ID_FOR_FAMILY)}"
        raise ConfigError(
            f"{ID_FOR_FAMILY[pinned_family]} is the {pinned_family!r} family; for {family!r} use "
            f"{suggestion}, or gym.make({GENERIC_ENV_ID!r}, family={family!r})"
        )
    return GatherEnv(family=pinned_family, **kwargs)


def refuse_retired_id(replacement: str, **_: Any) -> GatherEnv:
    """Entry point of a v0 id: always a ConfigError that says what changed and which id to use."""
    retired = next(old for old, new in RETIRED_ENVS.items() if new == replacement)
    raise ConfigError(f"{retired} is retired; use {replacement}. {V1_CHANGES}.")


def register_envs() -> None:
    """Register every id once; safe to call again (re-imports, reloads)."""
    for env_id, kwargs in SYNTHETIC_ENVS.items():
        if env_id not in registry:
            register(
                id=env_id,
                entry_point=PINNED_ENTRY_POINT,
                order_enforce=ORDER_ENFORCE,
                kwargs={"pinned_family": kwargs["family"]},
            )
    if GENERIC_ENV_ID not in registry:
        register(id=GENERIC_ENV_ID, entry_point=GENERIC_ENTRY_POINT, order_enforce=ORDER_ENFORCE)
    for env_id, replacement in RETIRED_ENVS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=RETIRED_ENTRY_POINT, kwargs={"replacement": replacement})
