"""Episode records: the JSON schema, crash-safe appends from several processes, tolerant reads."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gather_envs.errors import RecordsError
from gather_envs.records import RECORD_SCHEMA_VERSION, EpisodeRecord
from gather_envs.runs import (
    RecordLocation,
    RecordWriter,
    append_records,
    check_unique_cells,
    corrupt_sidecar,
    load_run,
    read_for_append,
    read_records,
    read_records_with_locations,
)

WRITERS = 4
RECORDS_PER_WRITER = 200


def record(task: str = "t1", index: int = 0, **overrides: object) -> EpisodeRecord:
    fields: dict[str, object] = {
        "env_id": "Gather-MultiHop-v0",
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
        "env_id": "Gather-MultiHop-v0",
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


TORN = record(index=2).to_line()[:40]
"""The first bytes of a record line: what a writer killed mid-record leaves."""
BINARY_LINE = bytes(range(256)).replace(b"\n", b"") + b"\n"
"""A terminated line of every byte value except the newline (not UTF-8)."""


def notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gather_envs.records"]


def test_torn_last_line_is_skipped_with_a_one_line_notice(tmp_path: Path, caplog) -> None:
    path = tmp_path / "run.jsonl"
    append_records(path, [record(index=0), record(index=1)])
    with path.open("ab") as f:
        f.write(TORN)  # a writer killed mid-record
    with caplog.at_level(logging.WARNING):
        records = read_records(path)
    assert [r.episode_index for r in records] == [0, 1]
    assert notices(caplog) == [
        f"gather-envs: {path}:3: skipped a torn last line (40 bytes; a writer stopped mid-record)"
    ]


def test_the_torn_line_notice_is_one_plain_line_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(record(index=0).to_line() + TORN)
    script = "import sys; from gather_envs.runs import read_records; print(len(read_records(sys.argv[1])))"
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1\n"
    assert done.stderr.splitlines() == [
        f"gather-envs: {path}:2: skipped a torn last line (40 bytes; a writer stopped mid-record)"
    ]


def test_next_append_moves_a_torn_tail_to_the_sidecar(tmp_path: Path, caplog) -> None:
    path = tmp_path / "run.jsonl"
    append_records(path, [record(index=0)])
    with path.open("ab") as f:
        f.write(b'{"schema_version": 1, "env_')
    with caplog.at_level(logging.WARNING):
        append_records(path, [record(index=1)])
    assert [r.episode_index for r in read_records(path)] == [0, 1]
    assert corrupt_sidecar(path).read_bytes() == b'{"schema_version": 1, "env_\n'
    assert len(notices(caplog)) == 1 and "moved a torn last line" in notices(caplog)[0]


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
    with pytest.raises(RecordsError, match=r"run\.jsonl:2: corrupt line in the middle.*fix or delete"):
        read_records(path)


@pytest.mark.parametrize("garbage", [b"{not json\n", b"hello world\n", BINARY_LINE, b"hello world"])
def test_a_last_line_that_is_not_a_torn_write_is_an_error_naming_file_and_line(
    tmp_path: Path, garbage: bytes
) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(record(index=0).to_line() + record(index=1).to_line() + garbage)
    with pytest.raises(
        RecordsError, match=r"run\.jsonl:3: the last line is not a record .*run\.jsonl\.corrupt"
    ) as info:
        read_records(path)
    assert "torn" in str(info.value) and "in the middle" not in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"hello world\n", b"hello world", BINARY_LINE, BINARY_LINE.rstrip(b"\n"), b"\x89PNG\r\n\x1a\n\x00\x00"],
    ids=["hello-terminated", "hello-bare", "binary-terminated", "binary-bare", "png-header"],
)
def test_a_file_that_is_not_records_says_so(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(
        RecordsError, match=r"notes\.txt is not an episode-records file: line 1 is not a record"
    ) as info:
        read_records(path)
    assert "torn" not in str(info.value) and "in the middle" not in str(info.value)
    with pytest.raises(RecordsError, match="is not an episode-records file"):
        read_for_append(path)  # a resume refuses it too, and leaves it as it is
    assert path.read_bytes() == content
    assert not corrupt_sidecar(path).exists()


DAMAGED_TAILS = {
    "torn": (TORN, True),
    "torn-after-blank-lines": (b"\n\n" + TORN, True),
    "garbage-terminated": (b"{not json\n", True),
    "hello-world-terminated": (b"hello world\n", True),
    "hello-world-bare": (b"hello world", True),
    "binary-terminated": (BINARY_LINE, True),
    "binary-bare": (BINARY_LINE.rstrip(b"\n"), True),
    "complete-without-newline": (record(index=2).to_line().rstrip(b"\n"), False),
}
"""Tails after two good records: the bytes, and whether a resume's read moves them to the sidecar."""


