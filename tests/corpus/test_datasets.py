"""Real QA datasets: HotpotQA, 2WikiMultiHopQA, MuSiQue and MATH-500 files as registered envs.

Every file here is written by the tests themselves, in each published layout, with a handful of
invented questions including the awkward cases (yes/no answers, answers with punctuation and
articles, duplicate titles, unicode), plus broken variants of each.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env

from gather_envs.cli.sample import add_parser as add_sample_parser
from gather_envs.corpus.datasets import FORMATS, DatasetSpec, clear_dataset_cache, load_dataset
from gather_envs.corpus.datasets.common import (
    CACHE_DIR_ENV,
    CACHE_SUFFIX,
    DataFileWarning,
    DataItemError,
    cache_path_for,
    ijson_module,
    load_file,
)
from gather_envs.corpus.datasets.sample import choose
from gather_envs.envs.dataset_registration import (
    DATASET_ENVS,
    DATASET_IDS,
    make_dataset_env,
    register_dataset_envs,
)
from gather_envs.errors import ConfigError, DataFileError
from gather_envs.metrics import pass_table_from_records
from gather_envs.records import EpisodeRecord
from gather_envs.scoring.checkers import fallback_equal, math_equal, normalize_math

register_dataset_envs()

FORMAT_OF_ID = DATASET_ENVS
ID_OF_FORMAT = {fmt: env_id for env_id, fmt in DATASET_ENVS.items()}
SEQUENTIAL_FORMATS = ("hotpotqa", "2wiki", "musique")


# --------------------------------------------------------------------------------------------
# Invented data in each published layout


def para(title: str, *sentences: str) -> list[Any]:
    return [title, list(sentences)]


SHARED_GAMMA = para("Gamma River", "The Gamma River flows through Nordland.", " It is 40 km long.")


def hotpot_items() -> list[dict[str, Any]]:
    """Six HotpotQA items: yes/no, unicode, punctuation and articles, duplicate titles."""
    return [
        {
            "_id": "5a8b57f25542995d1e6f1371",
            "question": "Were Alpha Quartet and Beta Trio both formed in Oslo?",
            "answer": "yes",
            "type": "comparison",
            "level": "easy",
            "supporting_facts": [["Beta Trio", 0], ["Alpha Quartet", 0], ["Alpha Quartet", 1]],
            "context": [
                para("Alpha Quartet", "Alpha Quartet is a jazz band.", " It was formed in Oslo in 1971."),
                para("Beta Trio", "Beta Trio is a folk band formed in Oslo."),
                SHARED_GAMMA,
                para("Delta Lake", "Delta Lake is a lake near Bergen."),
            ],
        },
        {
            "_id": "5a8c7595554299585d9e36b6",
            "question": "Which café opened first, Café Müller or Kaffeehaus Wien?",
            "answer": "Café Müller",
            "type": "comparison",
            "level": "medium",
            "supporting_facts": [["Café Müller", 0], ["Kaffeehaus Wien", 0]],
            "context": [
                para("Kaffeehaus Wien", "Kaffeehaus Wien opened in 1902 in Graz."),
                para("Café Müller", "Café Müller opened in 1875 in Wuppertal."),
                para("Straße", "A Straße is a street."),
            ],
        },
        {
            "_id": "5ab3b0bf5542992ade7c6e39",
            "question": "Who founded the label that released Night Songs?",
            "answer": "The Sound Company, Inc.",
            "type": "bridge",
            "level": "hard",
            "supporting_facts": [["Night Songs", 0], ["Sound Label", 1]],
            "context": [
                para(
                    "Sound Label",
                    "Sound Label is a record label.",
                    " It was founded by The Sound Company, Inc.",
                ),
                para("Night Songs", "Night Songs is an album released by Sound Label."),
                para("Echo", "Echo is a nymph in Greek myth."),
                SHARED_GAMMA,
            ],
        },
        {
            "_id": "5ae0d91e55429945ae959f65",
            "question": "In which city was the author of the novel Echo born?",
            "answer": "Zürich",
            "type": "bridge",
            "level": "medium",
            "supporting_facts": [["Echo", 0], ["Mara Lind", 0], ["Mara Lind", 1]],
            "context": [
                para("Mara Lind", "Mara Lind is a novelist.", "She was born in Zürich."),
                para("Echo", "Echo is a novel written by Mara Lind."),
                para("Lind (surname)", "Lind is a Swedish surname."),
            ],
        },
        {
            "_id": "5a7a06935542990198eaf050",
            "question": "What instrument does the founder of the Orion Ensemble play?",
            "answer": "the cello",
            "type": "bridge",
            "level": "easy",
            "supporting_facts": [["Orion", 0], ["Ivo Stern", 0]],
            "context": [
                para("Orion", "The Orion Ensemble was founded by Ivo Stern."),
                para("Ivo Stern", "Ivo Stern plays the cello."),
                para("Orion", "Orion is a constellation."),
            ],
        },
        {
            "_id": "5adf29d85542993a75d2642b",
            "question": "Are Harbor Bridge and Stone Arch the same length?",
            "answer": "no",
            "type": "comparison",
            "level": "hard",
            "supporting_facts": [["Harbor Bridge", 0], ["Stone Arch", 0]],
            "context": [
                para("Harbor Bridge", "Harbor Bridge is 500 m long."),
                para("Stone Arch", "Stone Arch is 80 m long."),
                SHARED_GAMMA,
            ],
        },
    ]


def twowiki_items() -> list[dict[str, Any]]:
    """One 2WikiMultiHopQA item of each type (bridge_comparison has four supporting paragraphs)."""
    return [
        {
            "_id": "8813f87c0bdd11eba7f7acde48001122",
            "type": "compositional",
            "question": "Who is the mother of the director of film Red Sky?",
            "answer": "Ella Moss",
            "supporting_facts": [["Red Sky", 0], ["Tom Reed", 1]],
            "evidences": [["Red Sky", "director", "Tom Reed"], ["Tom Reed", "mother", "Ella Moss"]],
            "context": [
                para("Red Sky", "Red Sky is a 1990 film directed by Tom Reed."),
                para("Tom Reed", "Tom Reed is a director.", "His mother is Ella Moss."),
                para("Red Sea", "The Red Sea is a sea."),
            ],
        },
        {
            "_id": "a4a0bd1a0bdd11eba7f7acde48001122",
            "type": "inference",
            "question": "Who is the paternal grandfather of Ann Vale?",
            "answer": "Karl Vale",
            "supporting_facts": [["Ann Vale", 0], ["Olaf Vale", 0]],
            "evidences": [["Ann Vale", "father", "Olaf Vale"], ["Olaf Vale", "father", "Karl Vale"]],
            "context": [
                para("Olaf Vale", "Olaf Vale was the son of Karl Vale."),
                para("Ann Vale", "Ann Vale is the daughter of Olaf Vale."),
            ],
        },
        {
            "_id": "c36a6aa40bdd11eba7f7acde48001122",
            "type": "comparison",
            "question": "Which film came out first, Blue Moon or Green Sun?",
            "answer": "Blue Moon",
            "supporting_facts": [["Blue Moon", 0], ["Green Sun", 0]],
            "evidences": [
                ["Blue Moon", "publication date", "1950"],
                ["Green Sun", "publication date", "1960"],
            ],
            "context": [
                para("Green Sun", "Green Sun is a 1960 film."),
                para("Blue Moon", "Blue Moon is a 1950 film."),
            ],
        },
        {
            "_id": "e5a3c7ce0bdd11eba7f7acde48001122",
            "type": "bridge_comparison",
            "question": "Do the directors of Dune Road and Sea Wall have the same nationality?",
            "answer": "no",
            "supporting_facts": [["Dune Road", 0], ["Sea Wall", 0], ["Pia Holm", 0], ["Jon Berg", 0]],
            "evidences": [["Dune Road", "director", "Pia Holm"], ["Sea Wall", "director", "Jon Berg"]],
            "context": [
                para("Pia Holm", "Pia Holm is a Danish director."),
                para("Dune Road", "Dune Road is a film directed by Pia Holm."),
                para("Jon Berg", "Jon Berg is a Norwegian director."),
                para("Sea Wall", "Sea Wall is a film directed by Jon Berg."),
            ],
        },
    ]


def mq_para(idx: int, title: str, text: str, supporting: bool = False) -> dict[str, Any]:
    return {"idx": idx, "title": title, "paragraph_text": text, "is_supporting": supporting}


def musique_items() -> list[dict[str, Any]]:
    """Three answerable MuSiQue items (2 and 3 hops, aliases, a repeated title) and one unanswerable."""
    return [
        {
            "id": "2hop__131_2201",
            "question": "When was the creator of Blue Fox born?",
            "answer": "1950",
            "answer_aliases": ["in 1950"],
            "answerable": True,
            "paragraphs": [
                mq_para(0, "Lena Ford", "Lena Ford is a painter born in 1950.", True),
                mq_para(1, "Red Hen", "Red Hen is a comic."),
                mq_para(2, "Fox", "A fox is an animal."),
                mq_para(3, "Blue Fox", "Blue Fox is a comic created by Lena Ford.", True),
                mq_para(4, "Lena Ford", "Lena Ford is also a town in Texas."),
            ],
            "question_decomposition": [
                {
                    "id": 131,
                    "question": "Who created Blue Fox?",
                    "answer": "Lena Ford",
                    "paragraph_support_idx": 3,
                },
                {"id": 2201, "question": "When was #1 born?", "answer": "1950", "paragraph_support_idx": 0},
            ],
        },
        {
            "id": "3hop1__9_8_7",
            "question": "What is the capital of the country where the maker of the Polestar lamp is based?",
            "answer": "Ōsaka-fu",
            "answer_aliases": [],
            "answerable": True,
            "paragraphs": [
                mq_para(0, "Nippon", "Nippon is a country whose capital is Ōsaka-fu.", True),
                mq_para(1, "Polestar lamp", "The Polestar lamp is made by Lumo.", True),
                mq_para(2, "Lumo", "Lumo is a firm based in Nippon.", True),
                mq_para(3, "Lamp", "A lamp gives light."),
            ],
            "question_decomposition": [
                {
                    "id": 9,
                    "question": "Who makes the Polestar lamp?",
                    "answer": "Lumo",
                    "paragraph_support_idx": 1,
                },
                {"id": 8, "question": "Where is #1 based?", "answer": "Nippon", "paragraph_support_idx": 2},
                {"id": 7, "question": "Capital of #2?", "answer": "Ōsaka-fu", "paragraph_support_idx": 0},
            ],
        },
        {
            "id": "2hop__55_66",
            "question": "Which organization employs the commander of Fort Ridge?",
            "answer": "The U.S. Army",
            "answer_aliases": ["US Army", "United States Army"],
            "answerable": True,
            "paragraphs": [
                mq_para(0, "Fort Ridge", "Fort Ridge is commanded by Ada Kane.", True),
                mq_para(1, "Ada Kane", "Ada Kane is an officer of the U.S. Army.", True),
                mq_para(2, "Ridge", "A ridge is a landform."),
            ],
            "question_decomposition": [
                {
                    "id": 55,
                    "question": "Who commands Fort Ridge?",
                    "answer": "Ada Kane",
                    "paragraph_support_idx": 0,
                },
                {
                    "id": 66,
                    "question": "Who employs #1?",
                    "answer": "The U.S. Army",
                    "paragraph_support_idx": 1,
                },
            ],
        },
        {
            "id": "2hop__77_88",
            "question": "Who painted the ceiling of the Hall of Winds?",
            "answer": "",
            "answer_aliases": [],
            "answerable": False,
            "paragraphs": [mq_para(0, "Hall of Winds", "The Hall of Winds is a hall.")],
            "question_decomposition": [
                {"id": 77, "question": "?", "answer": "", "paragraph_support_idx": None},
            ],
        },
    ]


def math_items() -> list[dict[str, Any]]:
    """Four MATH-500 problems with LaTeX answers."""
    return [
        {
            "problem": "What is $\\frac{3}{6}$ in lowest terms?",
            "solution": "...",
            "answer": "\\frac{1}{2}",
            "subject": "Prealgebra",
            "level": 1,
            "unique_id": "test/prealgebra/1.json",
        },
        {
            "problem": "Convert the point $(0,3)$ to polar coordinates.",
            "solution": "...",
            "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
            "subject": "Precalculus",
            "level": 2,
            "unique_id": "test/precalculus/807.json",
        },
        {
            "problem": "How many positive divisors does 12 have?",
            "answer": "6",
            "subject": "Number Theory",
            "level": 2,
            "unique_id": "test/number_theory/3.json",
        },
        {"problem": "Which choice is right? (A) 1 (B) 2 (C) 3", "answer": "\\text{(C)}"},
    ]


ITEMS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "hotpotqa": hotpot_items,
    "2wiki": twowiki_items,
    "musique": musique_items,
    "math500": math_items,
}
FILE_NAMES = {
    "hotpotqa": "hotpot_dev_distractor_v1.json",
    "2wiki": "dev.json",
    "musique": "musique_ans_v1.0_dev.jsonl",
    "math500": "test.jsonl",
}
ARRAY_FORMATS = ("hotpotqa", "2wiki")


def write_items(path: Path, fmt: str, items: list[Any]) -> Path:
    """Write items in the format's published layout (one JSON array, or JSON lines)."""
    if fmt in ARRAY_FORMATS:
        path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text(
            "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8"
        )
    return path


