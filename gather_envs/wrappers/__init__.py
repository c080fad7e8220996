"""Gymnasium wrappers: :class:`RecordPassAtKT` records every finished episode for PASS@(k,T)."""

from __future__ import annotations

from gather_envs.wrappers.record import RecordPassAtKT, env_identity

__all__ = ["RecordPassAtKT", "env_identity"]
