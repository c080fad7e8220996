"""A retrieval server in the protocol of Search-R1's ``search_r1/search/retrieval_server.py``.

Search-R1, and the recipes that reuse its server (verl's ``search_r1_like``), search with
``POST /retrieve`` and a JSON body ``{"queries": [...], "topk": 3, "return_scores": true}``. The answer is
``{"result": [hits of query 1, hits of query 2, ...]}``. With ``return_scores`` each hit is
``{"document": DOC, "score": FLOAT}``, without it each hit is ``DOC`` itself. ``DOC`` is
``{"id", "contents", "title", "text"}``: Search-R1's corpus rows carry ``id`` and ``contents``
(``'"' + title + '"\\n' + text``), its BM25 path adds ``title`` and ``text``, and its clients read
``contents``. A missing or null ``topk`` takes the server's default, as in Search-R1. SkyRL's
search tool (``skyrl_gym/tools/search.py``) sends one ``"query"`` string instead of ``queries``
and reads the same answer, so that is accepted too.

The hits are the corpus's own world-scope BM25 index (:meth:`Corpus.index`), the one the env
searches, so ids, order and float64 scores equal the env's; JSON carries the floats exactly. A
query with no searchable words gets no hits (the env refuses such a search). Unlike Search-R1,
a malformed request is refused with a JSON body that says what to fix (``{"error": ...}``), before
any search: its fields are checked one by one, integers are range-checked before Python converts
them, and the answer's largest possible size (queries x ``topk`` x the longest encoded document)
must fit :data:`MAX_ANSWER_BYTES`. This module is the protocol; the HTTP layer is
:mod:`gather_envs.serving.asgi_app` on the server :mod:`gather_envs.serving.service` runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, NamedTuple

from gather_envs.corpus.corpus import Corpus, documents_hash
from gather_envs.errors import ConfigError, GatherError
from gather_envs.records.documents import Document
from gather_envs.retrieval import BM25Index, DiskIndex, tokenize

DEFAULT_HOST = "127.0.0.1"
"""Loopback: the server answers only this machine unless told otherwise."""
DEFAULT_PORT = 8000
"""Search-R1's port, so its default ``search_url`` (http://127.0.0.1:8000/retrieve) works."""
DEFAULT_TOPK = 3
"""Hits per query when a request gives no ``topk``: Search-R1's default and the env's ``top_k``."""
RETRIEVE_PATH = "/retrieve"
HEALTH_PATH = "/health"
MAX_BODY_BYTES = 1 << 20
"""Largest request body read; 512 queries of 200 characters take about 110 KB."""
MAX_QUERIES = 1024
"""Most queries in one request."""
MAX_QUERY_CHARS = 4096
"""Longest query, in characters."""
MAX_TOPK = 100
"""Largest ``topk``."""
MAX_ANSWER_BYTES = 16 << 20
"""Largest answer a request may ask for, counted as queries x ``topk`` x the longest encoded document.

Search-R1's usual batch (512 queries, ``topk`` 3, wiki-18 passages of about 1.3 kB encoded) asks
for 2 MB; 96 queries at ``topk`` 100 over 20 kB documents would ask for 384 MB and are refused."""
HIT_OVERHEAD_BYTES = 64
"""A hit's bytes beyond its document's (``{"document": ..., "score": ...}`` and separators)."""
MAX_INTEGER_DIGITS = 19
"""Longest integer literal decoded from a body; a longer one is refused before ``int()`` sees it."""
SERVER_TIMING_NAME = "bm25"
"""A ``/retrieve`` answer's ``Server-Timing: bm25;dur=MS`` header: its searches' time, in ms."""
INDEX_KIND = "bm25-memory"
"""``/health``'s name for the in-process index :meth:`Corpus.index` builds."""
DISK_INDEX_KIND = "bm25-disk"
"""``/health``'s name for an on-disk index (``gather-envs index build``)."""
JSON_ESCAPE_BOUND = 6
"""The most bytes JSON writes for one byte of text (a control character as ``\\uXXXX``)."""
DOCUMENT_JSON_BYTES = 64
"""A document's JSON beyond its fields' text: keys, quotes and separators."""


class RetrievalRequestError(GatherError, ValueError):
    """A request the server refuses: the HTTP status and a message saying what to fix."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


def document_json(document: Document) -> dict[str, str]:
    """A document as Search-R1's servers return it (its clients read ``contents``)."""
    return {
        "id": document.doc_id,
        "contents": f'"{document.title}"\n{document.text}',
        "title": document.title,
        "text": document.text,
    }