@pytest.fixture(autouse=True)
def _isolated_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    clear_dataset_cache()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {fmt: write_items(tmp_path / FILE_NAMES[fmt], fmt, make()) for fmt, make in ITEMS.items()}


def dataset(fmt: str, path: Path, **extra: Any) -> dict[str, Any]:
    return {"format": fmt, "path": str(path), **extra}


# --------------------------------------------------------------------------------------------
# Loading and family mapping


def test_hotpotqa_paragraphs_become_documents_and_supporting_facts_the_gold_path(files) -> None:
    corpus = load_dataset(dataset("hotpotqa", files["hotpotqa"]))
    tasks = {t.task_id: t for t in corpus.tasks("test")}
    assert len(tasks) == 6
    first = tasks["5a8b57f25542995d1e6f1371"]
    assert first.family == "comparison" and first.hops == 2 and first.answer == "yes"
    assert [step.query for step in first.gold_path] == ["Beta Trio", "Alpha Quartet"]
    alpha = corpus.doc(first.gold_path[1].doc_id)
    assert alpha.text == "Alpha Quartet is a jazz band. It was formed in Oslo in 1971."
    assert first.meta == {"source": "hotpotqa", "type": "comparison", "level": "easy"}
    assert len(first.context_doc_ids) == 4
    assert {t.family for t in tasks.values()} == {"bridge", "comparison"}


