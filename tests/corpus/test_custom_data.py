"""Your own data: the JSON-lines format, freezing it, set answers and PhantomWiki's layout, on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import gather_envs  # noqa: F401  (registers the ids)
from gather_envs.corpus.custom import freeze_custom, read_custom
from gather_envs.corpus.floor import floor_cache_path
from gather_envs.corpus.frozen import load_frozen
from gather_envs.errors import ConfigError, CorpusError, DataFileError
from gather_envs.scoring import answer_items, set_equal, set_f1

DOCUMENTS = [
    {
        "id": "d1",
        "title": "Ann Lee",
        "text": "Ann Lee is the sister of Bo Lee and of Cy Lee. Ann Lee was born in Oslo.",
    },
    {"id": "d2", "title": "Bo Lee", "text": "Bo Lee works as a baker in Rome."},
    {"id": "d3", "title": "Oslo", "text": "Oslo is the capital of Norway."},
    {"id": "d4", "title": "Rome", "text": "Rome is the capital of Italy."},
]
TASKS = [
    {
        "id": "q1",
        "question": "Who are the siblings of Ann Lee?",
        "answer_set": ["Bo Lee", "Cy Lee"],
        "supporting_doc_ids": ["d1"],
        "context_doc_ids": ["d2", "d1"],
    },
    {
        "id": "q2",
        "question": "Which country has the capital where Ann Lee was born?",
        "answers": ["Norway", "Kingdom of Norway"],
        "supporting_doc_ids": ["d1", "d3"],
        "context_doc_ids": ["d3", "d4", "d1"],
    },
    {"id": "q3", "question": "Where does Bo Lee work?", "answer": "Rome", "split": "train"},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    return write_jsonl(tmp_path / "documents.jsonl", DOCUMENTS), write_jsonl(tmp_path / "tasks.jsonl", TASKS)


def make(files: tuple[Path, Path], **kwargs) -> gym.Env:
    return gym.make("Gather-Custom-v0", documents=str(files[0]), tasks=str(files[1]), **kwargs)


# -- the generic format ---------------------------------------------------------------------------


def test_good_files_load_with_their_splits_families_and_answers(files: tuple[Path, Path]) -> None:
    corpus = read_custom(*files)
    assert [d.doc_id for d in corpus.documents] == ["d1", "d2", "d3", "d4"]
    assert sorted(corpus.splits) == ["test", "train"]
    q1, q2 = corpus.splits["test"]
    assert (q1.family, q1.hops, q1.meta["checker"], q1.meta["answer_set"]) == (
        "single-hop",
        1,
        "set",
        ["Bo Lee", "Cy Lee"],
    )
    assert (q2.family, q2.hops, q2.answers) == ("bridge", 2, ("Norway", "Kingdom of Norway"))
    assert [step.doc_id for step in q2.gold_path] == ["d1", "d3"]


@pytest.mark.parametrize("scope", ["world", "distractor"])
def test_an_episode_runs_the_usual_actions_budget_and_reward_in_both_scopes(files, scope: str) -> None:
    env = make(files, family="bridge", scope=scope, max_tool_calls=1, top_k=1)
    obs, info = env.reset(seed=0)
    assert "Ann Lee was born" in obs and info["task_id"] == "q2"
    obs, reward, terminated, _, info = env.step("search[capital Norway]")
    assert "[Oslo]" in obs and (reward, terminated, info["tool_calls_left"]) == (0.0, False, 0)
    _, _, terminated, _, info = env.step("search[Ann Lee]")
    assert not terminated and info["action_type"] == "invalid"  # the budget of 1 is spent
    _, reward, terminated, _, info = env.step("answer[kingdom of norway]")
    assert (reward, terminated, info["success"]) == (1.0, True, True)


def test_the_distractor_scope_searches_only_the_tasks_context(files) -> None:
    env = make(files, family="single-hop", scope="distractor", top_k=5)
    env.reset(seed=0)
    obs = env.step("search[capital]")[0]
    assert "[Oslo]" not in obs and "[Rome]" not in obs and "[Bo Lee]" in obs


def test_the_family_must_be_chosen_when_a_split_has_several(files) -> None:
    with pytest.raises(ConfigError, match="bridge=1, single-hop=1; pass family="):
        make(files)
    assert make(files, split="train").unwrapped.family == "single-hop"


def test_the_distractor_scope_needs_context_doc_ids(files) -> None:
    with pytest.raises(ConfigError, match="context_doc_ids.*'q3'"):
        make(files, split="train", scope="distractor")


BROKEN = [
    ("documents", "{not json\n", "documents.jsonl:1: not valid JSON"),
    ("documents", '{"id": "d1", "title": "A"}\n', "documents.jsonl:1: field 'text' is missing"),
    (
        "documents",
        '{"id": 5, "title": "A", "text": "x"}\n',
        "documents.jsonl:1: field 'id' must be a non-empty string",
    ),
    (
        "documents",
        '{"id": "d1", "title": "A", "text": "x"}\n\n{"id": "d1", "title": "B", "text": "y"}\n',
        "documents.jsonl:3: field 'id' 'd1' repeats line 1",
    ),
    ("documents", "", "documents.jsonl: the file is empty"),
    ("documents", '["d1"]\n', "documents.jsonl:1: each line must be a JSON object"),
    (
        "documents",
        '{"id": "d1", "title": "A", "text": "x", "body": "y"}\n',
        "documents.jsonl:1: unknown field 'body'",
    ),
    (
        "tasks",
        '{"id": "q", "question": "Who?", "answer": "Ann"}\n{"id": "q", "question": "Who?", "answer": "Bo"}\n',
        "tasks.jsonl:2: field 'id' 'q' repeats line 1",
    ),
    ("tasks", '{"id": "q", "question": "Who?"}\n', "tasks.jsonl:1: give exactly one of the fields"),
    (
        "tasks",
        '{"id": "q", "question": "Who?", "answers": "A"}\n',
        "tasks.jsonl:1: field 'answers' must be a list",
    ),
    (
        "tasks",
        '{"id": "q", "question": "Who?", "answer": "Ann", "hops": "two"}\n',
        "tasks.jsonl:1: field 'hops' must be an int >= 1",
    ),
    (
        "tasks",
        '{"id": "q", "question": "Who?", "answer": "Ann", "supporting_doc_ids": ["d9"]}\n',
        "tasks.jsonl:1: field 'supporting_doc_ids' names 'd9', which is no id",
    ),
    (
        "tasks",
        '{"id": "q", "question": "Who?", "answer": "Ann", "family": "essay"}\n',
        "tasks.jsonl:1: field 'family' must be one of",
    ),
    (
        "tasks",
        '{"id": "q", "question": "Who?", "answer": "Ann", "answer_type": "set"}\n',
        "tasks.jsonl:1: field 'answer_type' is 'set' exactly when",
    ),
    (
        "tasks",
        '{"id": "q", "question": "Who?", "answer": "Ann", "split": "dev/1"}\n',
        "tasks.jsonl:1: field 'split' must be letters",
    ),
    ("tasks", "\n\n", "tasks.jsonl: the file is empty"),
]


@pytest.mark.parametrize(("which", "content", "message"), BROKEN)
def test_each_broken_file_is_one_error_naming_file_line_and_field(
    tmp_path, files, which, content, message
) -> None:
    documents, tasks = files
    (documents if which == "documents" else tasks).write_text(content, encoding="utf-8")
    with pytest.raises(DataFileError) as caught:
        read_custom(documents, tasks)
    assert message in str(caught.value) and str(tmp_path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_utf8_names_its_line(files) -> None:
    files[0].write_bytes(
        b'{"id": "d1", "title": "A", "text": "x"}\n{"id": "d2", "title": "\xff", "text": "y"}\n'
    )
    with pytest.raises(DataFileError, match=r"documents.jsonl:2: not UTF-8"):
        read_custom(*files)


# -- freezing -------------------------------------------------------------------------------------


def test_import_freezes_a_corpus_that_reloads_bit_for_bit(tmp_path, files) -> None:
    out = tmp_path / "corpus"
    manifest = freeze_custom(*files, out, name="family")
    corpus = load_frozen(str(out))
    original = read_custom(*files, name="family")
    assert [d.to_json() for d in corpus.documents] == [d.to_json() for d in original.documents]
    assert {s: [t.to_json() for t in ts] for s, ts in corpus.splits.items()} == {
        s: [t.to_json() for t in ts] for s, ts in original.splits.items()
    }
    assert corpus.content_hash == manifest["content_hash"]
    again = tmp_path / "again"
    freeze_custom(*files, again, name="family")
    for name in sorted(p.name for p in out.iterdir()):
        assert (out / name).read_bytes() == (again / name).read_bytes()
    env = gym.make("Gather-v0", corpus=str(out), family="single-hop")
    env.reset(seed=0)
    assert env.step("answer[Cy Lee, Bo Lee]")[1] == 1.0


def test_an_edited_imported_corpus_is_refused(tmp_path, files) -> None:
    out = tmp_path / "corpus"
    freeze_custom(*files, out)
    tasks = out / "tasks-test.jsonl"
    tasks.write_text(tasks.read_text().replace("Norway", "Sweden"))
    with pytest.raises(CorpusError, match="sha256"):
        load_frozen(str(out))


def test_the_import_command_writes_the_corpus_and_reports_the_floor(tmp_path, files) -> None:
    out = tmp_path / "cli-corpus"
    command = [
        sys.executable,
        "-m",
        "gather_envs.cli",
        "import",
        "--documents",
        str(files[0]),
        "--tasks",
        str(files[1]),
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert "chance floor PASS@(1, 0) (question-only rules)" in result.stdout
    assert (out / "manifest.json").is_file()
    files[1].write_text('{"id": "q"}\n')
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "tasks.jsonl:1: field 'question' is missing" in result.stderr


# -- set answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "success", "f1"),
    [
        ("Bo Lee; Cy Lee", True, 1.0),
        ("cy lee, bo lee", True, 1.0),  # order and case do not matter
        ("Bo Lee; Bo Lee; Cy Lee", True, 1.0),  # repeats count once
        ("Bo Lee", False, 2 / 3),  # a missing item
        ("Bo Lee; Cy Lee; Ann Lee", False, 0.8),  # an extra item
        ("Bo Lee and Cy Lee", False, 0.0),  # "and" is no separator
        ('["Cy Lee", "Bo Lee"]', True, 1.0),
    ],
)
def test_set_answers_need_every_item_and_no_other(files, prediction: str, success: bool, f1: float) -> None:
    env = make(files, family="single-hop")
    env.reset(seed=0)
    _, reward, _, _, info = env.step(f"<answer>{prediction}</answer>")
    assert (info["success"], reward) == (success, float(success))
    assert info["f1"] == pytest.approx(f1)


def test_a_json_list_answer_scores_its_items_and_records_its_json(files) -> None:
    env = make(files, family="single-hop", dialect="json")
    env.reset(seed=0)
    _, reward, _, _, info = env.step('{"name": "answer", "arguments": {"answer": ["Cy Lee", "Bo Lee"]}}')
    assert reward == 1.0 and json.loads(info["answer"]) == ["Cy Lee", "Bo Lee"]


def test_semicolons_split_before_commas_so_names_may_hold_commas() -> None:
    gold = ["Smith, John", "Doe, Jane"]
    assert answer_items("Smith, John; Doe, Jane") == ("Smith, John", "Doe, Jane")
    assert set_equal("Doe, Jane; Smith, John", gold)
    assert not set_equal("Smith, John, Doe, Jane", gold)  # commas alone split the names apart
    assert set_equal(["Smith, John", "Doe, Jane"], gold)
    assert set_f1("", gold) == 0.0 and not set_equal("", gold)


# -- PhantomWiki ----------------------------------------------------------------------------------


def write_phantomwiki(directory: Path) -> Path:
    """A tiny universe in PhantomWiki's JSON layout (our own people and sentences)."""
    directory.mkdir()
    people = {
        "Ivo Marsh": ("Ivo Marsh is a potter. The mother of Ivo Marsh is Una Marsh.", ["job(ivo, potter)"]),
        "Una Marsh": ("Una Marsh is a sailor. The children of Una Marsh are Ivo Marsh and Pia Marsh.", []),
        "Pia Marsh": ("Pia Marsh is a chemist. The mother of Pia Marsh is Una Marsh.", []),
    }
    articles = [{"title": t, "article": a, "facts": f} for t, (a, f) in people.items()]
    questions = [
        {
            "id": "pw-1",
            "question": "Who are the children of Una Marsh?",
            "solution_traces": "[]",
            "answer": ["Ivo Marsh", "Pia Marsh"],
            "prolog": {"query": ["child(X, 'Una Marsh')"], "answer": "X"},
            "template": ["Who", "are", "the", "children", "of", "<name>", "?"],
            "type": 0,
            "difficulty": 1,
            "is_aggregation_question": False,
        },
        {
            "id": "pw-2",
            "question": "What is the job of the mother of Pia Marsh?",
            "solution_traces": "[]",
            "answer": ["sailor"],
            "prolog": {"query": ["mother(Y, 'Pia Marsh')", "job(Y, X)"], "answer": "X"},
            "template": ["What", "is", "the", "job", "of", "the", "mother", "of", "<name>", "?"],
            "type": 3,
            "difficulty": 2,
            "is_aggregation_question": False,
        },
    ]
    (directory / "articles.json").write_text(json.dumps(articles, indent=4))
    (directory / "questions.json").write_text(json.dumps(questions, indent=4))
    return directory


