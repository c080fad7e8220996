"""The chance floor on every env: real datasets, your own files, PhantomWiki and procedural worlds.

Each case plays a real run (random and oracle agents, real BM25), then reads it back the way a
user does: ``report`` (table, CSV, JSON), ``compare``, the plots, and the one-line warning. The
expected floors are computed by hand from the questions and answers (the best of the yes, no,
named-entity, count and combined guessers at each k), not by the code under test.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SMALL_WORLD
from test_custom_data import DOCUMENTS, write_jsonl
from test_datasets import para, write_items

from gather_envs.cli import main
from gather_envs.corpus.datasets import clear_dataset_cache
from gather_envs.corpus.datasets.common import CACHE_DIR_ENV
from gather_envs.corpus.floor import FLOOR_CACHE_SUFFIX
from gather_envs.envs.floor import run_floor
from gather_envs.evaluation import evaluate
from gather_envs.metrics import Results
from gather_envs.runs import read_records

N = 8
KS = (1, 2, 4, 8)
BUDGETS = (0, 1)


@pytest.fixture(autouse=True)
def _own_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Floor caches of non-file corpora go under this test's folder, never the user's home."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    clear_dataset_cache()
    return tmp_path / "cache"


@dataclass(frozen=True)
class Case:
    env_id: str
    env_kwargs: dict[str, Any]
    family: str
    floor: dict[int, float]  # by hand, at KS
    warning: str  # what the warning line must say about why


def _run(case: Case, agent: str, out: Path) -> Path:
    evaluate(case.env_id, agent, n=N, budgets=BUDGETS, out=out, env_kwargs=case.env_kwargs, progress=False)
    return out


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def _floor_cells(line: str) -> list[float]:
    return [float(cell) for cell in line.split()[1 : 1 + len(KS)]]


def check_floor_everywhere(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The floor row in report (table, CSV, JSON), compare, the plots, and the warning: all exact."""
    expected = pytest.approx(case.floor, abs=1e-6)
    a = _run(case, "random", tmp_path / "random.jsonl")
    b = _run(case, "oracle", tmp_path / "oracle.jsonl")

    table = run_floor(read_records(a))
    assert table is not None and {k: table.floor[case.family][k] for k in KS} == expected

    out, _ = _cli(capsys, "report", str(a), "--bootstrap", "0")
    rows = [line for line in out.splitlines() if line.startswith("floor ")]
    assert len(rows) == 1 and _floor_cells(rows[0]) == pytest.approx([case.floor[k] for k in KS], abs=5e-4)
    (warning,) = [line for line in out.splitlines() if line.startswith("WARNING: family")]
    assert f"family {case.family!r} is guessable from the question alone" in warning
    assert f"PASS@(2,0) = {case.floor[2]:.3f} > 0.25" in warning and case.warning in warning

    out, err = _cli(capsys, "report", str(a), "--bootstrap", "0", "--format", "json")
    data = json.loads(out)  # the warning goes to stderr, so stdout stays JSON
    assert "guessable from the question alone" in err
    assert {int(k): v for k, v in data["chance_floor"].items()} == expected
    assert {
        int(k): v for k, v in data["chance_floor_by_family"][case.family].items() if int(k) in KS
    } == expected
    results = Results.from_json(data)
    assert results.overall.floor == expected

    out, _ = _cli(capsys, "report", str(a), "--bootstrap", "0", "--format", "csv")
    csv_floor = {
        int(row["k"]): float(row["chance_floor"])
        for row in csv.DictReader(io.StringIO(out))
        if row["T"] == "0" and row["section"] == "all"
    }
    assert csv_floor == expected

    out, _ = _cli(capsys, "compare", str(a), str(b), "--bootstrap", "0")
    assert "guessable from the question alone" in out and "floor" in out
    out, _ = _cli(capsys, "compare", str(a), str(b), "--bootstrap", "0", "--format", "json")
    assert {int(k): v for k, v in json.loads(out)["chance_floor"].items()} == expected

    _plots_show(results, case)


