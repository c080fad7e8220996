"""Serving: a corpus's BM25 search over HTTP, in the protocol RL stacks for search agents speak.

:mod:`~gather_envs.serving.retrieval_server` is the protocol (no server dependency);
:mod:`~gather_envs.serving.service` runs it on uvicorn (the ``serve`` extra).
"""

from gather_envs.serving.retrieval_server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_TOPK,
    Retrieval,
    RetrievalRequestError,
    Retriever,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_TOPK",
    "Retrieval",
    "RetrievalRequestError",
    "Retriever",
]
