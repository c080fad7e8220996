"""The CLI end to end: eval -> report (every format, plots) -> compare, with agents of known odds.

The agents come in through ``--agent module:attr``. Their success probability per task and budget
is known (see ``test_runner.CoinAgent``), so the table is known twice over: exactly, by replaying the
seeded coins, and approximately, from the analytic 1 - (1 - p)^k.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import SMALL_WORLD
from test_runner import CoinAgent, coin, small_env

from gather_envs.cli import main
from gather_envs.evaluation import episode_seed, sample_tasks
from gather_envs.metrics import Results, pass_at_k
from gather_envs.runs import read_records

pytest.importorskip("matplotlib")

ENV_ID = "Gather-MultiHop-v0"
N = 16
TASKS = 8
BUDGETS = (0, 1, 3)
SEED = 3
KS = (1, 2, 4, 8, 16)
ANALYTIC_TOLERANCE = 0.15
"""|estimate - analytic| allowed: ~4 standard errors of a mean over 8 tasks x 16 episodes."""
STEADY_P = 0.3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class SteadyAgent(CoinAgent):
    """The same walk as CoinAgent, but every task is solved with one flat probability."""

    agent_id = "steady"

    def settings(self) -> dict[str, Any]:
        return {"p": STEADY_P}

    def probability(self, position: int, path_length: int, budget: int) -> float:
        return STEADY_P


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def eval_args(agent: str, out: Path, *extra: str) -> list[str]:
    return [
        "eval", ENV_ID, "--agent", agent, "--kwarg", "world=" + json.dumps(SMALL_WORLD),
        "--n", str(N), "--tasks", str(TASKS), "--budgets", ",".join(map(str, BUDGETS)),
        "--seed", str(SEED), "--backoff", "0", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Records of the coin and the steady agent on the same tasks."""
    folder = tmp_path_factory.mktemp("runs")
    paths = {"coin": folder / "coin.jsonl", "steady": folder / "steady.jsonl"}
    assert main(eval_args("test_runner:CoinAgent", paths["coin"], "--quiet", "--trajectories")) == 0
    assert main(eval_args("test_cli_eval:SteadyAgent", paths["steady"], "--quiet", "--concurrency", "3")) == 0
    return paths


def expected_table(agent: CoinAgent) -> dict[tuple[int, int], tuple[float, float]]:
    """(T, k) -> (PASS@k from the replayed coins, analytic PASS@k) over the sampled tasks."""
    task_ids = sample_tasks([t.task_id for t in agent.env.tasks], TASKS, SEED)
    table = {}
    for budget in BUDGETS:
        exact, analytic = {k: 0.0 for k in KS}, {k: 0.0 for k in KS}
        for task_id in task_ids:
            path = len(agent.env.corpus.task(task_id).gold_path)
            p = agent.probability(agent.position[task_id], path, budget)
            c = sum(coin(episode_seed(SEED, task_id, budget, i)) < p for i in range(N))
            for k in KS:
                exact[k] += float(pass_at_k(N, c, k)) / TASKS
                analytic[k] += (1.0 - (1.0 - p) ** k) / TASKS
        table.update({(budget, k): (exact[k], analytic[k]) for k in KS})
    return table


def assert_png(path: Path) -> None:
    from matplotlib import image

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    assert image.imread(path).shape[0] > 100


def test_eval_prints_a_summary_and_writes_the_grid(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    records = read_records(runs["coin"])
    assert len(records) == TASKS * len(BUDGETS) * N
    assert all(r.trajectory is not None for r in records)
    code, out, _ = cli(capsys, *eval_args("test_runner:CoinAgent", runs["coin"]))
    assert code == 0 and f"{TASKS * len(BUDGETS) * N} episodes" in out and "gather-envs report" in out
    assert len(read_records(runs["coin"])) == len(records)  # resumed: nothing was missing


@pytest.mark.parametrize("agent", [CoinAgent, SteadyAgent])
def test_report_json_matches_the_known_pass_at_k(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str], agent: type[CoinAgent]
) -> None:
    code, out, _ = cli(capsys, "report", str(runs[agent.agent_id]), "--format", "json", "--bootstrap", "200")
    assert code == 0
    data = json.loads(out)
    diversity = data.pop("diversity")
    assert set(data.pop("retrieval")) == {agent.agent_id}
    assert Results.from_json(data).to_json() == data  # the results JSON round-trips
    assert data["agent_id"] == agent.agent_id and data["n"] == N and data["num_tasks"] == TASKS
    assert data["budgets"] == list(BUDGETS) and data["ks"] == list(KS)
    assert set(data["boundary"]) == {str(t) for t in BUDGETS}
    assert diversity[agent.agent_id]["per_budget"][0]["T"] == 0
    expected = expected_table(agent(small_env()))
    assert len(data["table"]) == len(expected)
    for row in data["table"]:
        assert set(row) == {"T", "k", "pass", "ci_low", "ci_high"}
        exact, analytic = expected[(row["T"], row["k"])]
        assert row["pass"] == pytest.approx(exact, abs=1e-12)
        assert abs(row["pass"] - analytic) <= ANALYTIC_TOLERANCE
        assert row["ci_low"] <= row["pass"] <= row["ci_high"]