def _plots_show(results: Results, case: Case) -> None:
    """The curve plot draws the floor line and the heatmap a floor row, with the same values."""
    pytest.importorskip("matplotlib")
    from gather_envs.reports.plots import FLOOR_LABEL, curves_figure, heatmap_figure

    (ax,) = curves_figure(results.overall).axes
    (line,) = [line for line in ax.get_lines() if line.get_label() == FLOOR_LABEL]
    assert list(line.get_ydata()) == pytest.approx([case.floor[k] for k in KS], abs=1e-6)
    heat = heatmap_figure(results.overall).axes[0]
    assert [t.get_text() for t in heat.get_yticklabels()][0] == "floor"


# -- a HotpotQA-layout file: yes/no and named-entity comparison answers ---------------------------


def hotpot_comparisons() -> list[dict[str, Any]]:
    """Five comparison items: yes, no, yes, one of the two named cafés, and one nobody can guess."""

    def item(i: int, question: str, answer: str, a: str, b: str) -> dict[str, Any]:
        return {
            "_id": f"cmp{i}",
            "question": question,
            "answer": answer,
            "type": "comparison",
            "level": "medium",
            "supporting_facts": [[a, 0], [b, 0]],
            "context": [
                para(a, f"{a} opened in {1900 + i} in Graz."),
                para(b, f"{b} opened in 1950 in Linz."),
            ],
        }

    return [
        item(1, "Were Alpha Quartet and Beta Trio both formed in Oslo?", "yes", "Alpha Quartet", "Beta Trio"),
        item(2, "Are Kappa Hall and Lambda Hall in the same city?", "no", "Kappa Hall", "Lambda Hall"),
        item(3, "Is Mu Tower older than Nu Tower?", "yes", "Mu Tower", "Nu Tower"),
        item(
            4,
            "Which café opened first, Café Müller or Kaffeehaus Wien?",
            "Café Müller",
            "Café Müller",
            "Kaffeehaus Wien",
        ),
        item(5, "Which band had more members?", "Tau Quintet", "Tau Quintet", "Rho Duo"),
    ]


def test_hotpotqa_comparisons_show_their_floor_everywhere_with_a_warning(
    tmp_path, capsys, monkeypatch
) -> None:
    # By hand over the five: yes solves 2 (0.4 at every k); no 1; named solves the café item with one
    # of its two names: 0.5 / 5 at k = 1, 1 / 5 from k = 2. Combined tries yes, no, Café Müller,
    # Kaffeehaus Wien: k = 1 -> 2/5, k = 2 -> 3/5 (the no item), k >= 3 -> 4/5 (the café).
    monkeypatch.delenv(CACHE_DIR_ENV)  # the dataset cache beside the file, and the floor's beside it
    path = write_items(tmp_path / "hotpot_dev_distractor_v1.json", "hotpotqa", hotpot_comparisons())
    case = Case(
        "Gather-HotpotQA-v0",
        {"path": str(path), "type": "comparison"},
        "comparison",
        {1: 0.4, 2: 0.6, 4: 0.8, 8: 0.8},
        "of its 5 answers: 3 yes or no, 1 an entity the question names",
    )
    check_floor_everywhere(case, tmp_path, capsys)
    # Cached beside the dataset cache, keyed by the run's tasks.
    cache = path.with_name(path.name + FLOOR_CACHE_SUFFIX)
    assert cache.is_file() and path.with_name(path.name + ".gather-cache.jsonl").is_file()
    assert json.loads(cache.read_text())["entries"]


def test_a_cached_floor_is_read_back_without_loading_the_corpus(tmp_path, monkeypatch) -> None:
    path = write_items(tmp_path / "hotpot_dev_distractor_v1.json", "hotpotqa", hotpot_comparisons())
    out = tmp_path / "run.jsonl"
    evaluate(
        "Gather-HotpotQA-v0",
        "random",
        n=2,
        budgets=(0,),
        out=out,
        env_kwargs={"path": str(path), "type": "comparison"},
        progress=False,
    )
    first = run_floor(read_records(out))
    import gymnasium

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cached floor should need no env")

    monkeypatch.setattr(gymnasium, "make", refuse)
    assert run_floor(read_records(out)) == first


# -- a procedural world with the binary comparison styles ----------------------------------------

WHICH = re.compile(r", (?:the )?(.+?) or (?:the )?(.+?)\?$")


