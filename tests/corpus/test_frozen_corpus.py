"""Frozen corpora: file hashes and every manifest field are checked at load; regeneration is bit for bit."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gather_envs.cli import main
from gather_envs.corpus.corpus import Corpus
from gather_envs.corpus.frozen import (
    DEFAULT_CORPUS,
    MANIFEST,
    corpora_root,
    load_directory,
    load_frozen,
    write_frozen,
)
from gather_envs.corpus.manifest import (
    MANIFEST_FIELDS,
    MANIFEST_SCHEMA_VERSION,
    parse_manifest,
    seal_manifest,
)
from gather_envs.errors import CorpusError


@pytest.fixture()
def default_copy(tmp_path: Path) -> Path:
    target = tmp_path / DEFAULT_CORPUS
    shutil.copytree(corpora_root() / DEFAULT_CORPUS, target)
    return target


def test_default_corpus_loads_and_has_500_test_tasks_per_family() -> None:
    corpus = load_frozen()
    for family in ("single-hop", "bridge", "comparison", "static"):
        assert len(corpus.tasks("test", family)) >= 500
        assert len(corpus.tasks("train", family)) >= 500


def test_corrupted_file_is_named_in_the_error(default_copy: Path) -> None:
    path = default_copy / "tasks-test.jsonl"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match=r"tasks-test\.jsonl.*does not match"):
        load_directory(default_copy)


def test_missing_file_and_missing_manifest_are_clear(default_copy: Path) -> None:
    (default_copy / "documents.jsonl").unlink()
    with pytest.raises(CorpusError, match=r"documents\.jsonl: listed in manifest\.json but missing"):
        load_directory(default_copy)
    (default_copy / "manifest.json").unlink()
    with pytest.raises(CorpusError, match="missing manifest"):
        load_directory(default_copy)


def test_unknown_corpus_name_lists_the_available_ones() -> None:
    with pytest.raises(CorpusError, match="available: .*default"):
        load_frozen("no-such-corpus")


def test_generate_from_manifest_reproduces_every_byte(tmp_path: Path, capsys) -> None:
    source = corpora_root() / DEFAULT_CORPUS
    out = tmp_path / "regen"
    assert main(["generate", "--from-manifest", str(source), "--out", str(out)]) == 0
    assert "content_hash=" in capsys.readouterr().out
    for path in sorted(source.iterdir()):
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name


# --------------------------------------------------------------------------------------------
# The manifest is verified like the files it lists

MANIFEST_PATH = corpora_root() / DEFAULT_CORPUS / MANIFEST
SAMPLED_FLIPS = 200
FLIP_SEED = 20261201


def shipped_manifest() -> dict[str, Any]:
    return json.loads(MANIFEST_PATH.read_text())


def write_manifest(directory: Path, manifest: dict[str, Any], *, seal: bool) -> None:
    """Write ``manifest`` into ``directory``; ``seal`` recomputes its hashes, so only the checkers can object."""
    data = seal_manifest(manifest) if seal else manifest
    (directory / MANIFEST).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def test_the_shipped_manifest_is_sealed_by_the_writer() -> None:
    manifest = shipped_manifest()
    assert manifest["schema_version"] == MANIFEST_SCHEMA_VERSION
    assert seal_manifest(manifest) == manifest
    assert sorted(manifest) == sorted(MANIFEST_FIELDS)


def test_every_single_bit_flip_of_the_manifest_is_a_corpus_error() -> None:
    data = MANIFEST_PATH.read_bytes()
    where = str(MANIFEST_PATH)
    parse_manifest(data, where)  # the intact bytes pass
    accepted, crashed = [], []
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            try:
                parse_manifest(bytes(flipped), where)
            except CorpusError:
                continue
            except Exception as exc:  # noqa: BLE001 - the point: nothing but CorpusError
                crashed.append((position, bit, repr(exc)))
            else:
                accepted.append((position, bit))
    assert accepted == [] and crashed == [], (accepted[:5], crashed[:5])


def test_sampled_bit_flips_fail_loading_with_a_corpus_error(default_copy: Path) -> None:
    data = (default_copy / MANIFEST).read_bytes()
    rng = np.random.default_rng(FLIP_SEED)
    positions = rng.choice(len(data), size=SAMPLED_FLIPS, replace=False)
    for position, bit in zip(positions, rng.integers(0, 8, size=SAMPLED_FLIPS), strict=True):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(bit)
        (default_copy / MANIFEST).write_bytes(bytes(flipped))
        with pytest.raises(CorpusError, match=re.escape(str(default_copy / MANIFEST))):
            load_directory(default_copy)


def edit(manifest: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``manifest`` with the item at ``path`` (keys joined by ``|``) set (or deleted when value is DELETE)."""
    edited = copy.deepcopy(manifest)
    *parents, last = path.split("|")
    target: Any = edited
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return edited


