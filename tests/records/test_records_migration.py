"""The v1 → v0 re-keying of shipped artefacts: ids, versions and file names change, nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gather_envs.records.migrate import OLD_TO_NEW, migrate, rekey_text
from gather_envs.runs import read_records

REPO = Path(__file__).resolve().parents[2]


def _old_run(root: Path) -> Path:
    """A submission-shaped folder as the v1 ids wrote it: records, results and the entry file."""
    shipped = REPO / "baselines" / "submissions" / "random" / "records" / "Gather-MultiHop-v0.jsonl"
    lines = shipped.read_text(encoding="utf-8").splitlines()[:5]
    old_lines = [line.replace("Gather-MultiHop-v0", "Gather-MultiHop-v1") for line in lines]
    (root / "records").mkdir(parents=True)
    (root / "records" / "Gather-MultiHop-v1.jsonl").write_text("\n".join(old_lines) + "\n", encoding="utf-8")
    (root / "results").mkdir()
    (root / "results" / "Gather-MultiHop-v1.json").write_text(
        json.dumps({"env_id": "Gather-MultiHop-v1", "env_version": 1, "n": 8}, indent=2), encoding="utf-8"
    )
    (root / "submission.json").write_text(
        json.dumps({"envs": {"Gather-MultiHop-v1": {"records": ["records/Gather-MultiHop-v1.jsonl"]}}}),
        encoding="utf-8",
    )
    return root


def test_every_old_id_maps_to_its_v0_twin() -> None:
    assert OLD_TO_NEW == {
        "Gather-Static-v1": "Gather-Static-v0",
        "Gather-SingleHop-v1": "Gather-SingleHop-v0",
        "Gather-Compare-v1": "Gather-Compare-v0",
        "Gather-MultiHop-v1": "Gather-MultiHop-v0",
        "Gather-v1": "Gather-v0",
    }


def test_other_ids_and_versions_are_left_alone() -> None:
    text = '{"env_id": "Gather-HotpotQA-v1", "env_version": 1, "x": "Gather-MultiHop-v10"}'
    assert rekey_text(text) == text


def test_migration_rekeys_records_results_entry_and_file_names(tmp_path: Path) -> None:
    root = _old_run(tmp_path / "entry")
    before = [line for line in (root / "records" / "Gather-MultiHop-v1.jsonl").read_text().splitlines()]

    migrate(root)

    records_file = root / "records" / "Gather-MultiHop-v0.jsonl"
    assert not (root / "records" / "Gather-MultiHop-v1.jsonl").exists()
    records = read_records(records_file)
    assert [r.env_id for r in records] == ["Gather-MultiHop-v0"] * 5
    after = records_file.read_text().splitlines()
    # Only the id changed: every other field of every line is identical.
    for old, new in zip(before, after, strict=True):
        old_row, new_row = json.loads(old), json.loads(new)
        assert old_row.pop("env_id") == "Gather-MultiHop-v1" and new_row.pop("env_id") == "Gather-MultiHop-v0"
        assert old_row == new_row
    results = json.loads((root / "results" / "Gather-MultiHop-v0.json").read_text())
    assert results == {"env_id": "Gather-MultiHop-v0", "env_version": 0, "n": 8}
    entry = json.loads((root / "submission.json").read_text())
    assert entry == {"envs": {"Gather-MultiHop-v0": {"records": ["records/Gather-MultiHop-v0.jsonl"]}}}


def test_migration_runs_twice_without_change(tmp_path: Path) -> None:
    root = _old_run(tmp_path / "entry")
    migrate(root)
    snapshot = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    migrate(root)
    assert {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} == snapshot


def test_command_line_refuses_a_missing_path(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gather_envs.records.migrate", str(tmp_path / "nope")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2 and "no such file or folder" in done.stderr


def test_no_shipped_artefact_keeps_an_old_id() -> None:
    for path in (REPO / "baselines").rglob("*"):
        assert rekey_text(path.name) == path.name, path
        if path.is_file() and path.suffix in (".json", ".jsonl", ".md"):
            assert rekey_text(path.read_text(encoding="utf-8")) == path.read_text(encoding="utf-8"), path