@pytest.mark.parametrize("name", sorted(DAMAGED_TAILS))
def test_repair_leaves_a_readable_file_and_loses_no_byte(tmp_path: Path, name: str, caplog) -> None:
    tail, moved = DAMAGED_TAILS[name]
    path = tmp_path / "run.jsonl"
    good = record(index=0).to_line() + record(index=1).to_line()
    path.write_bytes(good + tail)
    with caplog.at_level(logging.WARNING):
        first = read_for_append(path)
        again = read_for_append(path)  # idempotent: the second pass finds nothing to repair
    assert first == again
    assert [r.episode_index for r, _ in first] == [0, 1, *([] if moved else [2])]
    sidecar = corrupt_sidecar(path)
    if moved:
        assert path.read_bytes() + sidecar.read_bytes() == good + tail + (
            b"" if tail.endswith(b"\n") else b"\n"
        )
        assert (
            len(notices(caplog)) == 1
            and f"{path}:" in notices(caplog)[0]
            and str(sidecar) in notices(caplog)[0]
        )
    else:
        assert path.read_bytes() == good + tail + b"\n" and not sidecar.exists()
    append_records(path, [record(index=3)])
    assert [r.episode_index for r in read_records(path)] == [0, 1, *([] if moved else [2]), 3]


TAIL_PIECES = st.one_of(
    st.binary(max_size=80),
    st.sampled_from([b"\n", b"\n\n", b"{", b"}", b"hello world", b"\x00" * 64, b"[1, 2]\n", b"{}\n"]),
    st.integers(0, len(record(index=9).to_line())).map(lambda n: record(index=9).to_line()[:n]),
)
"""Pieces of hostile tails: random bytes, JSON fragments, NUL runs and every prefix of a record line."""


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(TAIL_PIECES, max_size=4))
def test_a_resume_leaves_a_readable_file_or_refuses_it_untouched_and_loses_no_byte(
    pieces: list[bytes],
) -> None:
    """Whatever follows two good records, a resume's read either repairs or refuses the file as it was."""
    tail = b"".join(pieces)
    good = record(index=0).to_line() + record(index=1).to_line()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "run.jsonl"
        path.write_bytes(good + tail)
        sidecar = corrupt_sidecar(path)
        try:
            located = read_for_append(path)
        except RecordsError:
            assert path.read_bytes() == good + tail and not sidecar.exists()  # refused: as it was
            return
        after = path.read_bytes()
        moved = sidecar.read_bytes() if sidecar.exists() else b""
        assert after + moved in (good + tail, good + tail + b"\n")  # kept, newline added, or moved aside
        records = read_records(path)
        assert records == [r for r, _ in located] and records[:2] == [record(index=0), record(index=1)]
        append_records(path, [record(index=7)])
        assert read_records(path) == [*records, record(index=7)]


def test_repair_appends_every_damaged_tail_to_one_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(record(index=0).to_line() + b"first garbage\n")
    read_for_append(path)
    with path.open("ab") as f:
        f.write(TORN)
    read_for_append(path)
    assert corrupt_sidecar(path).read_bytes() == b"first garbage\n" + TORN + b"\n"
    assert len(read_records(path)) == 1


@pytest.mark.parametrize("tail", [b"{not json\n" + b"more garbage\n", b"{not json\n" + TORN, b"{}\n" + TORN])
def test_a_resume_refuses_a_damaged_line_before_the_last_and_changes_nothing(
    tmp_path: Path, tail: bytes
) -> None:
    path = tmp_path / "run.jsonl"
    content = record(index=0).to_line() + tail
    path.write_bytes(content)
    with pytest.raises(RecordsError, match=r"run\.jsonl:2: "):
        read_for_append(path)
    assert path.read_bytes() == content
    assert not corrupt_sidecar(path).exists()