def test_identical_paragraphs_are_one_document_and_same_titles_stay_apart(files) -> None:
    corpus = load_dataset(dataset("hotpotqa", files["hotpotqa"]))
    gammas = [d for d in corpus.documents if d.title == "Gamma River"]
    echoes = [d for d in corpus.documents if d.title == "Echo"]
    assert len(gammas) == 1 and len(echoes) == 2
    using_gamma = [t for t in corpus.tasks("test") if gammas[0].doc_id in t.context_doc_ids]
    assert len(using_gamma) == 3
    assert len({d.doc_id for d in corpus.documents}) == len(corpus.documents)
    orion = next(t for t in corpus.tasks("test") if t.task_id == "5a7a06935542990198eaf050")
    assert corpus.doc(orion.gold_path[0].doc_id).text == "The Orion Ensemble was founded by Ivo Stern."


def test_2wiki_types_map_onto_bridge_and_comparison(files) -> None:
    corpus = load_dataset(dataset("2wiki", files["2wiki"]))
    by_type = {t.meta["type"]: t for t in corpus.tasks("test")}
    assert {k: t.family for k, t in by_type.items()} == {
        "compositional": "bridge",
        "inference": "bridge",
        "comparison": "comparison",
        "bridge_comparison": "comparison",
    }
    assert by_type["bridge_comparison"].hops == 4
    assert by_type["compositional"].meta["evidences"][1] == ["Tom Reed", "mother", "Ella Moss"]


def test_musique_gold_path_follows_the_decomposition_and_unanswerable_items_are_left_out(files) -> None:
    corpus = load_dataset(dataset("musique", files["musique"]))
    tasks = {t.task_id: t for t in corpus.tasks("test")}
    assert sorted(tasks) == ["2hop__131_2201", "2hop__55_66", "3hop1__9_8_7"]
    assert corpus.knobs["excluded"] == 1 and corpus.knobs["skipped"] == 0
    three = tasks["3hop1__9_8_7"]
    assert [s.query for s in three.gold_path] == ["Polestar lamp", "Lumo", "Nippon"]
    assert three.family == "bridge" and three.hops == 3 and three.meta["type"] == "3hop1"
    assert tasks["2hop__55_66"].aliases == ("US Army", "United States Army")
    assert tasks["2hop__131_2201"].meta["decomposition"][1]["question"] == "When was #1 born?"


def test_math_problems_are_static_tasks_without_documents(files) -> None:
    corpus = load_dataset(dataset("math500", files["math500"]))
    tasks = corpus.tasks("test", "static")
    assert len(tasks) == 4 and corpus.documents == ()
    assert tasks[0].task_id == "test/prealgebra/1.json" and tasks[3].task_id == "math-3"
    assert all(t.meta["checker"] == "math" and t.hops == 0 for t in tasks)
    assert tasks[0].meta["level"] == "1" and tasks[0].meta["type"] == "Prealgebra"