def test_phantomwiki_output_searches_articles_and_scores_sets(tmp_path) -> None:
    path = write_phantomwiki(tmp_path / "pw")
    env = gym.make("Gather-PhantomWiki-v0", path=str(path), family="single-hop")
    obs, info = env.reset(seed=0)
    assert "children of Una Marsh" in obs and info["hops"] == 1
    assert "[Una Marsh]" in env.step("search[children of Una Marsh]")[0]
    assert env.step("answer[Pia Marsh; Ivo Marsh]")[1] == 1.0
    bridge = gym.make("Gather-PhantomWiki-v0", path=str(path))
    _, info = bridge.reset(seed=0)
    assert (info["task_id"], info["hops"], info["family"]) == ("pw-2", 2, "bridge")
    assert bridge.step("answer[sailor]")[1] == 1.0


def test_phantomwiki_problems_name_the_file_and_item(tmp_path) -> None:
    path = write_phantomwiki(tmp_path / "pw")
    questions = json.loads((path / "questions.json").read_text())
    questions[1]["answer"] = "sailor"
    (path / "questions.json").write_text(json.dumps(questions))
    with pytest.raises(DataFileError, match=r"questions.json: item 1 field 'answer'"):
        gym.make("Gather-PhantomWiki-v0", path=str(path))
    with pytest.raises(DataFileError, match="articles.json and questions.json"):
        gym.make("Gather-PhantomWiki-v0")