class Retrieval(NamedTuple):
    """One answered request: the response's JSON text and the seconds its BM25 searches took."""

    text: str
    bm25_seconds: float


class Retriever:
    """Answers ``/retrieve`` payloads from a corpus's world-scope BM25 index (thread-safe).

    ``split`` picks the documents an env of that split searches (a synthetic corpus keeps one
    world per split); None serves every document. With ``index`` (an on-disk index), that index
    and its own documents are served instead, and ``corpus`` may be None.
    """

    def __init__(
        self,
        corpus: Corpus | None,
        default_topk: int = DEFAULT_TOPK,
        split: str | None = None,
        index: DiskIndex | None = None,
    ) -> None:
        if isinstance(default_topk, bool) or not isinstance(default_topk, int):
            raise ConfigError(f"default_topk must be an int, got {default_topk!r}")
        if not 1 <= default_topk <= MAX_TOPK:
            raise ConfigError(f"default_topk must be in [1, {MAX_TOPK}], got {default_topk}")
        self.corpus = corpus
        self.split = split
        self.default_topk = default_topk
        self.index: BM25Index | DiskIndex
        self._encode: Callable[[int], str]
        if index is not None:
            self.index, self.documents = index, index.documents
            documents = index.documents  # encoded per hit: a wiki's JSON would not fit in memory
            self._encode = lambda i: json.dumps(document_json(documents[i]), ensure_ascii=False)
            # A bound, not a scan of 21M documents: the JSON holds the title and text twice (``contents``
            # too), and escapes a byte into at most 6.
            longest = DOCUMENT_JSON_BYTES + 2 * JSON_ESCAPE_BOUND * index.longest_document_bytes()
            index_hash, kind = index.manifest_hash, DISK_INDEX_KIND
            built_from: dict[str, Any] = {"built_from": index.manifest.get("corpus")}
        elif corpus is not None:
            self.documents = corpus.documents_of(split)
            self.index = corpus.index(split)
            # Each document's JSON is encoded once: re-encoding the hits on every request cost a third
            # of a 512-query request (10k documents: 8.9k queries/s before, 14.6k after).
            encoded = [json.dumps(document_json(d), ensure_ascii=False) for d in self.documents]
            self._encode = encoded.__getitem__
            longest = max((len(e.encode("utf-8")) for e in encoded), default=0)
            index_hash, kind = documents_hash(self.documents), INDEX_KIND
            built_from = {}
        else:
            raise ConfigError("a Retriever serves a corpus or an index; pass one")
        self.max_hit_bytes = HIT_OVERHEAD_BYTES + longest
        """The longest encoded hit, in UTF-8 bytes: the unit of :data:`MAX_ANSWER_BYTES`."""
        self.identity = {
            "kind": kind,
            "hash": index_hash,
            "documents": len(self.documents),
            "k1": self.index.k1,
            "b": self.index.b,
            "epsilon": self.index.epsilon,
            **built_from,
        }
        """What ``/health`` says of the index: its kind, hash (the sha256 of the documents it
        searches, or an on-disk index's manifest) and BM25 parameters, so clients tell retrievers apart."""

    def search(self, query: str, topk: int) -> list[tuple[int, float]]:
        """The env's BM25 hits for ``query`` as ``(document position, score)``; none without words."""
        tokens = tokenize(query)
        return self.index.top_k(tokens, topk) if tokens else []

    def retrieve(self, payload: Any) -> Retrieval:
        """The JSON text answering one decoded request body; :class:`RetrievalRequestError` if malformed."""
        queries, topk, return_scores = parse_request(payload, self.default_topk)
        self.check_answer_size(len(queries), topk)
        return self.answer(queries, topk, return_scores)

    def answer(self, queries: list[str], topk: int, return_scores: bool) -> Retrieval:
        """The JSON text answering checked fields (see :func:`parse_request`).

        The text is what ``json.dumps`` of the response object gives (floats as ``repr``, which
        round-trips exactly), assembled from the pre-encoded documents.
        """
        start = time.perf_counter()
        all_hits = [self.search(query, topk) for query in queries]
        bm25_seconds = time.perf_counter() - start
        encode = self._encode
        lists = []
        for hits in all_hits:
            if return_scores:
                items = [f'{{"document": {encode(i)}, "score": {score!r}}}' for i, score in hits]
            else:
                items = [encode(i) for i, _ in hits]
            lists.append(f"[{', '.join(items)}]")
        return Retrieval(f'{{"result": [{", ".join(lists)}]}}', bm25_seconds)

    def check_answer_size(self, queries: int, topk: int) -> int:
        """The largest answer ``queries`` x ``topk`` could make, in bytes; refused over :data:`MAX_ANSWER_BYTES`."""
        worst = queries * topk * self.max_hit_bytes
        if worst > MAX_ANSWER_BYTES:
            fitting = MAX_ANSWER_BYTES // (topk * self.max_hit_bytes)
            raise RetrievalRequestError(
                f"{queries} queries x topk {topk} x hits of up to {self.max_hit_bytes} bytes "
                f"could answer {worst} bytes, over the {MAX_ANSWER_BYTES}; send at most {fitting} "
                f"queries per request at this topk"
            )
        return worst

    def health(self) -> dict[str, Any]:
        """What ``GET /health`` answers: the corpus and index served and the default ``topk``."""
        return {
            "status": "ok",
            "corpus": None if self.corpus is None else self.corpus.name,
            "corpus_hash": None if self.corpus is None else self.corpus.content_hash,
            "split": self.split,
            "documents": len(self.documents),
            "default_topk": self.default_topk,
            "index": self.identity,
        }


