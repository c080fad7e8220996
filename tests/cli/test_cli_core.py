"""The gather-envs command: list, show, play and generate, run as a real subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gather_envs
from gather_envs.corpus.frozen import load_directory


def run(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = shutil.which("gather-envs")
    argv = [command, *args] if command else [sys.executable, "-m", "gather_envs.cli", *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=cwd, timeout=300)


def test_list_shows_every_synthetic_id_with_sizes_and_budget() -> None:
    result = run("list")
    assert result.returncode == 0, result.stderr
    for env_id in gather_envs.ENV_IDS:
        assert env_id in result.stdout
    assert "test=500, train=1000" in result.stdout and "test=1000, train=2000" in result.stdout
    for env_id in gather_envs.DATASET_IDS:
        assert env_id in result.stdout
    assert "path=.../hotpot_dev_distractor_v1.json" in result.stdout


def test_show_prints_the_gold_path_and_json() -> None:
    result = run("show", "Gather-MultiHop-v0", "--task", "bridge-00001")
    assert result.returncode == 0, result.stderr
    assert "hop 1: search[" in result.stdout and "hop 2: search[" in result.stdout
    record = json.loads(run("show", "Gather-MultiHop-v0", "--task", "bridge-00001", "--json").stdout)
    assert record["task_id"] == "bridge-00001" and len(record["gold_path"]) == record["hops"]


def test_play_reads_actions_from_the_terminal() -> None:
    task = json.loads(run("show", "Gather-MultiHop-v0", "--task", "bridge-00001", "--json").stdout)
    moves = [f"search[{step['query']}]" for step in task["gold_path"]] + [f"answer[{task['answer']}]"]
    result = run("play", "Gather-MultiHop-v0", "--task", "bridge-00001", stdin="\n".join(moves) + "\n")
    assert result.returncode == 0, result.stderr
    assert " ".join(task["question"].split()) in " ".join(result.stdout.split())  # play word-wraps
    assert "reward=1.0" in result.stdout and f"tool_calls={task['hops']}" in result.stdout


def test_play_with_closed_input_exits_cleanly() -> None:
    result = run("play", "Gather-MultiHop-v0", "--seed", "0", stdin="search[x]\n")
    assert result.returncode == 1 and "input ended" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("show", "Gather-Nope-v0"),
        ("show", "Gather-MultiHop-v0", "--task", "no-such-task"),
        ("play", "Gather-MultiHop-v0", "--kwarg", "top_k=0"),
        ("generate", "--out", "x", "--knob", "num_entities=3"),
        ("generate", "--out", "x", "--knob", "colour=blue"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(args: tuple[str, ...], tmp_path: Path) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("gather-envs: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_generate_writes_a_loadable_frozen_corpus(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    knobs = [
        "--knob",
        "seed=3",
        "--knob",
        "num_entities=300",
        "--knob",
        "tasks_per_family=5",
        "--knob",
        "train_tasks_per_family=5",
    ]
    result = run("generate", "--out", str(out), "--name", "tiny", *knobs)
    assert result.returncode == 0, result.stderr
    corpus = load_directory(out)
    assert (
        corpus.name == "tiny" and len(corpus.documents_of("test")) == len(corpus.documents_of("train")) == 300
    )
    assert len(corpus.documents) == 600  # the test world, then the disjoint train world
    assert {t.family for t in corpus.splits["test"]} == {"single-hop", "bridge", "comparison"}
    assert corpus.content_hash in result.stdout
