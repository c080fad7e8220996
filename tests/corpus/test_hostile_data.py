"""Bring-your-own data under attack: kills and full disks mid-import, links, odd Unicode, deep JSON.

Every writer of a corpus swaps a complete folder in (old or new, never a mix), never writes
through a link, and every reader refuses what it cannot take in one line naming file and line.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gather_envs  # noqa: F401  (registers the ids)
from gather_envs.cli import main
from gather_envs.corpus.custom import freeze_custom, read_custom
from gather_envs.corpus.frozen import MANIFEST, load_directory, load_frozen
from gather_envs.corpus.manifest import HASHES_FIELD, seal_manifest
from gather_envs.errors import CorpusError, DataFileError, GatherError, OutputError, RecordsError
from gather_envs.files import TEMP_SUFFIX, atomic_directory
from gather_envs.json_files import MAX_JSON_DEPTH
from gather_envs.runs import read_records
from gather_envs.scoring import normalize_answer

ROOT = Path(__file__).resolve().parents[2]
KILLS = 24
KILL_SEED = 25
DEEP = 100_000
ODD = "\u2028\u2029\u0085" + "".join(map(chr, range(1, 32))) + "\x7f\x80\x9f" + "😀𝔸\U0010fffd"
"""Unicode line breaks, every NUL-free C0 control, DEL, C1 controls and astral characters."""


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def write_rows(path: Path, rows: list[Any], ensure_ascii: bool = False) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=ensure_ascii) + "\n" for r in rows), encoding="utf-8")
    return path


def inputs(directory: Path, seed: int, train: bool, n_docs: int = 600) -> tuple[Path, Path]:
    """A documents and a tasks file of ``n_docs`` people (tasks with a train split when ``train``)."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "zeta", "theta", "iota"]
    documents = [
        {
            "id": f"d{i}",
            "title": f"Person{seed}x{i}",
            "text": f"Person{seed}x{i} lives in City{i % 40}. " + " ".join(rng.choices(words, k=60)),
        }
        for i in range(n_docs)
    ]
    tasks = [
        {
            "id": f"q{i}",
            "question": f"Where does Person{seed}x{i} live?",
            "answer": f"City{i % 40}",
            "supporting_doc_ids": [f"d{i}"],
            **({"split": "train"} if train and i % 4 == 0 else {}),
        }
        for i in range(0, n_docs, 5)
    ]
    directory.mkdir(parents=True, exist_ok=True)
    return write_rows(directory / "documents.jsonl", documents), write_rows(directory / "tasks.jsonl", tasks)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every entry of a folder by name (a link is read as a link, never followed)."""
    return {
        p.name: (b"->" + os.readlink(p).encode()) if p.is_symlink() else p.read_bytes()
        for p in sorted(directory.iterdir())
    }


def import_command(files: tuple[Path, Path], out: Path) -> list[str]:
    return [
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


def staging_left(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.endswith(TEMP_SUFFIX))


# -- kills, full disks, links --------------------------------------------------------------------


def _import_quietly(argv: list[str]) -> None:
    """A forked child's body: the ``gather-envs import`` command, its output discarded."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os._exit(main(argv))


