"""Every command, driven with bad values as a user would type them: one line on stderr, exit 2.

Each case runs the real ``gather-envs`` entry point in a subprocess, so nothing (argparse's usage
block, a warning's source line, a traceback) can reach the terminal unseen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL_WORLD

import gather_envs
from gather_envs.cli import main

EXIT_ERROR = 2
PACKAGE_ROOT = Path(gather_envs.__file__).resolve().parent.parent  # the checkout, or the installed wheel
ENV = "Gather-MultiHop-v0"
WORLD = "world=" + json.dumps(SMALL_WORLD)
EVAL = ["eval", ENV, "--agent", "heuristic", "--kwarg", WORLD, "--tasks", "2", "--n", "1"]
REACT = ["eval", ENV, "--agent", "react", "--out", "{tmp}/x.jsonl"]

CASES = [
    # (argv, text the one line must contain); "{tmp}" is a fresh folder
    ([], "required: COMMAND"),
    (["nope"], "invalid choice: 'nope'"),
    (["list", "--bogus"], "unrecognized arguments: --bogus"),
    (["docs", "nope"], "choose from 'agents'"),
    (["show", "Gather-Multihop-v0"], "did you mean Gather-MultiHop-v0?"),
    (["show", ENV, "--index", "9999"], "bad --index 9999"),
    (["show", ENV, "--index", "-1"], "argument --index: expected an int >= 0"),
    (["show", ENV, "--index", "abc"], "argument --index: expected an int >= 0, got 'abc'"),
    (["show", ENV, "--task", "no-such-task"], "no task 'no-such-task'"),
    (["show", ENV, "--kwarg", "top_kk=3"], "bad --kwarg top_kk=...: Gather-MultiHop-v0 has no kwarg 'top_kk'"),
    (["show", ENV, "--kwarg", "top_k=abc"], "bad --kwarg top_k=abc: expected an int >= 1"),
    (["show", ENV, "--kwarg", "top_k=0"], "bad --kwarg top_k=0: expected an int >= 1"),
    (["show", ENV, "--kwarg", "dialect=klingon"], "expected one of react, tags, json"),
    (["show", ENV, "--kwarg", "show_budget=maybe"], "expected true or false"),
    (["show", ENV, "--kwarg", "novalue"], "bad --kwarg 'novalue': expected KEY=VALUE"),
    (["show", ENV, "--kwarg", "split=nosplit"], "no split 'nosplit'"),
    (["show", ENV, "--kwarg", 'world={"num_entities": "abc"}'], "bad --kwarg world=...: num_entities=abc: expected an int"),
    (["show", ENV, "--kwarg", 'world={"num_entitys": 400}'], "bad --kwarg world=...: unknown world knob(s) ['num_entitys']"),
    (["show", ENV, "--kwarg", 'world={"num_entities": 3}'], "num_entities must be at least"),
    (["show", "Gather-HotpotQA-v0"], "needs path="),
    (["show", "Gather-HotpotQA-v0", "--kwarg", "scope=everything"], "expected one of distractor, world"),
    (["play", ENV, "--seed", "-1"], "argument --seed: expected an int >= 0"),
    (["play", ENV, "--kwarg", "max_tool_calls=1000"], "bad --kwarg max_tool_calls=1000: expected an int in [0, 100]"),
    (["play", ENV, "--task", "nope"], "no task 'nope'"),
    (["generate", "--out", "{tmp}/g", "--knob", "num_entities=abc"], "bad --knob num_entities=abc: expected an int"),
    (["generate", "--out", "{tmp}/g", "--knob", "nm_entities=5"], "did you mean num_entities?"),
    (["generate", "--out", "{tmp}/g", "--from-manifest", "{tmp}/none"], "missing manifest"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--agent-option", "explore_probability=abc"], "bad --agent-option explore_probability=abc: expected a float in [0, 1]"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--agent-option", "explore_probability=5"], "bad --agent-option explore_probability=5: expected a float in [0, 1]"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--agent-option", "explore=0.1"], "has no option 'explore' (did you mean explore_probability?)"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--kwarg", "top_kk=3"], "did you mean top_k?"),
    ([*EVAL, "--out", "/proc/x.jsonl"], "bad --out /proc/x.jsonl: cannot write there"),
    ([*EVAL, "--out", "{tmp}"], "it is a folder"),
    ([*EVAL, "--out", "/proc/no/such/x.jsonl"], "cannot create folder /proc/no/such"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--budgets", "100000"], "each T must be in [0, 100], got 100000"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--budgets", "1,1"], "a budget is given twice"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--budgets", "1,x"], "expected comma-separated ints"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--n", "0"], "argument --n: expected an int >= 1, got 0"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--concurrency", "0"], "argument --concurrency: expected an int >= 1"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--retries", "-1"], "argument --retries: expected an int >= 0"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--backoff", "-1"], "argument --backoff: expected a number >= 0"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--backoff", "nan"], "argument --backoff: expected a number >= 0"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--agent", "heuristc"], "unknown agent; choose one of act, direct, heuristic"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--agent", "no_such_module:Agent"], "cannot import module 'no_such_module'"),
    ([*EVAL, "--out", "{tmp}/x.jsonl", "--kwarg", "family=static", "--kwarg", "max_tool_calls=3"], "use gym.make('Gather-Static-v0')"),
    ([*REACT, "--agent-option", "top_p=0"], "bad --agent-option top_p=0: expected a float in (0, 1]"),
    ([*REACT, "--agent-option", "temperature=-1"], "expected a float >= 0"),
    ([*REACT, "--agent-option", "backend=gpu"], "expected one of http, embedded"),
    ([*REACT, "--agent-option", "max_connections=0"], "bad --agent-option max_connections=0: expected an int >= 1"),
    ([*REACT, "--agent-option", "apikey=sk-secret123456"], "agent 'react' has no option 'apikey' (did you mean api_key?)"),
    (["eval", ENV, "--out", "{tmp}/x.jsonl"], "required: --agent"),
    (["report", "{tmp}/none.jsonl"], "cannot read records file"),
    (["report", "{tmp}/none.jsonl", "--bootstrap", "-1"], "argument --bootstrap: expected an int >= 0"),
    (["report", "{tmp}/none.jsonl", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["compare", "{tmp}/a.jsonl"], "required: B.jsonl"),
    (["compare", "{tmp}/a.jsonl", "{tmp}/b.jsonl", "--seed", "x"], "argument --seed"),
    (["sample", "--format", "hotpotqa", "--in", "{tmp}/none.json", "--out", "{tmp}/s.json", "--total", "3"], "no such file"),
    (["sample", "--format", "nope", "--in", "a", "--out", "b", "--total", "3"], "argument --format"),
]  # fmt: skip


def gather_envs(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command line, in a fresh interpreter, with the checkout on the path."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT), "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-m", "gather_envs.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    lines = result.stderr.splitlines()
    assert "secret123456" not in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == EXIT_ERROR, result.stderr
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert lines[0].startswith("gather-envs")


@pytest.mark.parametrize(("argv", "expected"), CASES, ids=[" ".join(c[0])[-60:] or "(none)" for c in CASES])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, argv: list[str], expected: str) -> None:
    result = gather_envs(*(arg.replace("{tmp}", str(tmp_path)) for arg in argv), cwd=tmp_path)
    assert_one_line_error(result, expected)
    assert not (tmp_path / "x.jsonl").exists()  # a refused run leaves no file behind


def test_compare_of_runs_on_different_budgets_names_the_cli_flag(tmp_path: Path) -> None:
    base = ["eval", ENV, "--agent", "random", "--kwarg", WORLD, "--tasks", "2", "--n", "1", "--quiet"]
    assert main([*base, "--budgets", "1", "--out", str(tmp_path / "a.jsonl")]) == 0
    assert main([*base, "--budgets", "2", "--out", str(tmp_path / "b.jsonl")]) == 0
    result = gather_envs("compare", "a.jsonl", "b.jsonl", cwd=tmp_path)
    assert_one_line_error(result, "pass --common-tasks")
    assert "restrict_to_common" not in result.stderr


def test_a_fully_resumed_run_says_nothing_was_played(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*EVAL, "--budgets", "1,2", "--quiet", "--out", str(tmp_path / "run.jsonl")]
    assert main(argv) == 0
    assert "(4 played now, 0 resumed from the file" in capsys.readouterr().out
    assert main(argv) == 0  # the same command again: everything is on disk
    assert "(0 played now, 4 resumed from the file" in capsys.readouterr().out
