"""The chance floor: a question-only guesser bank, exact on hand-made tasks, low on the default corpus."""

from __future__ import annotations

import json

import pytest
from conftest import SMALL_WORLD

from gather_envs.corpus.frozen import DEFAULT_CORPUS, corpora_root, load_frozen, procedural_corpus
from gather_envs.corpus.synthetic import floor_tasks
from gather_envs.errors import ConfigError
from gather_envs.records.tasks import GoldStep, Task
from gather_envs.tasks.floor import (
    DEFAULT_FLOOR_KS,
    GUESSERS,
    chance_floor,
    chance_floor_table,
    named_candidates,
)

MAX_GUESS_PASS_AT_1 = 0.02  # the goal: no question-only rule passes 2% of a family at k = 1


def task(question: str, answer: str, family: str = "comparison", kind: str = "k", names=()) -> Task:
    steps = tuple(GoldStep(name, f"d{i}") for i, name in enumerate(names))
    return Task(
        "t", question, answer, (), family, len(steps), steps, tuple(s.doc_id for s in steps), kind=kind
    )


def test_every_guesser_stays_under_two_percent_at_pass_at_1_on_every_default_family() -> None:
    corpus = load_frozen()
    table = chance_floor_table(floor_tasks(corpus, "test"), floor_tasks(corpus, "train"))
    assert set(table.floor) == {"bridge", "comparison", "single-hop", "static"}
    for family, curves in table.guessers.items():
        assert set(curves) == set(GUESSERS), family
        for guesser, curve in curves.items():
            assert curve[1] <= MAX_GUESS_PASS_AT_1, (family, guesser, curve[1])
        assert table.tasks[family] >= 500


def test_the_manifest_stores_the_floor_it_would_recompute() -> None:
    corpus = load_frozen()
    manifest = json.loads((corpora_root() / DEFAULT_CORPUS / "manifest.json").read_text())
    recomputed = chance_floor_table(floor_tasks(corpus, "test"), floor_tasks(corpus, "train")).to_json()
    assert manifest["chance_floor"] == recomputed
    assert set(manifest["chance_floor"]["bridge"]["floor"]) == {str(k) for k in DEFAULT_FLOOR_KS}


def test_the_bank_sees_through_binary_comparisons() -> None:
    """Opt-in yes/no and which-of-two styles are guessable, and the floor says how much."""
    knobs = {**SMALL_WORLD, "tasks_per_family": 60, "train_tasks_per_family": 60}
    binary = procedural_corpus({**knobs, "comparison_styles": ["earlier", "same", "which"]})
    floor = chance_floor(binary.tasks("test", "comparison"), binary.tasks("train", "comparison"))
    assert floor["comparison"][1] >= 0.3 and floor["comparison"][4] >= 0.9
    default = procedural_corpus(knobs)
    assert (
        chance_floor(default.tasks("test", "comparison"), default.tasks("train", "comparison"))["comparison"][
            64
        ]
        < 0.1
    )


def test_floor_arithmetic_on_hand_made_tasks() -> None:
    tests = [
        task("Were A Kor and B Lem born in the same city?", "yes", kind="same"),
        task("Were C Kor and D Lem born in the same city?", "no", kind="same"),
        task("Who was born first, Ann Vel or Bo Tam?", "Ann Vel", kind="which", names=("Ann Vel", "Bo Tam")),
        task("In what year was Ann Vel born?", "1801", family="single-hop", kind="birth_year"),
    ]
    train = [
        task("q", a, family="single-hop", kind="birth_year")
        for a in ("1900", "1900", "1900", "1801", "1801", "1700")
    ]
    table = chance_floor_table(tests, train, ks=(1, 2, 3))
    comparison = table.guessers["comparison"]
    third = pytest.approx(1 / 3, abs=1e-6)
    assert comparison["yes"] == {1: third, 2: third, 3: third}
    assert comparison["named"][1] == pytest.approx(0.5 / 3, abs=1e-6) and comparison["named"][2] == third
    assert comparison["combined"] == {1: third, 2: pytest.approx(2 / 3, abs=1e-6), 3: 1.0}  # yes, no, Ann Vel
    assert "train" not in comparison  # no train comparisons: only the question-only rules run
    assert table.guessers["single-hop"]["train"] == {1: 0.0, 2: 1.0, 3: 1.0}  # ranked 1900, then 1801
    assert table.floor["single-hop"] == {1: 0.0, 2: 1.0, 3: 1.0}
    assert table.best["single-hop"][2] == "train"


def test_named_candidates_read_capitalized_runs_and_gold_queries_found_in_the_question() -> None:
    hotpot = task(
        "Which magazine was started first, Arthur's Magazine or First for Women?", "Arthur's Magazine"
    )
    assert named_candidates(hotpot) == ["Arthur's Magazine", "First for Women"]
    synthetic = task(
        "Who is the founder of whichever of the Kel Institute and the Bor Guild was founded first?", "x"
    )
    assert named_candidates(synthetic) == ["Kel Institute", "Bor Guild"]


def test_bad_ks_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="positive ints"):
        chance_floor([], ks=(0, 1))


def test_a_real_dataset_gets_the_question_only_floor(tmp_path) -> None:
    """HotpotQA-style comparisons (yes/no, one of two) are guessable, and the floor shows it."""
    import gymnasium as gym
    from test_datasets import FILE_NAMES, hotpot_items, write_items

    path = write_items(tmp_path / FILE_NAMES["hotpotqa"], "hotpotqa", hotpot_items())
    tasks = gym.make("Gather-HotpotQA-v0", path=str(path), family="comparison").unwrapped.tasks
    table = chance_floor_table(tasks)  # no train split: only the question-only rules run
    assert set(table.guessers["comparison"]) == {"yes", "no", "named", "combined"}
    third = pytest.approx(1 / 3, abs=1e-6)  # the fixture: one yes, one no, one "which café"
    assert table.floor["comparison"][1] == third and table.guessers["comparison"]["named"][2] == third
    assert table.floor["comparison"][2] == pytest.approx(2 / 3, abs=1e-6)  # yes, then no
    assert table.floor["comparison"][4] == 1.0  # yes, no, then the first named café
