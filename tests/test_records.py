"""Episode records: the JSON schema, crash-safe appends from several processes, tolerant reads."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from gather_envs.errors import RecordsError
from gather_envs.records import (
    RECORD_SCHEMA_VERSION,
    EpisodeRecord,
    RecordWriter,
    append_records,
    read_records,
)

WRITERS = 4
RECORDS_PER_WRITER = 200


def record(task: str = "t1", index: int = 0, **overrides: object) -> EpisodeRecord:
    fields: dict[str, object] = {
        "env_id": "Gather-MultiHop-v1",
        "env_kwargs": {"family": "bridge", "max_tool_calls": 3},
        "corpus_hash": "sha256:abc",
        "task_id": task,
        "family": "bridge",
        "hops": 2,
        "seed": 17,
        "budget": 3,
        "episode_index": index,
        "tool_calls": 2,
        "invalid_actions": 0,
        "success": True,
        "reward": 1.0,
        "answer": "Paris",
        "gold_answer": "Paris",
        "termination": "answered",
        "wall_time": 0.25,
        "agent_id": "oracle",
        "queries": ("capital of France", "Paris"),
        "trajectory": ({"action": "search[capital of France]", "observation": "..."},),
        "extra": {"agent_settings": {"temperature": 0.7}, "tokens": 120},
    }
    fields.update(overrides)
    return EpisodeRecord(**fields)  # type: ignore[arg-type]


def test_record_json_round_trips() -> None:
    original = record()
    line = original.to_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert EpisodeRecord.from_json(json.loads(line)) == original
    assert original.to_json()["schema_version"] == RECORD_SCHEMA_VERSION


def test_record_lists_are_stored_as_tuples() -> None:
    rec = record(queries=["a", "b"], trajectory=[{"action": "x", "observation": "y"}])
    assert rec.queries == ("a", "b") and isinstance(rec.trajectory, tuple)


def test_from_json_fills_missing_optional_fields() -> None:
    minimal = {
        "schema_version": 1,
        "env_id": "Gather-MultiHop-v1",
        "corpus_hash": "h",
        "task_id": "t",
        "budget": 2,
        "success": False,
    }
    rec = EpisodeRecord.from_json(minimal)
    assert rec.queries == () and rec.trajectory is None and rec.episode_index == -1
    assert rec.infra_error is None and not rec.is_infra_error


@pytest.mark.parametrize("name", ["schema_version", "env_id", "corpus_hash", "task_id", "budget", "success"])
def test_from_json_names_a_missing_required_field(name: str) -> None:
    data = record().to_json()
    del data[name]
    with pytest.raises(RecordsError, match=name):
        EpisodeRecord.from_json(data)


def test_from_json_names_a_field_of_the_wrong_type() -> None:
    data = record().to_json()
    data["budget"] = "three"
    with pytest.raises(RecordsError, match="'budget' must be int"):
        EpisodeRecord.from_json(data)
    data = record().to_json()
    data["success"] = 1
    with pytest.raises(RecordsError, match="'success' must be bool"):
        EpisodeRecord.from_json(data)


def test_from_json_refuses_a_newer_schema() -> None:
    data = record().to_json()
    data["schema_version"] = RECORD_SCHEMA_VERSION + 1
    with pytest.raises(RecordsError, match="upgrade"):
        EpisodeRecord.from_json(data)


def test_infra_errors_are_flagged() -> None:
    assert record(infra_error="connection refused", success=False).is_infra_error
    assert record(termination="infra_error", success=False).is_infra_error
    assert not record().is_infra_error


def test_append_then_read_returns_the_records_in_order(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    first = [record(index=i) for i in range(3)]
    assert append_records(path, first) == 3
    with RecordWriter(path) as writer:
        writer.write(record(index=3))
        writer.write_many([record(index=4)])
    assert read_records(path) == [*first, record(index=3), record(index=4)]
    assert read_records([path, path]) == 2 * read_records(path)


def test_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    append_records(path, [record(index=0), record(index=1)])
    with path.open("ab") as f:
        f.write(record(index=2).to_line()[:40])  # a writer killed mid-record
    with pytest.warns(UserWarning, match=r"run\.jsonl:3: skipping a torn last line"):
        records = read_records(path)
    assert [r.episode_index for r in records] == [0, 1]


def test_next_append_cuts_off_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    append_records(path, [record(index=0)])
    with path.open("ab") as f:
        f.write(b'{"schema_version": 1, "env_')
    with pytest.warns(UserWarning, match="dropping a torn last line"):
        append_records(path, [record(index=1)])
    assert [r.episode_index for r in read_records(path)] == [0, 1]


def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(record(index=0).to_line().rstrip(b"\n"))
    assert len(read_records(path)) == 1
    append_records(path, [record(index=1)])
    assert [r.episode_index for r in read_records(path)] == [0, 1]


def test_corrupt_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    lines = [record(index=i).to_line() for i in range(3)]
    path.write_bytes(lines[0] + b"{not json\n" + lines[1] + lines[2])
    with pytest.raises(RecordsError, match=r"run\.jsonl:2: corrupt line"):
        read_records(path)


def test_schema_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    bad = record().to_json()
    del bad["task_id"]
    path.write_bytes(record().to_line() + (json.dumps(bad) + "\n").encode())
    with pytest.raises(RecordsError, match=r"run\.jsonl:2: .*'task_id'"):
        read_records(path)


def test_missing_file_is_a_records_error(tmp_path: Path) -> None:
    with pytest.raises(RecordsError, match="cannot read"):
        read_records(tmp_path / "absent.jsonl")


def _append_many(path: str, writer: int) -> None:
    for i in range(RECORDS_PER_WRITER):
        # A long answer makes each line several kilobytes, so interleaving would show.
        rec = record(task=f"w{writer}", index=i, answer="x" * (1000 + 37 * i))
        append_records(path, [rec], fsync=False)


def test_concurrent_appends_from_several_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context: Any = multiprocessing.get_context(method)
    procs = [context.Process(target=_append_many, args=(str(path), w)) for w in range(WRITERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    records = read_records(path)
    assert len(records) == WRITERS * RECORDS_PER_WRITER
    seen = {(r.task_id, r.episode_index) for r in records}
    assert seen == {(f"w{w}", i) for w in range(WRITERS) for i in range(RECORDS_PER_WRITER)}
    for rec in records:
        assert rec.answer == "x" * (1000 + 37 * rec.episode_index)
    # Each writer's own records stay in its order.
    for w in range(WRITERS):
        mine = [r.episode_index for r in records if r.task_id == f"w{w}"]
        assert mine == sorted(mine)
    assert os.path.getsize(path) == sum(len(r.to_line()) for r in records)


def test_one_writer_shared_by_threads_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "threads.jsonl"
    with RecordWriter(path, fsync=False) as writer:
        threads = [
            threading.Thread(
                target=lambda w=w: [writer.write(record(task=f"w{w}", index=i)) for i in range(100)]
            )
            for w in range(WRITERS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len({(r.task_id, r.episode_index) for r in read_records(path)}) == WRITERS * 100


def test_closed_writer_refuses_to_write(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "run.jsonl")
    writer.close()
    with pytest.raises(RecordsError, match="closed"):
        writer.write(record())
