"""Leaderboard kit: verify accepts the shipped baselines and refuses each kind of bad submission."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gather_envs.evaluation.seeds import episode_seed
from gather_envs.leaderboard.build import build_data, render_markdown, write_site
from gather_envs.leaderboard.schema import json_lines, load_schema, validate
from gather_envs.leaderboard.tracks import TRACKS
from gather_envs.leaderboard.verify import SUBMISSION_FILE, verify_submission

SUBMISSIONS = Path(__file__).resolve().parents[2] / "baselines" / "submissions"
SHIPPED = sorted(path for path in SUBMISSIONS.iterdir() if (path / SUBMISSION_FILE).is_file())
ENV = "Gather-MultiHop-v0"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("gather-envs")
    argv = [command, *args] if command else [sys.executable, "-m", "gather_envs.cli", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


@pytest.fixture
def submission(tmp_path: Path) -> Path:
    """A copy of the heuristic baseline's submission, reduced to one env."""
    out = tmp_path / "heuristic"
    source = SUBMISSIONS / "heuristic"
    (out / "records").mkdir(parents=True)
    (out / "results").mkdir()
    for part in ("records", "results"):
        suffix = "jsonl" if part == "records" else "json"
        shutil.copyfile(source / part / f"{ENV}.{suffix}", out / part / f"{ENV}.{suffix}")
    data = json.loads((source / SUBMISSION_FILE).read_text(encoding="utf-8"))
    data["envs"] = {ENV: data["envs"][ENV]}
    (out / SUBMISSION_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return out


def records_path(directory: Path) -> Path:
    return directory / "records" / f"{ENV}.jsonl"


def rewrite_records(directory: Path, edit) -> None:
    """Apply ``edit`` (list of record dicts -> list of record dicts) to the env's records file."""
    path = records_path(directory)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("".join(json.dumps(row) + "\n" for row in edit(rows)), encoding="utf-8")


def rules(directory: Path) -> list[str]:
    return sorted({problem.rule for problem in verify_submission(directory).problems})


@pytest.mark.parametrize("directory", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_baselines_verify(directory: Path) -> None:
    verification = verify_submission(directory)
    assert verification.ok, "\n".join(map(str, verification.problems))
    assert set(verification.envs) == {"Gather-SingleHop-v0", ENV, "Gather-Compare-v0", "Gather-Static-v0"}
    assert verification.submission["track"] == "quick"


def test_shipped_baselines_cover_the_three_scripted_agents() -> None:
    assert [path.name for path in SHIPPED] == ["heuristic", "oracle", "random"]


def test_valid_submission_exits_zero_and_says_valid(submission: Path) -> None:
    result = run("leaderboard", "verify", str(submission))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout and "quick track" in result.stdout


def test_edited_number_in_the_claimed_results_is_refused_at_its_line(submission: Path) -> None:
    path = submission / "results" / f"{ENV}.json"
    claim = json.loads(path.read_text(encoding="utf-8"))
    row = next(i for i, r in enumerate(claim["table"]) if r["T"] == 5 and r["k"] == 1)
    claim["table"][row]["pass"] = 0.5
    text = json.dumps(claim, indent=2)
    path.write_text(text, encoding="utf-8")
    problems = verify_submission(submission).problems
    assert [p.rule for p in problems] == ["claimed-number"]
    assert f"table[{row}].pass is 0.5 but the records give" in problems[0].message
    assert problems[0].line == json_lines(text)[("table", row, "pass")]
    assert problems[0].file == str(path)


def test_edited_success_is_refused_by_the_replay(submission: Path) -> None:
    """A flipped record is refused before any number is computed: the replay recomputes success."""

    def flip(rows: list[dict]) -> list[dict]:
        first = next(r for r in rows if r["budget"] == 5 and not r["success"])
        first["success"] = True
        return rows

    rewrite_records(submission, flip)
    assert rules(submission) == ["replay-success"]


def test_foreign_corpus_hash_is_refused(submission: Path) -> None:
    rewrite_records(submission, lambda rows: [{**r, "corpus_hash": "0" * 64} for r in rows])
    problems = verify_submission(submission).problems
    assert [p.rule for p in problems] == ["corpus-hash"]
    assert problems[0].line == 1 and f"(and {800 - 1} more lines)" in problems[0].message
    assert "is not the installed corpus" in problems[0].message


def test_missing_cell_is_refused_at_the_env_entry(submission: Path) -> None:
    rewrite_records(submission, lambda rows: rows[:-1])
    problems = verify_submission(submission).problems
    assert [p.rule for p in problems] == ["missing-cell"]
    assert "1 of 800 cells have no record" in problems[0].message
    assert problems[0].file.endswith(SUBMISSION_FILE)


def test_duplicate_cell_is_refused_naming_both_lines(submission: Path) -> None:
    rewrite_records(submission, lambda rows: [*rows, rows[3]])
    problems = verify_submission(submission).problems
    assert [p.rule for p in problems] == ["duplicate"]
    assert problems[0].line == 801 and f"{records_path(submission)}:4" in problems[0].message


def test_seeds_off_the_published_scheme_are_refused(submission: Path) -> None:
    """Episodes played with another base seed (or reseeded until lucky) do not carry the published seed."""

    def reseed(rows: list[dict]) -> list[dict]:
        return [{**r, "seed": episode_seed(7, r["task_id"], r["budget"], r["episode_index"])} for r in rows]

    rewrite_records(submission, reseed)
    problems = verify_submission(submission).problems
    assert [p.rule for p in problems] == ["seed"]
    assert "not the published episode seed" in problems[0].message


def test_schema_violation_is_refused_at_its_line(submission: Path) -> None:
    path = submission / SUBMISSION_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data["prompts_modified"] = "no"
    text = json.dumps(data, indent=2)
    path.write_text(text, encoding="utf-8")
    problems = verify_submission(submission).problems
    assert [p.rule for p in problems] == ["schema"]
    assert problems[0].line == json_lines(text)[("prompts_modified",)]
    assert "prompts_modified must be boolean" in problems[0].message


def test_main_track_needs_n_64(submission: Path) -> None:
    path = submission / SUBMISSION_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data["track"] = "main"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    # 8 episodes, and the 20-task sample is the first fifth of the main track's nested 100-task one.
    assert rules(submission) == ["missing-cell", "n"]


def test_infra_errors_over_the_limit_are_refused(submission: Path) -> None:
    def break_some(rows: list[dict]) -> list[dict]:
        for row in rows[:100]:  # each cut short before its first action, as its replay shows
            row.update(success=False, termination="infra_error", infra_error="BackendError: timeout")
            row.update(actions=[], tool_calls=0, invalid_actions=0, queries=[], retrieved_doc_ids=[])
            row.update(answer=None, reward=0.0)
        return rows

    rewrite_records(submission, break_some)
    (submission / "results" / f"{ENV}.json").unlink()
    data = json.loads((submission / SUBMISSION_FILE).read_text(encoding="utf-8"))
    del data["envs"][ENV]["results"]
    (submission / SUBMISSION_FILE).write_text(json.dumps(data), encoding="utf-8")
    assert rules(submission) == ["infra-errors"]


def test_changed_env_kwargs_are_refused(submission: Path) -> None:
    rewrite_records(
        submission, lambda rows: [{**r, "env_kwargs": {**r["env_kwargs"], "top_k": 9}} for r in rows]
    )
    assert rules(submission) == ["env-kwargs"]


def test_invalid_submission_exits_one_with_one_line_per_problem(submission: Path) -> None:
    rewrite_records(submission, lambda rows: [*rows[:-1], rows[0]])
    result = run("leaderboard", "verify", str(submission))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and {line.split(": ")[1] for line in lines} == {"duplicate", "missing-cell"}
    assert "INVALID (2 problems)" in result.stderr


def test_schema_validator_reports_every_violation() -> None:
    schema = load_schema("submission")
    found = list(validate({"schema_version": 2, "links": ["ftp://x"], "extra": 1}, schema))
    missing = [m for path, m in found if path == () and m.startswith("is missing required field")]
    assert len(missing) == len(schema["required"]) - 2  # all but schema_version and links
    assert any(path == ("schema_version",) and "must be one of [1]" in m for path, m in found)
    assert any(path == ("links", 0) and "must match" in m for path, m in found)
    assert any(path == ("extra",) and "is not a field" in m for path, m in found)


def test_build_ranks_by_recomputed_pass_at_1_and_flags_significance(tmp_path: Path) -> None:
    data = build_data([verify_submission(path) for path in SHIPPED])
    board = next(b for b in data["boards"] if b["env_id"] == ENV)
    assert board["order"] == ["oracle", "heuristic", "random"]
    passes = [next(r["pass"] for r in e["table"] if r["T"] == 5 and r["k"] == 1) for e in board["entries"]]
    assert passes == sorted(passes, reverse=True)
    assert board["entries"][0]["above_next"]["significant"] is True
    assert "above_next" not in board["entries"][-1]
    assert set(board["pairs"]) == {"oracle|heuristic", "oracle|random", "heuristic|random"}
    index = write_site(data, tmp_path / "site")
    assert sorted(p.name for p in index.parent.iterdir()) == [
        "app.js",
        "data.json",
        "index.html",
        "style.css",
    ]
    assert json.loads((tmp_path / "site" / "data.json").read_text(encoding="utf-8")) == data
    assert "__LEADERBOARD_DATA__" not in index.read_text(encoding="utf-8")
    assert all(tag not in index.read_text(encoding="utf-8") for tag in ("http://", "https://cdn"))
    markdown = render_markdown(data)
    assert f"### {ENV} (bridge), {TRACKS['quick'].label}" in markdown
    assert "| 1 | oracle | 1.000 [1.000, 1.000] |" in markdown


def test_build_refuses_an_invalid_submission(submission: Path, tmp_path: Path) -> None:
    rewrite_records(submission, lambda rows: rows[:-1])
    result = run("leaderboard", "build", str(submission), "--out", str(tmp_path / "site"))
    assert result.returncode == 2
    assert "missing-cell" in result.stderr and "refusing to build" in result.stderr
    assert not (tmp_path / "site").exists()


def test_a_path_that_is_not_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = run("leaderboard", "verify", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"gather-envs: error: {tmp_path / 'nope'} is not a directory; a submission is a directory "
        "holding submission.json and its records"
    ]


def test_markdown_goes_to_stdout() -> None:
    result = run("leaderboard", "build", str(SUBMISSIONS / "oracle"), "--format", "md")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("### Gather-Compare-v0 (comparison), quick track")
