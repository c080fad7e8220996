"""Frozen corpora: manifest hashes are checked at load, and regeneration is bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gather_envs.cli import main
from gather_envs.corpus.frozen import DEFAULT_CORPUS, corpora_root, load_directory, load_frozen
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
