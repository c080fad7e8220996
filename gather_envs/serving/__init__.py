"""Serving: a corpus's BM25 search over HTTP, in the protocol RL stacks for search agents speak."""

from gather_envs.serving.retrieval_server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_TOPK,
    Retrieval,
    RetrievalRequestError,
    Retriever,
    make_server,
    server_url,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_TOPK",
    "Retrieval",
    "RetrievalRequestError",
    "Retriever",
    "make_server",
    "server_url",
]