def test_musique_and_hotpot_layouts_are_detected_by_their_first_byte(tmp_path) -> None:
    """HotpotQA converted to JSON lines and MuSiQue as one array both load."""
    hotpot_lines = write_items(tmp_path / "hotpot.jsonl", "musique", hotpot_items())
    musique_array = write_items(tmp_path / "musique.json", "hotpotqa", musique_items())
    assert len(load_dataset(dataset("hotpotqa", hotpot_lines)).tasks("test")) == 6
    assert len(load_dataset(dataset("musique", musique_array)).tasks("test")) == 3


# --------------------------------------------------------------------------------------------
# The oracle: every item is solvable along its gold path within its number of supporting paragraphs


def play_gold_path(env: gym.Env, task_id: str, budget: int) -> tuple[float, dict[str, Any], str]:
    """Search each gold title in order (as far as the budget allows), then give the gold answer."""
    _, info = env.reset(seed=0, options={"task_id": task_id, "max_tool_calls": budget})
    task = env.unwrapped.task
    seen = []
    for step in task.gold_path[:budget]:
        observation, *_ = env.step(f"search[{step.query}]")
        seen.append(observation)
    _, reward, terminated, truncated, info = env.step(f"answer[{task.answer}]")
    assert terminated and not truncated
    return float(reward), info, "\n".join(seen)


@pytest.mark.parametrize("scope", ["distractor", "world"])
@pytest.mark.parametrize("fmt", SEQUENTIAL_FORMATS)
def test_oracle_solves_every_item_within_its_supporting_paragraphs(files, fmt: str, scope: str) -> None:
    for family in ("bridge", "comparison"):
        if fmt == "musique" and family == "comparison":
            continue
        env = gym.make(ID_OF_FORMAT[fmt], path=str(files[fmt]), family=family, scope=scope)
        corpus = env.unwrapped.corpus
        for task in env.unwrapped.tasks:
            reward, info, seen = play_gold_path(env, task.task_id, budget=task.hops)
            assert reward == 1.0 and info["success"], task.task_id
            assert info["tool_calls_used"] == task.hops == len(task.gold_path)
            for step in task.gold_path:
                document = corpus.doc(step.doc_id)
                assert document.render() in seen, (task.task_id, step)


@pytest.mark.parametrize(
    ("fmt", "task_id", "answer"),
    [
        ("hotpotqa", "5ab3b0bf5542992ade7c6e39", "sound company inc"),
        ("hotpotqa", "5a8b57f25542995d1e6f1371", "Yes."),
        ("hotpotqa", "5a7a06935542990198eaf050", "Cello"),
        ("musique", "2hop__55_66", "United States Army"),
        ("musique", "2hop__131_2201", "in 1950"),
    ],
)
def test_answers_match_after_normalization_and_aliases(files, fmt: str, task_id: str, answer: str) -> None:
    family = load_dataset(dataset(fmt, files[fmt])).task(task_id).family
    env = gym.make(ID_OF_FORMAT[fmt], path=str(files[fmt]), family=family)
    env.reset(seed=0, options={"task_id": task_id})
    _, reward, *_ = env.step(f"answer[{answer}]")
    assert reward == 1.0


def test_question_scope_searches_only_the_questions_own_paragraphs(files) -> None:
    env = gym.make("Gather-HotpotQA-v0", path=str(files["hotpotqa"]), family="bridge", top_k=10)
    env.reset(seed=0, options={"task_id": "5ae0d91e55429945ae959f65"})
    observation, *_ = env.step("search[Echo nymph Gamma River Oslo]")
    results = observation.split("\n", 1)[1]  # past the header that repeats the query
    assert results.count("\n") == 3  # the question's 3 paragraphs, then the budget line
    assert "nymph" not in results and "Gamma River" not in results
    full = gym.make("Gather-HotpotQA-v0", path=str(files["hotpotqa"]), family="bridge", scope="world")
    full.reset(seed=0, options={"task_id": "5ae0d91e55429945ae959f65"})
    observation, *_ = full.step("search[Echo nymph]")
    assert "Echo is a nymph in Greek myth." in observation


def test_hotpot_questions_also_pose_closed_book_with_their_paragraphs(files) -> None:
    env = gym.make("Gather-HotpotQA-v0", path=str(files["hotpotqa"]), family="static")
    observation, info = env.reset(seed=0, options={"task_id": "static-5ae0d91e55429945ae959f65"})
    assert info["max_tool_calls"] == 0 and "She was born in Zürich." in observation
    _, reward, *_ = env.step("answer[Zürich]")
    assert reward == 1.0


# --------------------------------------------------------------------------------------------
# The Gymnasium contract on every dataset id


def make_dataset_id(env_id: str, files: dict[str, Path], **kwargs: Any) -> gym.Env:
    return gym.make(env_id, path=str(files[FORMAT_OF_ID[env_id]]), **kwargs)


@pytest.mark.parametrize("env_id", DATASET_IDS)
def test_check_env_passes(files, env_id: str) -> None:
    check_env(make_dataset_id(env_id, files).unwrapped, skip_render_check=True)


ROLLOUT = ["search[born film]", "bogus", "search[director]", "answer[no]"]


def rollout(env: gym.Env, seed: int) -> list[Any]:
    trace: list[Any] = [env.reset(seed=seed)]
    for action in ROLLOUT:
        step = env.step(action)
        trace.append(step)
        if step[2] or step[3]:
            break
    return trace


@pytest.mark.parametrize("env_id", DATASET_IDS)
def test_spec_round_trips_through_json(files, env_id: str) -> None:
    extra = {} if env_id == "Gather-Math-v0" else {"max_tool_calls": 2, "scope": "world"}
    env = make_dataset_id(env_id, files, top_k=2, dialect="tags", seed=3, **extra)
    spec = EnvSpec.from_json(env.spec.to_json())
    assert spec == env.spec
    rebuilt = gym.make(spec)
    assert rollout(rebuilt, 11) == rollout(env, 11)
    assert rebuilt.unwrapped.top_k == 2 and rebuilt.unwrapped.dialect == "tags"


