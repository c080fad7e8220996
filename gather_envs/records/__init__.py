"""Records every layer shares: documents, tasks and episode records (they import nothing of the package).

They sit at the bottom of the import graph so that the world, the task builder, the corpus, the
env and the metrics can all use them without importing one another.
"""

from gather_envs.records.documents import Document
from gather_envs.records.episodes import (
    AGENT_SETTINGS_KEY,
    EPISODE_INDEX_UNKNOWN,
    IN_PROCESS_RETRIEVER,
    RECORD_SCHEMA_VERSION,
    REWARD_KIND_EM,
    TERMINATION_ANSWERED,
    TERMINATION_INFRA_ERROR,
    TERMINATION_INVALID_ACTIONS,
    TERMINATION_TRUNCATED,
    EpisodeRecord,
)
from gather_envs.records.tasks import (
    FAMILIES,
    FAMILY_BRIDGE,
    FAMILY_COMPARISON,
    FAMILY_SINGLE_HOP,
    FAMILY_STATIC,
    TASK_SCHEMA_VERSION,
    GoldStep,
    Task,
)

__all__ = [
    "AGENT_SETTINGS_KEY",
    "EPISODE_INDEX_UNKNOWN",
    "FAMILIES",
    "FAMILY_BRIDGE",
    "FAMILY_COMPARISON",
    "FAMILY_SINGLE_HOP",
    "FAMILY_STATIC",
    "IN_PROCESS_RETRIEVER",
    "RECORD_SCHEMA_VERSION",
    "REWARD_KIND_EM",
    "TASK_SCHEMA_VERSION",
    "TERMINATION_ANSWERED",
    "TERMINATION_INFRA_ERROR",
    "TERMINATION_INVALID_ACTIONS",
    "TERMINATION_TRUNCATED",
    "Document",
    "EpisodeRecord",
    "GoldStep",
    "Task",
]
