"""The README runs as printed (its quick start and its commands) and its tables agree with the code."""

from __future__ import annotations

import contextlib
import inspect
import io
import re
from pathlib import Path

import gymnasium as gym
import pytest

import gather_envs
from gather_envs.cli import build_parser
from gather_envs.envs.gather_env import GatherEnv
from gather_envs.envs.registration import GENERIC_ENV_ID

README = Path(__file__).resolve().parent.parent / "README.md"


def _quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quick start") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README's Quick start has no python block"
    return match.group(1)


def test_the_quick_start_prints_what_its_comments_say() -> None:
    code = _quick_start()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    printed = out.getvalue().splitlines()
    promised = [m.group(1) for m in re.finditer(r"^print\(.*?\)\s+# (.*)$", code, flags=re.M)]
    assert len(promised) == 2 and len(printed) >= 2
    question = promised[0].strip('"').split(" ... ")[0]
    assert printed[0] == question
    assert printed[-1] == promised[1]


# -- the front door: small, every command run, tables that agree with the code ---------------------

ROOT = README.parent
DOCS = ROOT / "docs"
CI = ROOT / ".ci"
README_LIMIT_BYTES = 12 * 1024
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of the markdown table whose header line starts with ``header``."""
    lines = text[text.index(header) :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_readme_is_under_12_kb() -> None:
    assert len(README.read_bytes()) <= README_LIMIT_BYTES


def test_every_command_block_of_the_readme_is_run_by_ci() -> None:
    """The main job runs verbatim in .ci/package (read from the README); `bash .ci/run` is CI itself."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:bash|console|sh)\n(.*?)```", text, flags=re.S)
    two = re.findall(r"```bash\n(.*?)\n```", text[text.index("## Two commands") : text.index("## Quick start")], re.S)
    assert len(two) == 2 and two[1] == "bash .ci/run"
    main_job = [command.removeprefix(".venv/bin/") for command in two[0].split(" && ")]
    for block in blocks:
        for line in block.strip().splitlines():
            for command in line.split(" && "):
                assert command.removeprefix(".venv/bin/") in [*main_job, "bash .ci/run"], command
    package = (CI / "package").read_text(encoding="utf-8")
    assert "readme_commands.py main-job" in package and "bash .ci/package" in (CI / "run").read_text()


@pytest.mark.parametrize("page", [README, DOCS / "environments.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_ids_table_agrees_with_the_registered_envs(page: Path) -> None:
    rows = _table_rows(page.read_text(encoding="utf-8"), "| id | family | default T |")
    ids = [row[0].strip("`") for row in rows]
    assert ids == [*sorted(gather_envs.ENV_IDS, key=ids.index), GENERIC_ENV_ID]
    assert set(ids) == {*gather_envs.ENV_IDS, GENERIC_ENV_ID}
    for env_id, family, budget, tasks, _ in rows:
        if env_id.strip("`") == GENERIC_ENV_ID:
            continue
        env = gym.make(env_id.strip("`")).unwrapped
        assert (env.family, env.max_tool_calls) == (family, int(budget))
        test, train = (int(n) for n in tasks.split(" / "))
        assert (test, train) == (len(env.corpus.tasks("test", family)), len(env.corpus.tasks("train", family)))


def test_the_kwargs_table_covers_every_kwarg_of_the_env_with_its_default() -> None:
    rows = _table_rows((DOCS / "environments.md").read_text(encoding="utf-8"), "| kwarg | default |")
    table = {name.strip("`"): default.strip("`") for name, default, _ in rows}
    signature = {n: p for n, p in inspect.signature(GatherEnv.__init__).parameters.items() if n != "self"}
    assert sorted(table) == sorted(signature), "docs/environments.md's kwargs table and GatherEnv's kwargs differ"
    for name, parameter in signature.items():
        assert name in table, f"docs/environments.md has no row for the kwarg {name!r}"
        assert table[name].replace('"', "'") == repr(parameter.default), name


@pytest.mark.parametrize(
    "page", [README, *sorted(DOCS.glob("*.md")), ROOT / "benchmarks" / "README.md"], ids=lambda p: str(p.relative_to(ROOT))
)
def test_relative_links_point_to_files_that_exist(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_the_readme_names_only_commands_the_cli_has() -> None:
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    named = set(re.findall(r"`gather-envs ([a-z-]+)", README.read_text(encoding="utf-8")))
    assert named and named <= commands
