"""Registered ids: one per task family, each on the default frozen corpus."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENTRY_POINT = "gather_envs.envs.gather_env:GatherEnv"
ORDER_ENFORCE = False
"""No OrderEnforcing wrapper: GatherEnv checks reset-before-step itself and raises the documented
EnvStateError, where the wrapper would raise gymnasium's ResetNeeded first."""

SYNTHETIC_ENVS = {
    "Gather-Static-v0": {"family": "static"},
    "Gather-SingleHop-v0": {"family": "single-hop"},
    "Gather-Compare-v0": {"family": "comparison"},
    "Gather-MultiHop-v0": {"family": "bridge"},
}


def register_envs() -> None:
    """Register every id once; safe to call again (re-imports, reloads)."""
    for env_id, kwargs in SYNTHETIC_ENVS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=ENTRY_POINT, order_enforce=ORDER_ENFORCE, kwargs=dict(kwargs))