def test_a_resume_whose_check_refuses_the_records_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    content = record(index=0).to_line() + record(index=0).to_line() + TORN
    path.write_bytes(content)

    def refuse(located: list[tuple[EpisodeRecord, RecordLocation]]) -> None:
        check_unique_cells([r for r, _ in located], [str(loc) for _, loc in located], remedy="fix it")

    with pytest.raises(RecordsError, match="two records for task"):
        read_for_append(path, refuse)
    assert path.read_bytes() == content
    assert not corrupt_sidecar(path).exists()


def test_a_resume_refuses_a_json_last_line_that_is_not_a_record_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    newer = {**record(index=1).to_json(), "schema_version": RECORD_SCHEMA_VERSION + 1}
    content = record(index=0).to_line() + (json.dumps(newer) + "\n").encode()
    path.write_bytes(content)
    with pytest.raises(RecordsError, match=r"run\.jsonl:2: .*upgrade"):
        read_for_append(path)
    assert path.read_bytes() == content


def test_a_resume_of_a_missing_or_empty_file_reads_nothing_and_changes_nothing(tmp_path: Path) -> None:
    assert read_for_append(tmp_path / "absent.jsonl") == []
    assert not (tmp_path / "absent.jsonl").exists()
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert read_for_append(tmp_path / "empty.jsonl") == []
    assert (tmp_path / "empty.jsonl").read_bytes() == b""


# --------------------------------------------------------------------------------------------
# Duplicate cells


def test_duplicate_cells_are_found_with_both_places_across_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    append_records(a, [record(index=0), record(index=1), record(index=0, budget=1)])
    append_records(b, [record(index=2), record(index=1), record(task="t2", index=1)])
    located = read_records_with_locations([a, b])
    assert [str(loc) for _, loc in located] == [f"{a}:1", f"{a}:2", f"{a}:3", f"{b}:1", f"{b}:2", f"{b}:3"]
    run = load_run([a, b], unique=False)
    records, places = run.records, run.places
    assert places == [str(loc) for _, loc in located]
    with pytest.raises(
        RecordsError,
        match=rf"task 't1', T=3, episode 1 .*: {re.escape(str(a))}:2 and {re.escape(str(b))}:2; drop one",
    ):
        check_unique_cells(records, places, remedy="drop one")


def test_records_without_an_index_are_not_cells(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    append_records(path, [record(index=i) for i in range(5)] + [record(index=-1), record(index=-1)])
    run = load_run(path)  # no duplicates: no error
    records, places = run.records, run.places
    with pytest.raises(RecordsError, match=rf"episode 0 .*: {re.escape(str(path))}:1 and record #8"):
        check_unique_cells([*records, records[0]], [*places, "record #8"])


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


def test_actions_round_trip_and_old_records_without_them_read_as_none(tmp_path: Path) -> None:
    with_actions = record(actions=("search[capital of France]", "answer[Paris]"))
    old = {key: value for key, value in record().to_json().items() if key != "actions"}
    path = tmp_path / "r.jsonl"
    path.write_bytes(with_actions.to_line() + (json.dumps(old) + "\n").encode("utf-8"))
    first, second = read_records(path)
    assert first == with_actions and first.actions == ("search[capital of France]", "answer[Paris]")
    assert second.actions is None


def test_gzip_records_are_read_transparently_and_never_appended_to(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(record(index=i).to_line() for i in range(3))))
    assert [r.episode_index for r in read_records(path)] == [0, 1, 2]
    with pytest.raises(RecordsError, match="gzip-compressed.*decompress"):
        append_records(path, [record()])
    with pytest.raises(RecordsError, match="gzip-compressed"):
        read_for_append(path)
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"not gzip at all\n")
    with pytest.raises(RecordsError, match="not a readable gzip file"):
        read_records(broken)


def test_a_deeply_nested_line_is_a_records_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(record().to_line() + b"[" * 200_000 + b"]" * 200_000 + b"\n" + record().to_line())
    with pytest.raises(RecordsError, match=r":2: corrupt line .*nested deeper than"):
        read_records(path)