# -- prompts, characters, records -------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "shown"), [("react", "answer[A; B]"), ("json", '["A", "B"]')])
def test_a_set_task_says_that_every_answer_is_wanted(files, dialect: str, shown: str) -> None:
    obs = make(files, family="single-hop", dialect=dialect).reset(seed=0)[0]
    assert "several answers" in obs and shown in obs
    assert "several answers" not in make(files, family="bridge").reset(seed=0)[0]


def test_two_task_files_over_the_same_documents_keep_their_own_characters(tmp_path, files) -> None:
    make(files, family="bridge").reset(seed=0)
    other = write_jsonl(
        tmp_path / "other.jsonl", [{"id": "q", "question": "Wer ist Ännchens Schwester?", "answer": "Bo"}]
    )
    obs = gym.make("Gather-Custom-v0", documents=str(files[0]), tasks=str(other)).reset(seed=0)[0]
    assert "Wer ist Ännchens Schwester?" in obs


def test_set_episodes_are_recorded_and_reported_like_any_other(tmp_path, files) -> None:
    out = tmp_path / "run.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    kwargs = [
        "--kwarg",
        f"documents={files[0]}",
        "--kwarg",
        f"tasks={files[1]}",
        "--kwarg",
        "family=single-hop",
    ]
    cli = [sys.executable, "-m", "gather_envs.cli"]
    evaluate = [
        *cli,
        "eval",
        "Gather-Custom-v0",
        "--agent",
        "oracle",
        "--out",
        str(out),
        "--n",
        "2",
        "--budgets",
        "0,2",
        *kwargs,
    ]
    result = subprocess.run([*evaluate, "--quiet"], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["budget"], r["success"]) for r in records} == {(0, False), (2, True)}
    assert {r["gold_answer"] for r in records} == {"Bo Lee; Cy Lee"}
    report = subprocess.run([*cli, "report", str(out)], capture_output=True, text=True, env=env, check=False)
    assert report.returncode == 0 and "1.000 [1.000, 1.000]" in report.stdout
    floor_rows = [line.split() for line in report.stdout.splitlines() if line.startswith("floor")]
    assert floor_rows[0][:3] == ["floor", "0.000", "0.000"]  # no question-only guess names both siblings
    # The floor measured on these tasks is cached beside their file's cache: it outlives the file (keyed
    # by the run's corpus hash and task ids, so it is the floor of exactly what ran).
    cache = floor_cache_path(records[0]["corpus_hash"], str(files[1]))  # beside the file, or in the cache dir
    files[1].unlink()
    report = subprocess.run([*cli, "report", str(out)], capture_output=True, text=True, env=env, check=False)
    assert report.returncode == 0 and cache.is_file()
    assert [line.split() for line in report.stdout.splitlines() if line.startswith("floor")] == floor_rows
    cache.unlink()  # files and cache gone: the report still runs, and shows no floor rather than invent one
    report = subprocess.run([*cli, "report", str(out)], capture_output=True, text=True, env=env, check=False)
    assert report.returncode == 0 and not any(line.startswith("floor") for line in report.stdout.splitlines())


