"""Retrieval: the tokenizer, an exact and fast BM25 index, and a per-process index cache."""

from gather_envs.retrieval.bm25 import BM25Index
from gather_envs.retrieval.cache import clear_cache, corpus_key, get_index
from gather_envs.retrieval.tokenize import tokenize

__all__ = ["BM25Index", "clear_cache", "corpus_key", "get_index", "tokenize"]