@pytest.mark.parametrize("env_id", DATASET_IDS)
def test_pickled_env_continues_identically_even_in_a_fresh_process_cache(files, env_id: str) -> None:
    env = make_dataset_id(env_id, files)
    env.reset(seed=5)
    env.step("search[film]")
    data = pickle.dumps(env)
    clear_dataset_cache()  # as in a fresh worker process: the corpus is re-read from the file's cache
    clone = pickle.loads(data)
    assert clone.unwrapped.corpus is not env.unwrapped.corpus
    for action in ("search[born]", "answer[yes]"):
        assert clone.step(action) == env.step(action)


@pytest.mark.parametrize("env_id", DATASET_IDS)
def test_missing_path_fails_at_make_with_one_clear_message(env_id: str) -> None:
    with pytest.raises(DataFileError) as caught:
        gym.make(env_id)
    message = str(caught.value)
    fmt = FORMATS[FORMAT_OF_ID[env_id]]
    assert message.startswith(f"{env_id} needs path=")
    assert fmt.example_file in message and f"gym.make({env_id!r}, path=" in message


def test_hotpot_missing_path_message_names_the_file_and_the_site() -> None:
    with pytest.raises(DataFileError, match=r"hotpot_dev_distractor_v1\.json.*HotpotQA site"):
        gym.make("Gather-HotpotQA-v0")


def test_a_path_that_does_not_exist_says_what_to_download(tmp_path) -> None:
    with pytest.raises(DataFileError, match="no such file; download data.zip"):
        gym.make("Gather-2Wiki-v0", path=str(tmp_path / "dev.json"))


def test_unknown_format_and_scope_are_config_errors(files) -> None:
    with pytest.raises(ConfigError, match="unknown dataset format 'squad'"):
        make_dataset_env("squad", path=str(files["hotpotqa"]))
    with pytest.raises(ConfigError, match="scope must be one of"):
        make_dataset_env("hotpotqa", path=str(files["hotpotqa"]), scope="everything")
    with pytest.raises(ConfigError, match="reads its corpus from path="):
        make_dataset_env("hotpotqa", path=str(files["hotpotqa"]), corpus="default")


def test_register_dataset_envs_is_idempotent() -> None:
    register_dataset_envs()
    register_dataset_envs()
    assert all(env_id in gym.registry for env_id in DATASET_IDS)


def test_envs_share_one_corpus_per_process(files) -> None:
    first = gym.make("Gather-HotpotQA-v0", path=str(files["hotpotqa"]))
    second = gym.make("Gather-HotpotQA-v0", path=str(files["hotpotqa"]), family="comparison")
    assert first.unwrapped.corpus is second.unwrapped.corpus


def test_dataset_kwarg_works_on_any_id_and_rejects_bad_settings(files) -> None:
    env = gym.make("Gather-Compare-v0", dataset=dataset("hotpotqa", files["hotpotqa"]), scope="distractor")
    assert len(env.unwrapped.tasks) == 3
    bad = [
        ({"scope": "full"}, ConfigError, "retrieval scope is the env's scope="),
        ({"format": "squad"}, ConfigError, "must be one of"),
        ({"type": "bridges"}, ConfigError, "unknown hotpotqa type"),
        ({"sample": 2, "per_type": 1}, ConfigError, "not both"),
        ({"sample": 0}, ConfigError, "positive integer"),
        ({"strict": "no"}, ConfigError, "true or false"),
        ({"path": None}, DataFileError, "needs 'path'"),
    ]
    for extra, error, pattern in bad:
        with pytest.raises(error, match=pattern):
            load_dataset({**dataset("hotpotqa", files["hotpotqa"]), **extra})


# --------------------------------------------------------------------------------------------
# Filters and seeded samples


def test_type_level_and_sample_filters(files) -> None:
    path = files["hotpotqa"]
    assert len(load_dataset(dataset("hotpotqa", path, type="comparison")).tasks("test")) == 3
    assert len(load_dataset(dataset("hotpotqa", path, level=["easy", "hard"])).tasks("test")) == 4
    sampled = load_dataset(dataset("hotpotqa", path, per_type=1, seed=4))
    assert sorted(t.meta["type"] for t in sampled.tasks("test")) == ["bridge", "comparison"]
    used = {d for t in sampled.tasks("test") for d in t.context_doc_ids}
    assert {d.doc_id for d in sampled.documents} == used
    again = load_dataset(dataset("hotpotqa", path, per_type=1, seed=4))
    assert again is sampled
    assert len(load_dataset(dataset("math500", files["math500"], level=2)).tasks("test")) == 2
    with pytest.raises(DataFileError, match="passes the filters"):
        load_dataset(dataset("hotpotqa", path, level="impossible"))


def test_a_type_filter_picks_the_family_of_a_dataset_id(files) -> None:
    env = gym.make("Gather-2Wiki-v0", path=str(files["2wiki"]), type=["comparison", "bridge_comparison"])
    assert env.unwrapped.family == "comparison" and len(env.unwrapped.tasks) == 2
    assert (
        gym.make("Gather-MuSiQue-v0", path=str(files["musique"]), type="3hop1").unwrapped.family == "bridge"
    )


def test_choose_is_seeded_and_stratified() -> None:
    groups = ["a"] * 10 + ["b"] * 3
    picked = choose(groups, per_type=4, total=None, seed=0)
    assert picked == choose(groups, per_type=4, total=None, seed=0) == sorted(picked)
    assert [groups[i] for i in picked].count("a") == 4 and [groups[i] for i in picked].count("b") == 3
    assert choose(groups, per_type=4, total=None, seed=1) != picked
    assert len(choose(groups, per_type=None, total=5, seed=0)) == 5


def run_sample_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gather-envs")
    add_sample_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("fmt", ["hotpotqa", "musique"])