def test_the_floor_of_imported_tasks_uses_the_question_only_guessers(tmp_path, files) -> None:
    from gather_envs.cli.import_corpus import floor_summary

    tasks = [
        {
            "id": "y",
            "question": "Is Oslo the capital of Norway?",
            "answer": "yes",
            "supporting_doc_ids": ["d3"],
        },
        {"id": "n", "question": "Who bakes in Rome?", "answer": "Bo Lee", "supporting_doc_ids": ["d2"]},
    ]
    manifest = freeze_custom(files[0], write_jsonl(tmp_path / "yes.jsonl", tasks), tmp_path / "c")
    floor = manifest["chance_floor"]["single-hop"]
    assert (floor["floor"]["1"], floor["best_guesser"]["1"], floor["tasks"]) == (0.5, "yes", 2)
    assert "train" not in floor["guessers"]
    summary = floor_summary(manifest)
    assert (
        "no train split, so no train guesser" in summary
        and "single-hop: 0.5000 by yes over 2 tasks" in summary
    )
    no_test = [{**tasks[0], "split": "dev"}]
    manifest = freeze_custom(files[0], write_jsonl(tmp_path / "dev.jsonl", no_test), tmp_path / "d")
    assert manifest["chance_floor"] == {} and "no 'test' split" in floor_summary(manifest)


def test_custom_and_phantomwiki_envs_survive_pickling_and_spec_round_trips(tmp_path, files) -> None:
    import pickle

    pw = write_phantomwiki(tmp_path / "pw")
    for env in (make(files, family="bridge"), gym.make("Gather-PhantomWiki-v0", path=str(pw))):
        assert env.spec is not None
        rebuilt = gym.make(gym.envs.registration.EnvSpec.from_json(env.spec.to_json()))
        copy = pickle.loads(pickle.dumps(env.unwrapped))
        observations = {e.reset(seed=3)[0] for e in (env, rebuilt, copy)}
        assert len(observations) == 1


def test_list_names_the_own_data_ids_with_the_files_they_need() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-m", "gather_envs.cli", "list"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "Gather-Custom-v0" in result.stdout
        and "documents=.../documents.jsonl tasks=.../tasks.jsonl" in result.stdout
    )
    assert "Gather-PhantomWiki-v0" in result.stdout and "articles.json and questions.json" in result.stdout