DELETE = object()
SHA = "0" * 64
FIELD_EDITS = [
    ("schema_version", "2", "schema_version", "must be an int"),
    ("schema_version", True, "schema_version", "must be an int"),
    ("schema_version", 1, "schema_version", "predates verified manifests"),
    ("schema_version", MANIFEST_SCHEMA_VERSION + 1, "schema_version", "upgrade gather-envs"),
    ("name", 3, "name", "must be a name"),
    ("name", "../elsewhere", "name", "must be a name"),
    ("name", "", "name", "must be a name"),
    ("knobs", "seed=2026", "knobs", "must be a JSON object"),
    ("knobs|seed", "2026", "knobs", "knob 'seed' must be int"),
    ("knobs|distractor_density", True, "knobs", "knob 'distractor_density' must be float"),
    ("knobs|distractor_density", 2.5, "knobs", "not a valid world config"),
    ("knobs|num_entities", 5, "knobs", "not a valid world config"),
    ("knobs|colour", "blue", "knobs", "unknown world knob"),
    ("knobs|seed", [1], "knobs", "must be a number, a string or a list of strings"),
    ("knobs|generator_version", DELETE, "knobs", "generator_version must be an int"),
    ("content_hash", "c6c86b62", "content_hash", "must be a sha256"),
    ("content_hash", 7, "content_hash", "must be a sha256"),
    ("files", ["documents.jsonl", "tasks-test.jsonl"], "files", "must be a JSON object"),
    ("files|documents.jsonl", DELETE, "files", "must list documents.jsonl"),
    ("files|run.sh", SHA, "files", "not a corpus file name"),
    ("files|../manifest.json", SHA, "files", "not a corpus file name"),
    ("files|tasks-test.jsonl", "abc", "files", "the hash of tasks-test.jsonl must be a sha256"),
    ("files|tasks-test.jsonl", None, "files", "must be a sha256"),
    ("counts", [], "counts", "must be a JSON object"),
    ("counts|test", [500], "counts", "counts.test must be a JSON object"),
    ("counts|test|bridge", -1, "counts", "must be an int >= 0"),
    ("counts|test|bridge", 500.0, "counts", "must be an int >= 0"),
    ("counts|test|bridge", True, "counts", "must be an int >= 0"),
    ("counts|test|poetry", 5, "counts", "unknown family 'poetry'"),
    ("counts|te st", {}, "counts", "split named"),
    ("filter_stats", {}, "filter_stats", "must be a JSON list"),
    ("filter_stats|0", "bridge", "filter_stats", "must be a JSON object"),
    ("filter_stats|0|kept", DELETE, "filter_stats", "must have the fields"),
    ("filter_stats|0|kept", "many", "filter_stats", "kept must be an int"),
    ("filter_stats|0|family", "poetry", "filter_stats", "unknown or repeated family"),
    ("filter_stats|1|family", "single-hop", "filter_stats", "unknown or repeated family"),
    ("filter_stats|1|shortcut_rate", 0.5, "filter_stats", "its counts give 0.493927"),
    ("version", "one", "version", "must be a corpus version"),
    ("split_documents|train", [10, 20], "split_documents", "overlaps"),
    ("chance_floor|bridge|floor|1", 0.5, "chance_floor", "its best guesser scores 0.0"),
    ("chance_floor|bridge|guessers|coin", {}, "chance_floor", "unknown guesser"),
    ("hop_skip_rates|test|distractor|3", 0.1, "hop_skip_rates", "inside the guaranteed top_k"),
    ("hop_skip_rates|guaranteed_top_k", 0, "hop_skip_rates", "must be an int >= 1"),
    ("field_hashes", [], "field_hashes", "must be a JSON object"),
    ("field_hashes|name", "abc", "field_hashes", "the hash of field 'name' must be a sha256"),
]
"""(path, new value, field the error must name, what it must say)."""