def test_sample_command_writes_the_same_questions_the_filter_picks(files, tmp_path, capsys, fmt) -> None:
    big = files[fmt]
    items = ITEMS[fmt]()
    for n in range(3):  # more items of each type
        for item in ITEMS[fmt]():
            key = "_id" if fmt == "hotpotqa" else "id"
            items.append({**item, key: f"{item[key]}-{n}"})
    write_items(big, fmt, items)
    out = tmp_path / f"small-{fmt}.json"
    code = run_sample_cli(["sample", "--format", fmt, "--in", str(big), "--out", str(out), "--per-type", "2"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    from_file = load_dataset(dataset(fmt, out)).tasks("test")
    from_filter = load_dataset(dataset(fmt, big, per_type=2, seed=0)).tasks("test")
    assert [t.task_id for t in from_file] == [t.task_id for t in from_filter]
    types = [t.meta["type"] for t in from_file]
    assert all(types.count(name) == 2 for name in set(types))
    if fmt == "musique":  # JSON lines are copied byte for byte
        lines = set(big.read_bytes().splitlines())
        assert all(line in lines for line in out.read_bytes().splitlines())
    else:
        assert out.read_text(encoding="utf-8").startswith("[")


def test_sample_command_refuses_to_overwrite_its_input(files) -> None:
    path = str(files["hotpotqa"])
    with pytest.raises(ConfigError, match="is the input file"):
        run_sample_cli(["sample", "--format", "hotpotqa", "--in", path, "--out", path, "--total", "2"])


# --------------------------------------------------------------------------------------------
# Broken files


def drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda item: item.pop(key)


def put(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda item: item.__setitem__(key, value)


BROKEN = [
    ("hotpotqa", drop("answer"), "answer", "missing"),
    ("hotpotqa", put("answer", 42), "answer", "expected a string, got number 42"),
    ("hotpotqa", put("context", []), "context", "is empty"),
    ("hotpotqa", put("context", "Alpha Quartet"), "context", "expected an array"),
    ("hotpotqa", put("type", "multi"), "type", "unknown type 'multi'"),
    (
        "hotpotqa",
        put("supporting_facts", [["Nowhere", 0]]),
        "supporting_facts[0][0]",
        "not one of the context",
    ),
    ("hotpotqa", put("supporting_facts", [["Echo", "0"]]), "supporting_facts[0][1]", "expected an integer"),
    ("2wiki", put("answer", None), "answer", "expected a string, got null"),
    ("2wiki", put("context", [["Title only"]]), "context[0]", "expected [title, [sentence, ...]]"),
    ("2wiki", put("evidences", "none"), "evidences", "expected an array"),
    ("musique", drop("paragraphs"), "paragraphs", "missing"),
    ("musique", put("answer", ["1950"]), "answer", "expected a string, got array"),
    ("musique", put("answer_aliases", "US Army"), "answer_aliases", "expected an array"),
    ("musique", put("paragraphs", []), "paragraphs", "is empty"),
    (
        "musique",
        lambda item: item["question_decomposition"][0].__setitem__("paragraph_support_idx", 99),
        "question_decomposition[0].paragraph_support_idx",
        "no paragraph has idx 99",
    ),
    ("hotpotqa", put("answer", "The"), "answer", "normalizes to nothing"),  # answer[a] would score 1.0
    ("2wiki", put("answer", "!!!"), "answer", "normalizes to nothing"),
    ("musique", put("answer_aliases", ["an"]), "aliases[0]", "normalizes to nothing"),
    ("math500", drop("problem"), "problem", "missing"),
    ("math500", put("answer", 0.5), "answer", "expected a string, got number"),
]


@pytest.mark.parametrize(("fmt", "mutate", "field", "problem"), BROKEN)
def test_a_bad_item_names_file_item_id_and_field(tmp_path, fmt, mutate, field, problem) -> None:
    items = ITEMS[fmt]()
    mutate(items[1])
    path = write_items(tmp_path / FILE_NAMES[fmt], fmt, items)
    with pytest.raises(DataItemError) as caught:
        load_dataset(dataset(fmt, path))
    error = caught.value
    where = "item 1" if fmt in ARRAY_FORMATS else "line 2"
    item_id = FORMATS[fmt].id_field
    assert error.path == str(path) and error.where == where and error.field == field
    assert error.item_id == items[1].get(item_id)
    assert problem in str(error) and str(path) in str(error) and where in str(error)
    assert f"field {field!r}" in str(error)


@pytest.mark.parametrize(("fmt", "mutate", "field", "problem"), BROKEN)
def test_not_strict_skips_bad_items_with_one_warning(tmp_path, fmt, mutate, field, problem) -> None:
    items = ITEMS[fmt]()
    mutate(items[1])
    mutate(items[2])
    path = write_items(tmp_path / FILE_NAMES[fmt], fmt, items)
    with pytest.warns(DataFileWarning, match=r"skipped 2 malformed item\(s\)") as caught:
        corpus = load_dataset(dataset(fmt, path, strict=False))
    assert len(caught) == 1
    excluded = 1 if fmt == "musique" else 0
    assert len(corpus.tasks("test")) == len(items) - 2 - excluded
    assert corpus.knobs["skipped"] == 2


def test_strict_error_counts_the_other_bad_items(tmp_path) -> None:
    items = hotpot_items()
    for item in items[2:]:
        item["answer"] = 1
    path = write_items(tmp_path / "hotpot.json", "hotpotqa", items)
    with pytest.raises(DataItemError, match=r"item 2 .*and 3 more bad item\(s\); strict=False skips them"):
        load_dataset(dataset("hotpotqa", path))


def test_an_item_that_is_not_an_object_is_named(tmp_path) -> None:
    path = write_items(tmp_path / "hotpot.json", "hotpotqa", [*hotpot_items(), ["not", "an", "object"]])
    with pytest.raises(DataItemError, match=r"item 6: field '\(item\)': expected a JSON object, got array"):
        load_dataset(dataset("hotpotqa", path))


def test_duplicate_ids_are_bad_items(tmp_path) -> None:
    items = hotpot_items()
    items.append(copy.deepcopy(items[0]))
    path = write_items(tmp_path / "hotpot.json", "hotpotqa", items)
    with pytest.raises(DataItemError, match=r"item 6 .*duplicate id .*first at item 0"):
        load_dataset(dataset("hotpotqa", path))


@pytest.mark.parametrize("streaming", [True, False])
def test_truncated_json_array_is_an_error_even_when_not_strict(tmp_path, monkeypatch, streaming) -> None:
    if streaming:
        assert ijson_module() is not None, "the test extra must install ijson (the data extra)"
    else:
        monkeypatch.setitem(sys.modules, "ijson", None)
    path = write_items(tmp_path / "hotpot.json", "hotpotqa", hotpot_items())
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DataFileError, match=r"hotpot\.json: not valid JSON .*truncated or corrupted"):
        load_dataset(dataset("hotpotqa", path, strict=False))


def test_a_json_line_that_does_not_parse_is_a_bad_item(tmp_path) -> None:
    path = write_items(tmp_path / "test.jsonl", "math500", math_items())
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = '{"problem": "1+1?", "answer": '
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataItemError, match=r"line 3: field '\(json\)': not valid JSON"):
        load_dataset(dataset("math500", path))
    with pytest.warns(DataFileWarning, match=r"skipped 1 malformed item\(s\) of 4"):
        assert len(load_dataset(dataset("math500", path, strict=False)).tasks("test")) == 3


@pytest.mark.parametrize("content", [b"", b"  \n", b"[]", b"{}\n"])
def test_empty_files_say_so(tmp_path, content: bytes) -> None:
    path = tmp_path / "hotpot.json"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match="empty|no usable hotpotqa question|field"):
        load_dataset(dataset("hotpotqa", path, strict=True))


