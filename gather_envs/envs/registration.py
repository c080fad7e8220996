"""Registered ids: one per task family on the default frozen corpus, plus a generic one.

A family id pins its family: ``gym.make("Gather-MultiHop-v0", family="comparison")`` is a
ConfigError naming ``Gather-Compare-v0``. ``Gather-v0`` takes ``family=`` (default bridge). An id's
version changes whenever a change can change an episode's outcome or observation (CHANGELOG.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

from gather_envs.errors import ConfigError

if TYPE_CHECKING:
    from gather_envs.envs.gather_env import GatherEnv

PINNED_ENTRY_POINT = "gather_envs.envs.registration:make_family_env"
GENERIC_ENTRY_POINT = "gather_envs.envs.gather_env:GatherEnv"
ORDER_ENFORCE = False
"""No OrderEnforcing wrapper: GatherEnv checks reset-before-step itself and raises the documented
EnvStateError, where the wrapper would raise gymnasium's ResetNeeded first."""

SYNTHETIC_ENVS = {
    "Gather-Static-v0": {"family": "static"},
    "Gather-SingleHop-v0": {"family": "single-hop"},
    "Gather-Compare-v0": {"family": "comparison"},
    "Gather-MultiHop-v0": {"family": "bridge"},
}
GENERIC_ENV_ID = "Gather-v0"
ID_FOR_FAMILY = {kwargs["family"]: env_id for env_id, kwargs in SYNTHETIC_ENVS.items()}


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
