"""The contrast's endpoint tests (recipes/contrast.py) and the pilot's gate (recipes/pilot.py), on written records."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from gather_envs.records import EpisodeRecord

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
TASKS = 24
N = 16


def load(name: str) -> ModuleType:
    if str(RECIPES) not in sys.path:
        sys.path.insert(0, str(RECIPES))  # pilot.py imports the recipe next to it
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


contrast = load("contrast")


def write(path: Path, successes: list[int], budget: int = 3, n: int = N) -> Path:
    """A records file: task i solved in ``successes[i]`` of its ``n`` episodes at ``budget``."""
    with path.open("w") as handle:
        for task, solved in enumerate(successes):
            for index in range(n):
                record = EpisodeRecord(
                    env_id="Gather-MultiHop-v0", corpus_hash="c" * 16, task_id=f"t{task:03d}",
                    budget=budget, episode_index=index, seed=index, success=index < solved, agent_id=path.stem,
                )  # fmt: skip
                handle.write(json.dumps(record.to_json()) + "\n")
    return path


def test_the_one_sided_sign_test_is_the_binomial_upper_tail() -> None:
    assert contrast.sign_test_p(3, 1) == pytest.approx(5 / 16)
    assert contrast.sign_test_p(7, 0) == pytest.approx(1 / 128)
    assert contrast.sign_test_p(0, 4) == 1.0 and contrast.sign_test_p(0, 0) == 1.0


def test_a_grpo_that_solves_more_everywhere_shows_e1_and_a_narrower_sft_shows_e4(tmp_path: Path) -> None:
    write(tmp_path / "w.jsonl", [1] * 12 + [0] * 12)  # W reaches half the tasks, rarely
    write(tmp_path / "g.jsonl", [3] * 20 + [0] * 4)  # GRPO reaches 20 of 24
    write(tmp_path / "s.jsonl", [2] * 3 + [0] * 21)  # SFT keeps 3 of W's 12
    write(tmp_path / "w-static.jsonl", [4] * TASKS, budget=0)
    write(tmp_path / "g-static.jsonl", [4] * TASKS, budget=0)
    found = {e.name: e for e in contrast.endpoints(tmp_path, "w", "g", "s")}
    assert found["E1"].p == pytest.approx(2**-8, abs=0.002) and found["E1"].verdict == "shown"  # 8 tasks +1
    assert found["E4"].p == pytest.approx(1 / 2**9) and found["E4"].verdict == "shown"  # only W: 9, only SFT: 0
    assert found["E3"].verdict == "shown (equivalent)"  # identical static arms: the interval is [0, 0]
    ps = [found[name].p for name in contrast.FAMILY]
    assert [found[name].adjusted for name in contrast.FAMILY] == pytest.approx(list(contrast.holm(ps)))


def test_identical_runs_show_nothing_and_a_static_shift_breaks_equivalence(tmp_path: Path) -> None:
    write(tmp_path / "w.jsonl", [2] * TASKS)
    write(tmp_path / "g.jsonl", [2] * TASKS)
    write(tmp_path / "w-static.jsonl", [0] * TASKS, budget=0)
    write(tmp_path / "g-static.jsonl", [8] * TASKS, budget=0)  # +1.0 at k = 16 on every task
    found = {e.name: e for e in contrast.endpoints(tmp_path, "w", "g", "w")}
    assert found["E1"].p == 1.0 and found["E1"].verdict == "not shown"
    assert found["E3"].verdict.startswith("not shown")
    assert found["E4"].estimate.startswith("|B| 24 vs 24") and found["E4"].p == 1.0


def test_a_missing_arm_is_not_measured_and_the_others_carry_the_bonferroni_bound(tmp_path: Path) -> None:
    write(tmp_path / "w.jsonl", [1] * 12 + [0] * 12)
    write(tmp_path / "s.jsonl", [0] * TASKS)
    found = {e.name: e for e in contrast.endpoints(tmp_path, "w", "g", "s")}
    assert found["E1"].verdict == "not measured: no g.jsonl" and found["E1"].p is None
    assert found["E3"].verdict.startswith("not measured")
    assert found["E4"].adjusted == pytest.approx(min(1.0, 3 * found["E4"].p))
    assert found["E4"].verdict == "shown (on the bound 3p: the family is incomplete)"  # 3 / 4096 < 0.05
    assert "\\|B\\|" in contrast.table(list(found.values()))  # a cell's bars cannot break the table


def test_tasks_with_fewer_than_16_episodes_are_left_out(tmp_path: Path) -> None:
    write(tmp_path / "w.jsonl", [1] * TASKS, n=8)
    assert contrast.per_task(tmp_path / "w.jsonl", 3) == {}


def test_the_pilot_gate_names_what_fails_and_marks_a_small_reading() -> None:
    pilot = load("pilot")
    full = {"tasks@3": 60, "signal_tasks": 60}
    assert pilot.gate({**full, "pass@(16,3)": 0.5, "pass@(1,3)": 0.1, "signal": 0.5}) == "pass"
    assert pilot.gate({**full, "pass@(16,3)": 0.1, "pass@(1,3)": 0.6, "signal": 0.5}) == "fails PASS@(16,3), PASS@(1,3)"
    assert pilot.gate({**full, "pass@(16,3)": 0.5, "pass@(1,3)": 0.1}) == "not measured: signal"
    small = pilot.gate({"tasks@3": 20, "signal_tasks": 20, "pass@(16,3)": 0.5, "pass@(1,3)": 0.1, "signal": 0.5})
    assert small == "pass (preliminary: T = 3 on 20 of 60, signal on 20 of 60 tasks)"
