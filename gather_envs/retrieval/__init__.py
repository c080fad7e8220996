"""Retrieval: the tokenizer, exact and fast BM25 indexes (in memory and memory-mapped on disk), a per-process index cache."""

from gather_envs.retrieval.bm25 import BM25Index
from gather_envs.retrieval.cache import clear_cache, corpus_key, get_index
from gather_envs.retrieval.disk_index import DiskIndex
from gather_envs.retrieval.tokenize import tokenize

__all__ = ["BM25Index", "DiskIndex", "clear_cache", "corpus_key", "get_index", "tokenize"]