def _start(argv: list[str], forked: bool) -> Any:
    """A real process running ``gather-envs import``: forked from this one (no interpreter start-up, so
    the kill lands inside the import more often) or a fresh ``python -m gather_envs.cli``."""
    if forked:
        process = multiprocessing.get_context("fork").Process(target=_import_quietly, args=(argv,))
        process.start()
        return process
    return subprocess.Popen(
        [sys.executable, "-m", "gather_envs.cli", *argv],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkill_at_random_points_of_an_import_leaves_the_old_corpus_or_the_new_one(tmp_path: Path) -> None:
    """24 real SIGKILLs: at a random time of the whole run, or just after the new folder appears."""
    out = tmp_path / "corpus"
    argv = {}
    for name, seed, train in (
        ("old", 1, True),
        ("new", 2, False),
    ):  # no train split in new: tasks-train.jsonl must go
        files = inputs(tmp_path / f"{name}-in", seed, train=train, n_docs=300)
        argv[name] = ["import", "--documents", str(files[0]), "--tasks", str(files[1]), "--out", str(out)]
    expected = {}
    for name in ("new", "old"):
        assert main(argv[name]) == 0
        expected[name] = snapshot(out)
    assert "tasks-train.jsonl" in expected["old"] and "tasks-train.jsonl" not in expected["new"]
    durations = {}
    for forked in (True, False):
        started = time.monotonic()
        process = _start(argv["old"], forked)
        (process.join if forked else process.wait)()
        durations[forked] = time.monotonic() - started
    assert snapshot(out) == expected["old"]
    rng = random.Random(KILL_SEED)
    state, outcomes, midway = "old", [], 0
    for kill in range(KILLS):
        forked = kill % 8 != 7  # every eighth through a fresh interpreter, as a user runs it
        target = "new" if state == "old" else "old"
        stale = set(staging_left(tmp_path))  # left by the writer killed before: the next one sweeps them
        process = _start(argv[target], forked)
        if kill % 2:  # just after the staging folder appears: inside the writes, the fsyncs or the swap
            deadline = time.monotonic() + 10 * durations[forked]
            while not set(staging_left(tmp_path)) - stale and time.monotonic() < deadline:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0.0, 0.02))
        else:
            time.sleep(rng.uniform(0.0, durations[forked]))
        midway += bool(set(staging_left(tmp_path)) - stale)
        os.kill(process.pid, signal.SIGKILL)
        (process.join if forked else process.wait)()
        found = snapshot(out)
        assert found in (expected["old"], expected["new"]), f"kill {kill}: a mix of {sorted(found)}"
        state = "new" if found == expected["new"] else "old"
        assert load_directory(out).content_hash == json.loads(expected[state][MANIFEST])["content_hash"]
        outcomes.append("swapped" if state == target else "kept")
    print(
        f"{KILLS} kills, {midway} while a new folder was being written: {outcomes.count('kept')} kept "
        f"the old corpus, {outcomes.count('swapped')} swapped in the new one (one import: {durations})"
    )
    assert main(argv["new"]) == 0
    assert snapshot(out) == expected["new"]
    assert staging_left(tmp_path) == []  # the folders of killed writers are swept by the next one