def _world_floor(tasks: list[Any]) -> dict[int, float]:
    """By hand: yes / no answers, and "which" answers among the two names the question ends with.

    Combined tries yes, no, the first name, the second: a "which" answer is its 3rd or 4th guess.
    """
    n = len(tasks)
    yes = sum(t.answer == "yes" for t in tasks)
    no = sum(t.answer == "no" for t in tasks)
    positions = []  # 0 or 1: which of the question's two names is the answer
    for t in tasks:
        if t.answer not in ("yes", "no"):
            match = WHICH.search(t.question)
            assert match is not None and t.answer in match.groups(), t.question
            positions.append(match.groups().index(t.answer))
    which, first = len(positions), positions.count(0)
    named = {k: (0.5 if k == 1 else 1.0) * which / n for k in KS}
    combined = {k: (yes + no * (k >= 2) + first * (k >= 3) + (which - first) * (k >= 4)) / n for k in KS}
    return {k: max(yes / n, no / n, named[k], combined[k]) for k in KS}


def test_a_procedural_world_with_same_and_which_comparisons_shows_its_floor(tmp_path, capsys) -> None:
    from gather_envs.corpus.frozen import procedural_corpus

    # No train split: only the question-only guessers (the train guesser has its own test).
    world = {**SMALL_WORLD, "train_tasks_per_family": 0, "comparison_styles": ["same", "which"]}
    tasks = list(procedural_corpus(world).tasks("test", "comparison"))
    floor = _world_floor(tasks)
    assert floor[2] > 0.25  # the binary styles are guessable: the point of the warning
    case = Case("Gather-Compare-v0", {"world": world}, "comparison", floor, "yes or no")
    check_floor_everywhere(case, tmp_path, capsys)


def test_a_world_with_a_train_split_adds_the_train_guesser(tmp_path) -> None:
    world = {**SMALL_WORLD, "comparison_styles": ["same", "which"]}
    out = tmp_path / "run.jsonl"
    evaluate(
        "Gather-Compare-v0", "random", n=1, budgets=(0,), out=out, env_kwargs={"world": world}, progress=False
    )
    table = run_floor(read_records(out))
    assert table is not None and "train" in table.guessers["comparison"]
    assert list((tmp_path / "cache").glob("corpus-*" + FLOOR_CACHE_SUFFIX))  # under the cache dir


# -- your own files --------------------------------------------------------------------------------

CUSTOM_TASKS = [
    {"id": "c1", "question": "Is Oslo the capital of Norway?", "answer": "yes", "supporting_doc_ids": ["d3"]},
    {"id": "c2", "question": "Is Rome the capital of Norway?", "answer": "no", "supporting_doc_ids": ["d4"]},
    {
        "id": "c3",
        "question": "Does Ann Lee or Bo Lee bake in Rome?",
        "answer": "Bo Lee",
        "supporting_doc_ids": ["d2"],
    },
    {
        "id": "c4",
        "question": "Which city is the capital of Italy?",
        "answer": "Rome",
        "supporting_doc_ids": ["d4"],
    },
]


def test_a_custom_corpus_shows_its_floor(tmp_path, capsys) -> None:
    # By hand: yes 1/4, no 1/4. Named: c3 names Ann Lee, Bo Lee, Rome (one right of three):
    # 1/3, 2/3, 1 at k = 1, 2, 3, over 4 tasks. Combined: yes (c1), no (c2), then c3's Ann Lee,
    # Bo Lee at the fourth guess: 1/4, 2/4, 3/4, 3/4 at k = 1, 2, 4, 8; c4 (names Italy) never.
    documents = write_jsonl(tmp_path / "documents.jsonl", DOCUMENTS)
    tasks = write_jsonl(tmp_path / "tasks.jsonl", CUSTOM_TASKS)
    case = Case(
        "Gather-Custom-v0",
        {"documents": str(documents), "tasks": str(tasks), "family": "single-hop"},
        "single-hop",
        {1: 0.25, 2: 0.5, 4: 0.75, 8: 0.75},
        "of its 4 answers: 2 yes or no, 1 an entity the question names",
    )
    check_floor_everywhere(case, tmp_path, capsys)
    # Named after the tasks file, in $GATHER_ENVS_CACHE_DIR (beside the file when that is unset).
    assert len(list((tmp_path / "cache").glob("tasks.jsonl.*" + FLOOR_CACHE_SUFFIX))) == 1


# -- a PhantomWiki universe with counting questions -------------------------------------------------


