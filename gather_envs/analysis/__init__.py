"""Mechanism analyses on episode records: retrieval diagnostics, coverage, policy swaps, perplexity.

They answer *why* one run beats another: did it find the evidence, does the other already solve
its tasks at larger n, which turns carry the gain, and how surprising its queries are to a
reference model. Each reads :class:`~gather_envs.records.EpisodeRecord` lines like the metrics.
"""

from gather_envs.analysis.retrieval import (
    EpisodeRetrieval,
    RetrievalDiagnostics,
    episode_retrieval,
    retrieval_by_agent,
    retrieval_diagnostics,
)

__all__ = [
    "EpisodeRetrieval",
    "RetrievalDiagnostics",
    "episode_retrieval",
    "retrieval_by_agent",
    "retrieval_diagnostics",
]