def parse_request(payload: Any, default_topk: int) -> tuple[list[str], int, bool]:
    """``(queries, topk, return_scores)`` of a request body, checked field by field."""
    example = 'e.g. {"queries": ["who founded X"], "topk": 3, "return_scores": true}'
    if not isinstance(payload, dict):
        raise RetrievalRequestError(f"the body must be a JSON object, got {_kind(payload)}; {example}")
    if "query" in payload:  # SkyRL's search tool sends one query per request under this name
        if "queries" in payload:
            raise RetrievalRequestError('send "queries" (a list) or "query" (one string), not both')
        if not isinstance(payload["query"], str):
            raise RetrievalRequestError(f'"query" must be a string, got {_kind(payload["query"])}')
        payload = {**payload, "queries": [payload["query"]]}
    if "queries" not in payload:
        raise RetrievalRequestError(f'missing field "queries" (a list of strings); {example}')
    queries = payload["queries"]
    if not isinstance(queries, list):
        raise RetrievalRequestError(f'"queries" must be a list of strings, got {_kind(queries)}')
    if len(queries) > MAX_QUERIES:
        raise RetrievalRequestError(
            f'"queries" has {len(queries)} entries; send at most {MAX_QUERIES} per request'
        )
    for position, query in enumerate(queries):
        if not isinstance(query, str):
            raise RetrievalRequestError(f'"queries"[{position}] must be a string, got {_kind(query)}')
        if len(query) > MAX_QUERY_CHARS:
            raise RetrievalRequestError(
                f'"queries"[{position}] has {len(query)} characters; the most is {MAX_QUERY_CHARS}'
            )
    topk = payload.get("topk")
    if topk is None:
        topk = default_topk
    elif isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:
        raise RetrievalRequestError(f'"topk" must be an integer in [1, {MAX_TOPK}] or null, got {topk!r}')
    return_scores = payload.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise RetrievalRequestError(f'"return_scores" must be true or false, got {_kind(return_scores)}')
    return queries, topk, return_scores


def _kind(value: Any) -> str:
    """A JSON value's type in JSON's words, for error messages (the value itself is not echoed)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def decode_body(body: bytes) -> Any:
    """The JSON value of a request body; :class:`RetrievalRequestError` if it is not UTF-8 JSON."""
    try:
        return json.loads(body.decode("utf-8"), parse_int=_bounded_int)
    except UnicodeDecodeError as exc:
        raise RetrievalRequestError(f"the body is not UTF-8 (byte {exc.start}); send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise RetrievalRequestError(
            f"the body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise RetrievalRequestError("the body nests too deeply to decode; send a flat JSON object") from None


def _bounded_int(literal: str) -> int:
    """A JSON integer literal as an int, refused when longer than :data:`MAX_INTEGER_DIGITS` digits.

    Python refuses to convert over 4,300 digits with a ValueError, and converting fewer still costs
    quadratic time; checking the length first makes either a 400 that says so.
    """
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise RetrievalRequestError(
            f"an integer in the body has {len(literal.lstrip('-'))} digits; the most is {MAX_INTEGER_DIGITS}"
        )
    return int(literal)
