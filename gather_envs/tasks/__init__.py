"""Tasks: the record, answer scoring, and one generator module per family."""

from gather_envs.tasks.normalize import exact_match, f1_score, normalize_answer
from gather_envs.tasks.task import (
    FAMILIES,
    FAMILY_BRIDGE,
    FAMILY_COMPARISON,
    FAMILY_SINGLE_HOP,
    FAMILY_STATIC,
    GoldStep,
    Task,
)

__all__ = [
    "FAMILIES",
    "FAMILY_BRIDGE",
    "FAMILY_COMPARISON",
    "FAMILY_SINGLE_HOP",
    "FAMILY_STATIC",
    "GoldStep",
    "Task",
    "exact_match",
    "f1_score",
    "normalize_answer",
]