def test_report_renders_every_format(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, table, _ = cli(capsys, "report", str(runs["coin"]), "--bootstrap", "100")
    assert code == 0 and "PASS@(k,T)" in table and "T*" in table and "Strategy diversity" in table
    code, markdown, _ = cli(capsys, "report", str(runs["coin"]), "--format", "md", "--bootstrap", "100")
    assert code == 0 and "| T " in markdown and "# Strategy diversity" in markdown
    code, text, _ = cli(capsys, "report", str(runs["coin"]), "--format", "csv", "--bootstrap", "100")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert code == 0 and len(rows) == len(BUDGETS) * len(KS)
    assert {(int(r["T"]), int(r["k"])) for r in rows} == {(t, k) for t in BUDGETS for k in KS}


def test_report_of_a_run_split_over_files_equals_the_whole(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = runs["coin"].read_bytes().splitlines(keepends=True)
    (tmp_path / "a.jsonl").write_bytes(b"".join(lines[::2]))
    (tmp_path / "b.jsonl").write_bytes(b"".join(lines[1::2]))
    whole = cli(capsys, "report", str(runs["coin"]), "--format", "json", "--bootstrap", "50")[1]
    parts = cli(capsys, "report", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--format", "json",
                "--bootstrap", "50")[1]  # fmt: skip
    assert json.loads(parts)["table"] == json.loads(whole)["table"]


def test_report_writes_valid_png_plots(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "report", str(runs["coin"]), "--bootstrap", "50", "--plot", str(tmp_path))
    assert code == 0
    written = sorted(tmp_path.glob("*.png"))
    assert {p.name for p in written} >= {"passk_curves.png", "passk_heatmap.png"}
    for path in written:
        assert str(path) in err
        assert_png(path)


def test_compare_shows_differences_crossing_boundaries_and_diversity(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("compare", str(runs["coin"]), str(runs["steady"]), "--bootstrap", "200")
    code, out, _ = cli(capsys, *args, "--format", "json", "--plot", str(tmp_path))
    assert code == 0
    data = json.loads(out)
    assert (data["agent_a"], data["agent_b"]) == ("coin", "steady")
    assert set(data["diversity"]) == {"coin", "steady"}
    coin_table, steady_table = (
        expected_table(CoinAgent(small_env())),
        expected_table(SteadyAgent(small_env())),
    )
    full = next(entry for entry in data["per_budget"] if entry["T"] == max(BUDGETS))
    diff = dict(zip(full["ks"], full["diff"], strict=True))
    for k, value in diff.items():
        assert value == pytest.approx(coin_table[(max(BUDGETS), k)][0] - steady_table[(max(BUDGETS), k)][0])
    # Coin is sure of some tasks and hopeless on others; steady is lukewarm everywhere: they cross.
    assert diff[1] > 0 > diff[N] and full["k_star"] is not None
    assert_png(tmp_path / "compare_curves.png")
    code, table, _ = cli(capsys, *args)
    assert code == 0 and "McNemar" in table and "Strategy diversity" in table
    code, text, _ = cli(capsys, *args, "--format", "csv")
    assert code == 0 and len(list(csv.DictReader(io.StringIO(text)))) == len(BUDGETS) * len(KS)


def test_compare_refuses_other_tasks_unless_asked(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fewer = tmp_path / "fewer.jsonl"
    args = eval_args("test_cli_eval:SteadyAgent", fewer, "--quiet")
    args[args.index("--tasks") + 1] = "5"
    args[args.index("--n") + 1] = "4"
    assert main(args) == 0
    code, _, err = cli(capsys, "compare", str(runs["coin"]), str(fewer), "--bootstrap", "20")
    assert code == 2 and "different tasks" in err and err.count("\n") == 1
    code, out, _ = cli(
        capsys, "compare", str(runs["coin"]), str(fewer), "--bootstrap", "20", "--common-tasks"
    )
    assert code == 0 and "restricted to shared tasks" in out


def test_compare_refuses_runs_on_different_corpora(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.jsonl"
    args = eval_args("test_runner:CoinAgent", other, "--quiet")
    args[args.index("--kwarg") + 1] = "world=" + json.dumps({**SMALL_WORLD, "seed": 8})
    args[args.index("--n") + 1] = "2"
    assert main(args) == 0
    code, _, err = cli(capsys, "compare", str(runs["coin"]), str(other), "--common-tasks")
    assert code == 2 and "different corpora" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budgets", "0,x"], "bad --budgets"),
        (["--agent", "no_such_agent"], "unknown agent"),
        (["--agent-option", "novalue"], "bad --agent-option"),
    ],
)
def test_eval_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    args = eval_args("test_runner:CoinAgent", tmp_path / "x.jsonl", "--quiet")
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    code, _, err = cli(capsys, *args)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_report_of_a_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "report", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "cannot read records file" in err and err.count("\n") == 1


def test_eval_makes_the_folders_of_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs" / "new" / "coin.jsonl"  # as the README's main job does with runs/
    code, _, err = cli(capsys, *eval_args("test_runner:CoinAgent", out))
    assert code == 0, err
    assert len(read_records(out)) == TASKS * len(BUDGETS) * N


def test_eval_plays_exactly_the_listed_task_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chosen = sample_tasks([t.task_id for t in small_env().tasks], 3, 99)
    listed = tmp_path / "ids.txt"
    listed.write_text("\n".join(chosen) + "\n\n")
    out = tmp_path / "listed.jsonl"
    args = eval_args("test_runner:CoinAgent", out, "--quiet")
    at = args.index("--tasks")
    args[at : at + 2] = ["--task-ids", str(listed)]
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    records = read_records(out)
    assert {r.task_id for r in records} == set(chosen) and len(records) == 3 * len(BUDGETS) * N


@pytest.mark.parametrize("content", ["", "no-such-task\n"])
def test_eval_refuses_an_empty_or_unknown_task_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    listed = tmp_path / "ids.txt"
    listed.write_text(content)
    args = eval_args("test_runner:CoinAgent", tmp_path / "x.jsonl", "--quiet")
    at = args.index("--tasks")
    args[at : at + 2] = ["--task-ids", str(listed)]
    code, _, err = cli(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and ("no task ids" in err or "no-such-task" in err)
    assert not (tmp_path / "x.jsonl").exists()