def test_loading_without_ijson_gives_the_same_corpus(files, monkeypatch) -> None:
    streamed = load_dataset(dataset("hotpotqa", files["hotpotqa"], cache=False))
    clear_dataset_cache()
    monkeypatch.setitem(sys.modules, "ijson", None)
    loaded = load_dataset(dataset("hotpotqa", files["hotpotqa"], cache=False))
    assert loaded is not streamed
    assert loaded.documents == streamed.documents and loaded.splits == streamed.splits
    assert loaded.content_hash == streamed.content_hash


def test_unicode_bom_is_accepted(tmp_path) -> None:
    path = write_items(tmp_path / "hotpot.json", "hotpotqa", hotpot_items())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(load_dataset(dataset("hotpotqa", path)).tasks("test")) == 6


# --------------------------------------------------------------------------------------------
# The on-disk cache


def test_cache_is_written_once_and_reused(files) -> None:
    fmt = FORMATS["hotpotqa"]
    path = files["hotpotqa"]
    first = load_file(fmt, path)
    cache = path.with_name(path.name + CACHE_SUFFIX)
    assert not first.from_cache and cache.is_file()
    second = load_file(fmt, path)
    assert second.from_cache
    assert second.documents == first.documents and second.tasks == first.tasks
    assert second.sha256 == first.sha256
    for line in cache.read_bytes().splitlines():  # plain JSON lines: nothing to execute or unpickle
        json.loads(line)


def test_cache_is_rebuilt_when_the_file_changes(files) -> None:
    fmt = FORMATS["hotpotqa"]
    path = files["hotpotqa"]
    before = load_file(fmt, path)
    items = hotpot_items()
    items[0]["answer"] = "no"  # same size: only the modification time tells
    write_items(path, "hotpotqa", items)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after = load_file(fmt, path)
    assert not after.from_cache and after.sha256 != before.sha256
    assert after.tasks[0].answer == "no"
    clear_dataset_cache()
    corpus = load_dataset(dataset("hotpotqa", path))
    assert corpus.knobs["sha256"] == after.sha256


def test_the_env_sees_a_changed_file(files) -> None:
    path = files["hotpotqa"]
    old = gym.make("Gather-HotpotQA-v0", path=str(path)).unwrapped.corpus
    write_items(path, "hotpotqa", hotpot_items()[:4])
    new = gym.make("Gather-HotpotQA-v0", path=str(path)).unwrapped.corpus
    assert len(new.tasks("test")) == 4 and new.content_hash != old.content_hash


def test_a_corrupted_cache_is_rebuilt(files) -> None:
    fmt = FORMATS["musique"]
    path = files["musique"]
    load_file(fmt, path)
    cache = cache_path_for(path)
    cache.write_bytes(cache.read_bytes()[: len(cache.read_bytes()) // 2])
    rebuilt = load_file(fmt, path)
    assert not rebuilt.from_cache and len(rebuilt.tasks) == 3
    assert load_file(fmt, path).from_cache


def test_cache_dir_and_environment_variable_move_the_cache(files, tmp_path, monkeypatch) -> None:
    fmt = FORMATS["math500"]
    path = files["math500"]
    load_file(fmt, path, cache_dir=tmp_path / "explicit")
    assert len(list((tmp_path / "explicit").glob(f"*{CACHE_SUFFIX}"))) == 1
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "from-env"))
    load_file(fmt, path)
    assert len(list((tmp_path / "from-env").glob(f"*{CACHE_SUFFIX}"))) == 1
    assert not path.with_name(path.name + CACHE_SUFFIX).exists()


def test_a_cache_built_leniently_still_fails_a_strict_load(tmp_path) -> None:
    items = hotpot_items()
    items[3]["answer"] = 7
    path = write_items(tmp_path / "hotpot.json", "hotpotqa", items)
    with pytest.warns(DataFileWarning):
        load_dataset(dataset("hotpotqa", path, strict=False))
    clear_dataset_cache()
    with pytest.raises(DataItemError, match="item 3"):
        load_dataset(dataset("hotpotqa", path))
    assert load_file(FORMATS["hotpotqa"], path).from_cache


# --------------------------------------------------------------------------------------------
# The math answer checker


EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{1}{2}", "\\dfrac12"),
    ("\\frac{1}{2}", "\\boxed{\\frac{1}{2}}"),
    ("\\frac{1}{2}", "$1/2$"),
    ("0.5", "\\tfrac{1}{2}"),
    ("10", "10.0"),
    ("10,000", "10000"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("90^\\circ", "90"),
    ("\\text{(C)}", "(C)"),
]
MATH_VERIFY_ONLY = [
    ("x+1", "1+x"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
    ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}"),
]
DIFFERENT = [
    ("\\frac{1}{2}", "0.6"),
    ("6", "7"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi)"),
    ("x+1", "x"),
]