ENOSPC_SCRIPT = """
import errno, os, pathlib, sys
real = pathlib.Path.write_bytes
def full_disk(self, data):
    if self.name == "documents.jsonl":
        real(self, data[: len(data) // 2])  # the disk fills halfway through the file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(self, data)
pathlib.Path.write_bytes = full_disk
from gather_envs.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_leaves_the_old_corpus_and_one_line_naming_the_path(tmp_path: Path) -> None:
    old_files = inputs(tmp_path / "old-in", 1, train=True, n_docs=50)
    new_files = inputs(tmp_path / "new-in", 2, train=False, n_docs=50)
    out = tmp_path / "corpus"
    assert (
        main(["import", "--documents", str(old_files[0]), "--tasks", str(old_files[1]), "--out", str(out)])
        == 0
    )
    before = snapshot(out)
    result = subprocess.run(
        [sys.executable, "-c", ENOSPC_SCRIPT, *import_command(new_files, out)[3:]],
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{out}: cannot write (No space left on device)" in result.stderr
    assert snapshot(out) == before
    assert staging_left(tmp_path) == []


TMPFS_SCRIPT = """
set -e
mount -t tmpfs -o size=192k tmpfs "$1"
PY="$2"; shift 2
"$PY" -m gather_envs.cli import --documents "$1" --tasks "$2" --out "$MNT/corpus" > /dev/null
"$PY" -c 'import json,os,sys; d=os.environ["MNT"]+"/corpus"; print(json.dumps({n: open(os.path.join(d, n), "rb").read().hex() for n in sorted(os.listdir(d))}))'
set +e
"$PY" -m gather_envs.cli import --documents "$3" --tasks "$4" --out "$MNT/corpus" 2> "$MNT/err"
echo "rc=$?"
"$PY" -c 'import json,os,sys; d=os.environ["MNT"]+"/corpus"; print(json.dumps({n: open(os.path.join(d, n), "rb").read().hex() for n in sorted(os.listdir(d))}))'
cat "$MNT/err"
ls -A "$MNT"
"""


def test_a_real_full_tmpfs_leaves_the_old_corpus(tmp_path: Path) -> None:
    """The same on a real 192 KiB tmpfs, where the kernel lets us mount one (a user namespace)."""
    probe = (
        subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True)
        if shutil.which("unshare")
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip("no unprivileged mount namespace here to mount a small tmpfs in")
    old_files = inputs(tmp_path / "old-in", 1, train=True, n_docs=40)
    new_files = inputs(tmp_path / "new-in", 2, train=False, n_docs=900)  # larger than the tmpfs
    mount = tmp_path / "mnt"
    mount.mkdir()
    result = subprocess.run(
        [
            "unshare",
            "-r",
            "-m",
            "sh",
            "-c",
            TMPFS_SCRIPT,
            "sh",
            str(mount),
            sys.executable,
            *old_files,
            *new_files,
        ],
        env={**cli_env(), "MNT": str(mount)},
        capture_output=True,
        text=True,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and lines[1] == "rc=2", result.stdout + result.stderr
    assert lines[0] == lines[2]  # byte for byte the old corpus
    assert "No space left on device" in lines[3] and f"{mount}/corpus: cannot write" in lines[3]
    assert lines[4:] == ["corpus", "err"]  # no staging folder left behind


def test_a_symlinked_output_file_is_never_written_through(tmp_path: Path) -> None:
    old_files = inputs(tmp_path / "old-in", 1, train=True, n_docs=20)
    new_files = inputs(tmp_path / "new-in", 2, train=False, n_docs=20)
    out = tmp_path / "corpus"
    freeze_custom(*old_files, out)
    victim = tmp_path / "precious.txt"
    victim.write_text("do not overwrite me")
    (out / "documents.jsonl").unlink()
    (out / "documents.jsonl").symlink_to(victim)
    freeze_custom(*new_files, out)
    assert victim.read_text() == "do not overwrite me"
    assert not (out / "documents.jsonl").is_symlink()
    assert load_directory(out).content_hash == read_custom(*new_files).content_hash


def test_a_symlinked_or_foreign_output_folder_is_refused_untouched(tmp_path: Path) -> None:
    files = inputs(tmp_path / "in", 1, train=False, n_docs=10)
    real = tmp_path / "real"
    real.mkdir()
    (real / "notes.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    for out, message in ((link, "is a symbolic link"), (real, "holds 'notes.txt'")):
        with pytest.raises(OutputError, match=message) as info:
            freeze_custom(*files, out)
        assert str(out) in str(info.value) and "\n" not in str(info.value)
    assert link.is_symlink() and snapshot(real) == {"notes.txt": b"mine"}
    assert staging_left(tmp_path) == []


def test_an_error_inside_an_atomic_directory_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), atomic_directory(target) as staging:
        (staging / "half").write_bytes(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


# -- odd Unicode ---------------------------------------------------------------------------------


@pytest.mark.parametrize("escaped", [False, True], ids=["raw", "escaped"])
def test_odd_characters_round_trip_through_import_load_search_records_and_report(
    tmp_path: Path, escaped: bool
) -> None:
    title, answer = f"Zorvath{ODD}Quill", f"Velmora{ODD}Keep"
    documents = [
        {"id": f"doc{ODD}", "title": title, "text": f"{title} guards the gate of {answer}, line{ODD}break."},
        {"id": "other", "title": "Brannock", "text": "Brannock tends the orchard by the river."},
    ]
    tasks = [
        {
            "id": f"task{ODD}",
            "question": f"Which gate does {title} guard?",
            "answer": answer,
            "supporting_doc_ids": [f"doc{ODD}"],
        },
    ]
    files = (
        write_rows(tmp_path / "documents.jsonl", documents, ensure_ascii=escaped),
        write_rows(tmp_path / "tasks.jsonl", tasks, ensure_ascii=escaped),
    )
    assert ("\u2028" in files[0].read_text()) is not escaped  # raw in one variant, escaped in the other
    out = tmp_path / "corpus"
    assert main(["import", "--documents", str(files[0]), "--tasks", str(files[1]), "--out", str(out)]) == 0
    corpus = load_frozen(str(out))
    assert [d.to_json() for d in corpus.documents] == [
        {"doc_id": d["id"], "title": d["title"], "text": d["text"]} for d in documents
    ]
    task = corpus.tasks("test")[0]
    assert (task.task_id, task.question, task.answer) == (tasks[0]["id"], tasks[0]["question"], answer)
    env = gym.make("Gather-v0", corpus=str(out), family="single-hop")
    env.reset(seed=0)
    observation = env.step("search[Zorvath Quill gate]")[0]
    assert "Velmora" in observation and "Brannock" not in observation.split("Velmora")[0]
    records_file = tmp_path / "run.jsonl"
    argv = [
        "eval",
        "Gather-v0",
        "--agent",
        "oracle",
        "--out",
        str(records_file),
        "--n",
        "1",
        "--budgets",
        "2",
    ]
    assert main([*argv, "--kwarg", f"corpus={out}", "--kwarg", "family=single-hop", "--quiet"]) == 0
    (record,) = read_records(records_file)
    assert (record.task_id, record.gold_answer, record.success) == (task.task_id, answer, True)
    assert normalize_answer(record.answer or "") == normalize_answer(
        answer
    )  # the action text, whitespace folded
    assert [" ".join(q.split()) for q in record.queries] == [" ".join(title.split())]  # the action's text
    assert record.supporting_doc_ids == (f"doc{ODD}",)
    report = subprocess.run(
        [sys.executable, "-m", "gather_envs.cli", "report", str(records_file)],
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0 and "1.000" in report.stdout, report.stderr


# -- deep and odd JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["documents", "tasks"])
def test_deep_json_in_an_import_file_is_one_line(tmp_path: Path, which: str) -> None:
    files = inputs(tmp_path / "in", 1, train=False, n_docs=10)
    path = files[0] if which == "documents" else files[1]
    path.write_text(path.read_text() + "[" * DEEP + "]" * DEEP + "\n")
    line = len(path.read_text().split("\n")) - 1
    result = subprocess.run(
        import_command(files, tmp_path / "out"), env=cli_env(), capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"{path}:{line}: nested deeper than {MAX_JSON_DEPTH}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_deep_json_in_a_custom_env_file_is_one_error(tmp_path: Path) -> None:
    files = inputs(tmp_path / "in", 1, train=False, n_docs=10)
    files[1].write_text('{"id": "q", "question": "Who?", "answer": ' + "[" * DEEP + "]" * DEEP + "}\n")
    with pytest.raises(DataFileError, match=r"tasks\.jsonl:1: nested deeper than"):
        gym.make("Gather-Custom-v0", documents=str(files[0]), tasks=str(files[1]))


def test_deep_json_in_phantomwiki_questions_is_one_error(tmp_path: Path) -> None:
    from test_custom_data import write_phantomwiki

    path = write_phantomwiki(tmp_path / "pw")
    (path / "questions.json").write_text("[" * DEEP + "]" * DEEP)
    with pytest.raises(DataFileError, match=r"questions\.json: nested deeper than"):
        gym.make("Gather-PhantomWiki-v0", path=str(path))


def test_deep_json_in_a_records_file_or_a_manifest_is_one_error(tmp_path: Path) -> None:
    records_file = tmp_path / "run.jsonl"
    records_file.write_text("[" * DEEP + "]" * DEEP + "\n")
    with pytest.raises(RecordsError, match=r"is not an episode-records file") as info:
        read_records(records_file)
    assert "nested deeper" in str(info.value) and "\n" not in str(info.value)
    files = inputs(tmp_path / "in", 1, train=False, n_docs=10)
    out = tmp_path / "corpus"
    freeze_custom(*files, out)
    (out / MANIFEST).write_text('{"x": ' + "[" * DEEP + "]" * DEEP + "}")
    with pytest.raises(CorpusError, match=r"manifest\.json: unreadable manifest \(nested deeper"):
        load_directory(out)


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_lines_split_on_newline_only_and_crlf_is_accepted(tmp_path: Path, ending: str) -> None:
    documents = [{"id": "d1", "title": "A\u2028B", "text": "x\u2029y\u0085z\x0bw\x0cv\x1cu\x1dt\x1es"}]
    raw = "".join(json.dumps(d, ensure_ascii=False) + ending for d in documents)
    assert len(raw.splitlines()) > len(documents)  # what str.splitlines would have torn apart
    (tmp_path / "documents.jsonl").write_text(raw, encoding="utf-8", newline="")
    tasks = write_rows(tmp_path / "tasks.jsonl", [{"id": "q", "question": "Who?", "answer": "Bo"}])
    corpus = read_custom(tmp_path / "documents.jsonl", tasks)
    assert corpus.documents[0].title == "A\u2028B" and corpus.documents[0].text == documents[0]["text"]


# -- gold answers that normalize to nothing --------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"answer": "The"}, "field 'answer' is 'The'"),
        ({"answer": "!!!"}, "field 'answer' is '!!!'"),
        ({"answers": ["Oslo", "a an the"]}, "field 'answers'[1] is 'a an the'"),
        ({"answer_set": ["Oslo", "?"]}, "field 'answer_set'[1] is '?'"),
    ],
)
def test_a_gold_answer_that_normalizes_to_nothing_is_refused_at_import(
    tmp_path: Path, fields: dict[str, Any], where: str
) -> None:
    documents = write_rows(tmp_path / "documents.jsonl", [{"id": "d", "title": "T", "text": "x"}])
    good = {"id": "q1", "question": "Where?", "answer": "Oslo"}
    tasks = write_rows(tmp_path / "tasks.jsonl", [good, {"id": "q2", "question": "Where?", **fields}])
    with pytest.raises(DataFileError) as info:
        freeze_custom(documents, tasks, tmp_path / "out")
    assert f"tasks.jsonl:2: {where}" in str(info.value) and "normalizes to the empty string" in str(
        info.value
    )
    assert not (tmp_path / "out").exists()


def test_a_gold_answer_that_normalizes_to_nothing_is_refused_at_load(tmp_path: Path) -> None:
    files = inputs(tmp_path / "in", 1, train=False, n_docs=10)
    out = tmp_path / "corpus"
    freeze_custom(*files, out)
    tasks_file = out / "tasks-test.jsonl"
    lines = tasks_file.read_text().split("\n")
    row = json.loads(lines[1])
    row["aliases"] = ["An"]
    lines[1] = json.dumps(row, sort_keys=True, separators=(",", ":"))
    tasks_file.write_text("\n".join(lines))
    manifest = json.loads((out / MANIFEST).read_text())  # re-sealed: only the answer check can refuse it
    manifest["files"]["tasks-test.jsonl"] = __import__("hashlib").sha256(tasks_file.read_bytes()).hexdigest()
    manifest.pop(HASHES_FIELD)
    (out / MANIFEST).write_text(json.dumps(seal_manifest(manifest)))
    with pytest.raises(
        CorpusError, match=r"tasks-test\.jsonl:2: field 'aliases\[0\]' normalizes to the empty"
    ):
        load_directory(out)


def test_phantomwiki_answers_that_normalize_to_nothing_are_refused(tmp_path: Path) -> None:
    from test_custom_data import write_phantomwiki

    path = write_phantomwiki(tmp_path / "pw")
    questions = json.loads((path / "questions.json").read_text())
    questions[1]["answer"] = ["the"]
    (path / "questions.json").write_text(json.dumps(questions))
    with pytest.raises(DataFileError, match=r"questions\.json: item 1 field 'answer'\[0\] is 'the'"):
        gym.make("Gather-PhantomWiki-v0", path=str(path))


# -- any JSON document: imported or refused in one line ---------------------------------------------

JSON_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
"""Any string, lone surrogates and every line break included."""
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=20,
)
NAMES = st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=12).filter(str.strip)
ROWS = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({"id": JSON_VALUES, "title": JSON_VALUES, "text": JSON_VALUES}),
    st.fixed_dictionaries({"id": NAMES, "title": JSON_TEXT, "text": JSON_TEXT}),
    st.fixed_dictionaries({"id": NAMES, "title": JSON_TEXT, "text": JSON_TEXT}),
)
TASK_ROWS = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {"id": JSON_TEXT, "question": JSON_TEXT},
        optional={"answer": JSON_VALUES, "answers": JSON_VALUES, "answer_set": st.lists(JSON_TEXT)},
    ),
    st.fixed_dictionaries({"id": NAMES, "question": NAMES, "answer": NAMES}),
    st.fixed_dictionaries(
        {"id": NAMES, "question": NAMES, "answer_set": st.lists(NAMES, min_size=1, max_size=3)}
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=ROWS, task=TASK_ROWS, ensure_ascii=st.booleans())
def test_any_json_document_imports_and_round_trips_or_is_refused_in_one_line(
    document: Any, task: Any, ensure_ascii: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        documents = root / "documents.jsonl"
        documents.write_bytes(
            json.dumps(document, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass") + b"\n"
        )
        tasks = root / "tasks.jsonl"
        tasks.write_bytes(
            json.dumps(task, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass") + b"\n"
        )
        out = root / "corpus"
        try:
            freeze_custom(documents, tasks, out)
        except GatherError as exc:
            assert "\n" not in str(exc) and str(root) in str(exc)
            assert not out.exists()
            return
        loaded = load_directory(out)
        assert loaded.documents[0].to_json() == {
            "doc_id": document["id"],
            "title": document["title"],
            "text": document["text"],
        }
        assert loaded.tasks("test")[0].question == task["question"]


def test_an_escaped_lone_surrogate_is_refused_in_one_line_and_a_pair_is_kept(tmp_path: Path) -> None:
    tasks = write_rows(tmp_path / "tasks.jsonl", [{"id": "q", "question": "Who?", "answer": "Bo"}])
    documents = tmp_path / "documents.jsonl"
    documents.write_text('{"id": "d", "title": "", "text": "pair \\ud83d\\ude00"}\n')
    assert read_custom(documents, tasks).documents[0].text == "pair 😀"
    documents.write_text('{"id": "d", "title": "", "text": "\\ud800 alone"}\n')
    with pytest.raises(DataFileError, match=r"documents\.jsonl:1: a string holds the lone surrogate \\ud800"):
        read_custom(documents, tasks)


# -- PhantomWiki gold paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "searches"), [("single-hop", ["Una Marsh"]), ("bridge", ["Pia Marsh", "Una Marsh"])]
)
def test_phantomwiki_gold_paths_follow_the_universe_so_the_oracle_searches(
    tmp_path: Path, family: str, searches: list[str]
) -> None:
    from test_custom_data import write_phantomwiki

    path = write_phantomwiki(tmp_path / "pw")
    records_file = tmp_path / "run.jsonl"
    argv = ["eval", "Gather-PhantomWiki-v0", "--agent", "oracle", "--out", str(records_file), "--n", "1"]
    kwargs = ["--kwarg", f"path={path}", "--kwarg", f"family={family}", "--quiet"]
    assert main([*argv, "--budgets", "0,2", *kwargs]) == 0
    by_budget = {r.budget: r for r in read_records(records_file)}
    assert list(by_budget[2].queries) == searches and by_budget[2].success
    assert by_budget[0].queries == () and not by_budget[0].success  # no search, no answer key
    assert list(by_budget[2].supporting_doc_ids or ()) == searches


def test_on_an_80_question_universe_the_oracle_searches_its_way_to_every_answer_and_the_heuristic_reads(
    tmp_path: Path,
) -> None:
    """Gold paths for all 80 questions (1-3 hops); the heuristic, which read nothing of PhantomWiki's
    markdown articles before (0.000), now answers some."""
    from _support.phantomwiki_universe import QUESTIONS, build_universe

    from gather_envs.corpus.phantomwiki import read_phantomwiki
    from gather_envs.evaluation import evaluate

    path = build_universe(tmp_path / "pw")
    tasks = read_phantomwiki(path).splits["test"]
    assert len(tasks) == QUESTIONS and all(len(t.gold_path) == t.hops for t in tasks)
    success: dict[tuple[str, str, int], float] = {}
    for agent in ("oracle", "heuristic"):
        for family in ("single-hop", "bridge"):
            kwargs = {"path": str(path), "family": family}
            records = evaluate(
                "Gather-PhantomWiki-v0", agent, n=1, budgets=(0, 3), seed=0, progress=False, env_kwargs=kwargs
            )
            for budget in (0, 3):
                wins = [r.success for r in records if r.budget == budget]
                success[agent, family, budget] = sum(wins) / len(wins)
    assert all(success["oracle", family, 3] == 1.0 for family in ("single-hop", "bridge"))
    assert all(
        success[agent, family, 0] == 0.0
        for agent in ("oracle", "heuristic")
        for family in ("single-hop", "bridge")
    )
    assert success["heuristic", "single-hop", 3] > 0.25 and success["heuristic", "bridge", 3] > 0.0