def write_counting_universe(directory: Path) -> Path:
    directory.mkdir()
    articles = [
        {
            "title": "Ivo Marsh",
            "article": "Ivo Marsh is a potter. The mother of Ivo Marsh is Una Marsh.",
            "facts": [],
        },
        {
            "title": "Una Marsh",
            "article": "Una Marsh is a sailor. The children of Una Marsh are Ivo Marsh and Pia Marsh.",
            "facts": [],
        },
        {
            "title": "Pia Marsh",
            "article": "Pia Marsh is a chemist. The mother of Pia Marsh is Una Marsh.",
            "facts": [],
        },
    ]

    def question(i: int, text: str, answer: list[str]) -> dict[str, Any]:
        return {
            "id": f"pw-{i}",
            "question": text,
            "solution_traces": "[]",
            "answer": answer,
            "prolog": {"query": [], "answer": "X"},
            "template": text.split(),
            "type": i,
            "difficulty": 2,
            "is_aggregation_question": False,
        }

    questions = [
        question(1, "How many children does the mother of Ivo Marsh have?", ["2"]),
        question(2, "How many siblings does Pia Marsh have?", ["1"]),
        question(3, "Who is the mother of the sibling of Ivo Marsh?", ["Una Marsh"]),
        question(4, "What is the job of the mother of Pia Marsh?", ["sailor"]),
    ]
    (directory / "articles.json").write_text(json.dumps(articles))
    (directory / "questions.json").write_text(json.dumps(questions))
    return directory


def test_a_phantomwiki_universe_counts_its_counting_questions(tmp_path, capsys) -> None:
    # By hand: no yes/no answer, no answer named in its question. The count guesser tries 1, 2, ...
    # on the two "How many" questions: pw-2 (1) at k = 1, pw-1 (2) at k = 2: 1/4, then 2/4.
    path = write_counting_universe(tmp_path / "pw")
    case = Case(
        "Gather-PhantomWiki-v0",
        {"path": str(path)},
        "bridge",
        {1: 0.25, 2: 0.5, 4: 0.5, 8: 0.5},
        "of its 4 answers: 2 a count (guessed 1, 2, 3, ...)",
    )
    check_floor_everywhere(case, tmp_path, capsys)
    table = run_floor(read_records(tmp_path / "random.jsonl"))
    assert table is not None and table.best["bridge"][1] == "number"


# -- docs/datasets.md: the floor of each dataset's families on the files the tests build ------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"
REASON_WORDS = {"yes/no": "yes or no", "named": "named in the question", "count": "count"}


def test_the_datasets_doc_floor_table_is_what_the_test_files_give(tmp_path) -> None:
    from test_datasets import FILE_NAMES, ITEMS

    from gather_envs.corpus.datasets import load_dataset
    from gather_envs.corpus.synthetic import floor_tasks
    from gather_envs.tasks.floor import chance_floor_table

    documented = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 8 and cells[0].startswith("`") and cells[1].startswith("`"):
            documented[(cells[0].strip("`"), cells[1].strip("`"))] = cells[2:]
    measured = {}
    for fmt, make in ITEMS.items():
        path = write_items(tmp_path / FILE_NAMES[fmt], fmt, make())
        table = chance_floor_table(floor_tasks(load_dataset({"format": fmt, "path": str(path)}), "test"))
        for family, per_k in table.floor.items():
            why = [f"{n} {REASON_WORDS[reason]}" for reason, n in table.guessable[family].items()]
            measured[(fmt, family)] = [
                str(table.tasks[family]),
                *(f"{per_k[k]:.3f}" for k in KS),
                ", ".join(why) or "none",
            ]
    assert documented == measured


def test_a_train_split_run_gets_a_measured_floor_without_the_train_guesser(tmp_path) -> None:
    """The stored floor is the test split's; on the train split the run's own tasks are measured."""
    out = tmp_path / "run.jsonl"
    evaluate("Gather-SingleHop-v0", "random", n=1, budgets=(0,), tasks=5, out=out,
             env_kwargs={"split": "train"}, progress=False)  # fmt: skip
    table = run_floor(read_records(out))
    assert table is not None and table.tasks == {"single-hop": 5}
    assert "train" not in table.guessers["single-hop"]  # guessing from the split it is run on is no floor