@pytest.mark.parametrize(("gold", "prediction"), EQUIVALENT)
@pytest.mark.parametrize("use_math_verify", [True, False])
def test_math_checker_accepts_equivalent_latex(gold: str, prediction: str, use_math_verify: bool) -> None:
    assert math_equal(prediction, [gold], use_math_verify=use_math_verify)


@pytest.mark.parametrize(("gold", "prediction"), MATH_VERIFY_ONLY)
def test_math_verify_adds_symbolic_equivalence(gold: str, prediction: str) -> None:
    assert math_equal(prediction, [gold], use_math_verify=True)
    assert not math_equal(prediction, [gold], use_math_verify=False)


@pytest.mark.parametrize(("gold", "prediction"), DIFFERENT)
@pytest.mark.parametrize("use_math_verify", [True, False])
def test_math_checker_rejects_different_answers(gold: str, prediction: str, use_math_verify: bool) -> None:
    assert not math_equal(prediction, [gold], use_math_verify=use_math_verify)


def test_fallback_normalization() -> None:
    assert normalize_math("$\\boxed{ \\dfrac{1}{2} }$") == "\\frac{1}{2}"
    assert fallback_equal("\\frac12", "0.5") and not fallback_equal("", "")


def test_without_math_verify_the_checker_falls_back(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "math_verify", None)
    assert math_equal("\\dfrac12", ["0.5"]) and not math_equal("1+x", ["x+1"])
    with pytest.raises(ConfigError, match=r"pip install 'gather-envs\[math\]'"):
        math_equal("1+x", ["x+1"], use_math_verify=True)


@pytest.mark.parametrize("missing_math_verify", [False, True])
def test_math_env_rewards_equivalent_answers(files, monkeypatch, missing_math_verify: bool) -> None:
    if missing_math_verify:
        monkeypatch.setitem(sys.modules, "math_verify", None)
    env = gym.make("Gather-Math-v0", path=str(files["math500"]))
    assert env.unwrapped.family == "static" and env.unwrapped.max_tool_calls == 0
    for answer, reward in [("\\dfrac12", 1.0), ("0.5", 1.0), ("\\boxed{1/2}", 1.0), ("2/3", 0.0)]:
        env.reset(seed=0, options={"task_id": "test/prealgebra/1.json"})
        _, got, terminated, _, info = env.step(f"<answer>{answer}</answer>")
        assert terminated and got == reward and info["success"] == bool(reward), answer


def test_math_checker_runs_outside_the_main_thread(files) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: math_equal(p, ["x+1"]), ["1+x", "x+2"]))
    assert results == [True, False]


# --------------------------------------------------------------------------------------------
# PASS@(k,T) end to end


def budgeted_oracle(env: gym.Env, task_id: str, budget: int, wrong: bool) -> EpisodeRecord:
    """Follow the gold path within the budget; answer right only if every gold document was seen."""
    observation, info = env.reset(seed=0, options={"task_id": task_id, "max_tool_calls": budget})
    task = env.unwrapped.task
    seen = [observation]
    for step in task.gold_path[:budget]:
        observation, *_ = env.step(f"search[{step.query}]")
        seen.append(observation)
    corpus = env.unwrapped.corpus
    found = all(corpus.doc(s.doc_id).render() in "\n".join(seen) for s in task.gold_path)
    answer = task.answer if found and not wrong else "I do not know"
    _, reward, _, _, info = env.step(f"answer[{answer}]")
    return EpisodeRecord(
        env_id="Gather-HotpotQA-v0",
        corpus_hash=info["corpus_hash"],
        task_id=task_id,
        family=info["family"],
        hops=info["hops"],
        budget=budget,
        tool_calls=info["tool_calls_used"],
        success=info["success"],
        reward=float(reward),
        answer=answer,
        gold_answer=info["gold_answer"],
        termination=info["termination"],
        queries=info["queries"],
    )


def test_pass_at_k_t_runs_end_to_end_on_a_hotpotqa_file(files) -> None:
    records = []
    for family in ("bridge", "comparison"):
        env = gym.make("Gather-HotpotQA-v0", path=str(files["hotpotqa"]), family=family, top_k=1)
        for task in env.unwrapped.tasks:
            for budget in (1, 2):
                for episode in range(4):
                    records.append(budgeted_oracle(env, task.task_id, budget, wrong=episode == 3))
    table = pass_table_from_records(records, ks=[1, 2, 4], bootstrap=200, seed=0)
    assert table.budgets == (1, 2) and table.num_tasks == {1: 6, 2: 6}
    # Every HotpotQA item here needs 2 supporting paragraphs and each search shows one (top_k=1), so
    # T=1 never suffices. At T=2 the title searches find both for 4 of the 6 tasks (3 right answers
    # of 4 episodes each); in the other 2 a look-alike outranks a gold paragraph: the second "Orion"
    # paragraph, and "Echo" (which names Mara Lind) for the query "Mara Lind".
    assert [row.pass_at_k for row in table.curve(1)] == [0.0, 0.0, 0.0]
    assert [row.pass_at_k for row in table.curve(2)] == pytest.approx([0.5, 2 / 3, 2 / 3])
    assert table.boundary[2].size == 4 and table.t_star == 2


def test_strict_warning_is_not_repeated_for_cached_corpora(tmp_path) -> None:
    items = hotpot_items()
    items[1]["answer"] = None
    path = write_items(tmp_path / "hotpot.json", "hotpotqa", items)
    with pytest.warns(DataFileWarning):
        load_dataset(dataset("hotpotqa", path, strict=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(dataset("hotpotqa", path, strict=False))


def test_dataset_spec_normalizes_filters(files) -> None:
    spec = DatasetSpec.from_kwargs(dataset("math500", files["math500"], level=[2, "1"], type="Algebra"))
    assert spec.levels == ("1", "2") and spec.types == ("Algebra",)
    assert spec.path.is_absolute()