@pytest.mark.parametrize(
    ("path", "value", "field", "message", "seal"),
    [(*e, seal) for e in FIELD_EDITS for seal in (True, False) if not (seal and e[2] == "field_hashes")],
    ids=[
        f"{'resealed' if seal else 'as-edited'}-{e[0]}={repr(e[1])[:20]}"
        for e in FIELD_EDITS
        for seal in (True, False)
        if not (seal and e[2] == "field_hashes")
    ],
)
def test_a_bad_field_is_a_corpus_error_naming_it(
    default_copy: Path, path: str, value: Any, field: str, message: str, seal: bool
) -> None:
    """Resealed, only the field's checker can object; as edited, the checker speaks before the hash."""
    manifest = edit(shipped_manifest(), path, value)
    write_manifest(default_copy, manifest, seal=seal)
    with pytest.raises(CorpusError, match=rf"manifest\.json: field '{field}' .*{re.escape(message)}"):
        load_directory(default_copy)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("name", "renamed", "name"),
        ("knobs|seed", 2027, "knobs"),
        ("content_hash", SHA, "content_hash"),
        ("counts|test|bridge", 499, "counts"),
        ("filter_stats|0|drafted", 1611, "filter_stats"),
        ("files|tasks-test.jsonl", SHA, "files"),
        ("field_hashes|knobs", SHA, "knobs"),
    ],
)
def test_a_valid_looking_edit_is_caught_by_the_field_hash(
    default_copy: Path, path: str, value: Any, field: str
) -> None:
    write_manifest(default_copy, edit(shipped_manifest(), path, value), seal=False)
    with pytest.raises(CorpusError, match=rf"field '{field}' does not match its hash in field_hashes"):
        load_directory(default_copy)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("counts|test|bridge", 499, r"field 'counts' gives split 'test' .*its tasks file holds"),
        ("counts|test|static", 3, r"field 'counts' gives split 'test'"),
        ("counts|validation", {"bridge": 1}, r"field 'counts' has splits \['test', 'train', 'validation'\]"),
        ("counts|train", DELETE, r"field 'counts' has splits \['test'\], but field 'files' lists"),
        (
            "content_hash",
            "cb96f8bd2788cf94921b34d17ec5fe42250b1a377fd196f2f7bcacc859573502",
            "field 'content_hash'",
        ),
    ],
)
def test_a_resealed_field_that_contradicts_the_files_is_a_corpus_error(
    default_copy: Path, path: str, value: Any, message: str
) -> None:
    write_manifest(default_copy, edit(shipped_manifest(), path, value), seal=True)
    with pytest.raises(CorpusError, match=message):
        load_directory(default_copy)


def test_unknown_and_missing_fields_are_named(default_copy: Path) -> None:
    write_manifest(default_copy, {**shipped_manifest(), "future_field": {}}, seal=True)
    with pytest.raises(CorpusError, match=r"unknown manifest field\(s\) \['future_field'\]"):
        load_directory(default_copy)
    write_manifest(default_copy, edit(shipped_manifest(), "filter_stats", DELETE), seal=True)
    with pytest.raises(CorpusError, match=r"manifest lacks field\(s\) \['filter_stats'\]"):
        load_directory(default_copy)
    hashes = {**shipped_manifest()["field_hashes"], "future_field": SHA}
    write_manifest(default_copy, {**shipped_manifest(), "field_hashes": hashes}, seal=False)
    with pytest.raises(
        CorpusError, match=r"field 'field_hashes' hashes unknown field\(s\) \['future_field'\]"
    ):
        load_directory(default_copy)


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "a", "name": "b"}',
        '{"schema_version": NaN}',
        "[1, 2]",
        '"manifest"',
        "",
        "\xff\xfe",
    ],
)
def test_a_manifest_that_is_not_one_json_object_is_a_corpus_error(default_copy: Path, text: str) -> None:
    (default_copy / MANIFEST).write_bytes(text.encode("latin-1"))
    with pytest.raises(CorpusError, match=r"manifest\.json: "):
        load_directory(default_copy)


def test_a_version_1_manifest_says_how_to_upgrade(default_copy: Path) -> None:
    old = {k: v for k, v in shipped_manifest().items() if k != "field_hashes"}
    write_manifest(default_copy, {**old, "schema_version": 1}, seal=False)
    with pytest.raises(
        CorpusError, match="field 'schema_version' is 1: this manifest predates .*gather-envs generate"
    ):
        load_directory(default_copy)


def test_the_writer_refuses_a_manifest_loading_would_refuse(tmp_path: Path) -> None:
    corpus = load_frozen()
    renamed = Corpus("my corpus", corpus.documents, corpus.splits, corpus.knobs, corpus.content_hash)
    with pytest.raises(CorpusError, match="field 'name' must be a name"):
        write_frozen(renamed, [], tmp_path / "out")
    assert not (tmp_path / "out" / MANIFEST).exists()
