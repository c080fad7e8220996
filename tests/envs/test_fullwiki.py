"""The open-domain ("fullwiki") setting: dataset questions searched over a shared wiki-18-layout index.

The index is the paragraphs of the HotpotQA, 2Wiki and MuSiQue sample files pooled into one
Search-R1 wiki-18 JSON-lines file, served by ``gather-envs serve-retrieval`` in a real subprocess;
each dataset id plays its questions with ``scope="open", retriever=URL``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest
from test_datasets import FILE_NAMES, ID_OF_FORMAT, ITEMS, SEQUENTIAL_FORMATS, play_gold_path, write_items
from test_remote_retriever import serve, stop

from gather_envs.corpus.datasets import clear_dataset_cache, load_dataset
from gather_envs.corpus.wiki18 import load_wiki18
from gather_envs.errors import DataFileError, RetrieverError
from gather_envs.wrappers.record import RecordPassAtKT


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Path], Path, str]]:
    """The sample files, their paragraphs pooled into ``wiki18.jsonl``, and its server's URL."""
    folder = tmp_path_factory.mktemp("fullwiki")
    files = {fmt: write_items(folder / FILE_NAMES[fmt], fmt, ITEMS[fmt]()) for fmt in SEQUENTIAL_FORMATS}
    rows: dict[str, str] = {}
    for fmt, path in files.items():
        for document in load_dataset({"format": fmt, "path": str(path), "cache": False}).documents:
            assert document.doc_id not in rows  # the loaders' ids do not collide across datasets
            rows[document.doc_id] = document.contents()
    wiki = folder / "wiki18.jsonl"
    wiki.write_text("".join(json.dumps({"id": i, "contents": c}) + "\n" for i, c in rows.items()), encoding="utf-8")
    clear_dataset_cache()
    process, url = serve("--corpus", str(wiki))
    yield files, wiki, url
    stop(process)


def open_env(pool, fmt: str, **kwargs) -> gym.Env:
    files, _, url = pool
    return gym.make(ID_OF_FORMAT[fmt], path=str(files[fmt]), scope="open", retriever=url, cache=False, **kwargs)


@pytest.mark.parametrize("fmt", SEQUENTIAL_FORMATS)
def test_the_oracle_solves_every_question_over_the_pooled_index(pool, fmt: str) -> None:
    for family in ("bridge", "comparison"):
        if fmt == "musique" and family == "comparison":
            continue
        env = RecordPassAtKT(open_env(pool, fmt, family=family))
        corpus = env.unwrapped.corpus
        for task in env.unwrapped.tasks:
            reward, info, seen = play_gold_path(env, task.task_id, budget=task.hops)
            assert reward == 1.0 and info["success"], task.task_id
            for step in task.gold_path:  # the file's own paragraph, found by id in the shared index
                assert corpus.doc(step.doc_id).render() in seen, (task.task_id, step)
            record = env.records[-1]
            retrieved = {d for ids in record.retrieved_doc_ids or () for d in ids}
            assert set(record.supporting_doc_ids or ()) & retrieved  # evidence recall still counts
            assert record.retriever is not None and record.retriever.startswith("http:")


def test_hits_from_other_datasets_are_shown_as_the_index_sent_them(pool) -> None:
    files, wiki, _ = pool
    foreign = load_dataset({"format": "musique", "path": str(files["musique"]), "cache": False}).documents[0]
    env = open_env(pool, "hotpotqa")
    env.reset(seed=0)
    observation, *_, info = env.step(f"search[{foreign.title}]")
    assert foreign.doc_id in info["retrieved_doc_ids"]
    assert foreign.doc_id not in env.unwrapped.corpus.position  # not a HotpotQA paragraph
    assert foreign.render() in observation
    assert load_wiki18(wiki).doc(foreign.doc_id) == foreign  # what the reader made of its row


def test_the_world_scope_refuses_an_index_that_is_not_its_corpus(pool) -> None:
    files, _, url = pool
    foreign = load_dataset({"format": "musique", "path": str(files["musique"]), "cache": False}).documents[0]
    env = gym.make(ID_OF_FORMAT["hotpotqa"], path=str(files["hotpotqa"]), scope="world", retriever=url, cache=False)
    env.reset(seed=0)
    with pytest.raises(RetrieverError, match=r"returned document '.+', which split 'test' of corpus .* does not hold"):
        env.step(f"search[{foreign.title}]")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "1"}', "a row needs 'contents' \\(wiki-18\\)"),
        ('{"id": true, "contents": "x"}', "field 'id' must be a non-empty string or an int"),
        ('["1", "x"]', "each line must be a JSON object"),
        ('{"id": 0, "contents": "\\"A\\"\\nx"}\n{"id": "0", "contents": "y"}', "id '0' is already used"),
    ],
)
def test_a_bad_wiki18_row_is_one_line_naming_its_line(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=rf"bad\.jsonl(:\d|: passage \d): {message}") as caught:
        load_wiki18(path)
    assert "\n" not in str(caught.value)
