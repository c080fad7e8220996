"""``--help`` reads well and the docs a pip user needs come with the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from gather_envs.agents import agent_names
from gather_envs.cli import build_parser, doc_topics, main
from gather_envs.evaluation.plan import DEFAULT_N
from gather_envs.evaluation.runner import DEFAULT_BACKOFF_S, DEFAULT_RETRIES

SOURCE_DOCS = Path(__file__).resolve().parents[2] / "docs"
SOURCE_BENCHMARKS = SOURCE_DOCS.parent / "benchmarks" / "README.md"
COMMANDS = ("list", "docs", "show", "play", "generate", "eval", "report", "compare", "sample")


def help_text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_has_no_markup(capsys: pytest.CaptureFixture[str], command: str) -> None:
    text = help_text(capsys, *([command] if command else []))
    assert "``" not in text and ":func:" not in text and ":class:" not in text


def test_eval_help_shows_defaults_agents_and_their_options(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(help_text(capsys, "eval").split())
    assert f"episodes per task and budget (default {DEFAULT_N})" in text
    assert "(default 0,1,2,3,5)" in text
    assert "episodes played at once, in threads (default 1)" in text
    assert f"(default {DEFAULT_RETRIES})" in text and f"(default {DEFAULT_BACKOFF_S})" in text
    assert all(name in text for name in agent_names())
    assert "explore_probability (float in [0, 1], default 0.2)" in text
    assert "top_k (int >= 1, default 3)" in text


def test_show_index_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(help_text(capsys, "show").split())
    assert "--index INDEX position of the task in the env's split, from 0 (default 0)" in text


def test_every_command_is_in_the_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys)
    assert all(f"    {command} " in text for command in COMMANDS)
    assert build_parser().prog == "gather-envs"


def test_docs_lists_and_prints_the_shipped_pages(capsys: pytest.CaptureFixture[str]) -> None:
    sources = {p.stem: p for p in SOURCE_DOCS.glob("*.md")} | {"benchmarks": SOURCE_BENCHMARKS}
    assert doc_topics() == sorted(sources)
    assert main(["docs"]) == 0
    listing = capsys.readouterr().out
    assert all(topic in listing for topic in doc_topics())
    for topic in doc_topics():
        assert main(["docs", topic]) == 0
        assert capsys.readouterr().out == sources[topic].read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "topic", ["environments", "worlds", "retrieval-and-serving", "testing", "troubleshooting", "benchmarks"]
)
def test_docs_has_the_pages_that_left_the_readme(capsys: pytest.CaptureFixture[str], topic: str) -> None:
    assert topic in doc_topics()
    assert main(["docs"]) == 0
    assert any(line.split()[0] == topic for line in capsys.readouterr().out.splitlines() if line.strip())


def test_list_points_to_docs_a_pip_user_has(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "gather-envs docs datasets" in out and "docs/datasets.md" not in out
