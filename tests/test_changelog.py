"""CHANGELOG.md's newest entry names what the package ships: ids, corpora, record schema, version.

A change to a registered id, a shipped corpus's version or content hash, the episode-record
schema or the package version without a new changelog entry fails here (the versioning rule at
the top of CHANGELOG.md says which versions to bump).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import gymnasium as gym
import pytest

import gather_envs
from gather_envs.corpus.frozen import MANIFEST, available_corpora, corpora_root
from gather_envs.records.episodes import RECORD_SCHEMA_VERSION

CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"
ENTRY = re.compile(r"^## (?!The versioning rule)(.+)$", flags=re.M)
ROW = re.compile(r"^\| (.+?) \| (.+?) \|$", flags=re.M)
CORPUS_ROW = re.compile(r"corpus `([^`]+)`")
CORPUS_VALUE = re.compile(r"^(v\d+), content hash `([0-9a-f]{64})`$")
OUR_ENTRY_POINTS = "gather_envs."


@dataclass(frozen=True)
class Shipped:
    """What a package ships that a changelog entry must name."""

    package: str
    env_ids: frozenset[str]
    corpora: dict[str, tuple[str, str]]  # name -> (version, content hash)
    record_schema: int


def shipped() -> Shipped:
    """What the installed package ships: its registered ids, corpora, record schema and version."""
    ids = frozenset(
        env_id
        for env_id, spec in gym.registry.items()
        if isinstance(spec.entry_point, str) and spec.entry_point.startswith(OUR_ENTRY_POINTS)
    )
    corpora = {}
    for name in available_corpora():
        manifest = json.loads((corpora_root() / name / MANIFEST).read_text(encoding="utf-8"))
        corpora[name] = (manifest["version"], manifest["content_hash"])
    return Shipped(gather_envs.__version__, ids, corpora, RECORD_SCHEMA_VERSION)


def latest_entry(text: str) -> tuple[str, Shipped]:
    """The newest entry with a Versions table: its heading and what the table names."""
    headings = list(ENTRY.finditer(text))
    for heading, following in zip(headings, [*headings[1:], None]):
        body = text[heading.end() : following.start() if following else len(text)]
        rows = {key.strip(): value.strip() for key, value in ROW.findall(body)}
        if "package" not in rows:
            continue
        corpora = {}
        for key, value in rows.items():
            corpus = CORPUS_ROW.fullmatch(key)
            if corpus:
                parsed = CORPUS_VALUE.match(value)
                assert parsed, f"CHANGELOG.md, {heading.group(1)}: bad corpus row {value!r}"
                corpora[corpus.group(1)] = (parsed.group(1), parsed.group(2))
        ids = frozenset(re.findall(r"`([^`]+)`", rows["env ids"]))
        return heading.group(1), Shipped(rows["package"], ids, corpora, int(rows["record schema"]))
    raise AssertionError("CHANGELOG.md has no entry with a Versions table")


def changelog_problems(text: str, actual: Shipped) -> list[str]:
    """How the package differs from the changelog's newest entry (empty when they agree)."""
    heading, entry = latest_entry(text)
    fix = f"add a CHANGELOG.md entry (the newest is {heading!r}) as its versioning rule says"
    problems = []
    if actual.package != entry.package:
        problems.append(f"package version {actual.package} is not the entry's {entry.package}: {fix}")
    if actual.env_ids != entry.env_ids:
        added, gone = sorted(actual.env_ids - entry.env_ids), sorted(entry.env_ids - actual.env_ids)
        problems.append(f"registered ids differ: not in the entry {added}, no longer registered {gone}: {fix}")
    for name in sorted(actual.corpora.keys() | entry.corpora.keys()):
        if actual.corpora.get(name) != entry.corpora.get(name):
            problems.append(
                f"corpus {name!r} ships {actual.corpora.get(name)}, the entry names "
                f"{entry.corpora.get(name)} (version, content hash): {fix}"
            )
    if actual.record_schema != entry.record_schema:
        problems.append(f"record schema {actual.record_schema} is not the entry's {entry.record_schema}: {fix}")
    return problems


def test_the_newest_entry_names_what_the_package_ships() -> None:
    assert changelog_problems(CHANGELOG.read_text(encoding="utf-8"), shipped()) == []


def test_every_registered_synthetic_id_is_v0_and_no_v1_id_exists() -> None:
    ids = shipped().env_ids
    assert {*gather_envs.ENV_IDS, "Gather-v0"} <= ids
    assert all(env_id.endswith("-v0") for env_id in ids)


CHANGES = {
    "a new id version": lambda s: replace(s, env_ids=s.env_ids | {"Gather-MultiHop-v1"}),
    "a removed id": lambda s: replace(s, env_ids=s.env_ids - {"Gather-Compare-v0"}),
    "a regenerated corpus": lambda s: replace(s, corpora={**s.corpora, "default": (s.corpora["default"][0], "0" * 64)}),
    "a corpus version": lambda s: replace(s, corpora={**s.corpora, "default": ("v2", s.corpora["default"][1])}),
    "a new shipped corpus": lambda s: replace(s, corpora={**s.corpora, "small": ("v1", "1" * 64)}),
    "a record schema": lambda s: replace(s, record_schema=s.record_schema + 1),
    "a package version": lambda s: replace(s, package="0.2.0"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_without_an_entry_fails(change: str) -> None:
    text = CHANGELOG.read_text(encoding="utf-8")
    problems = changelog_problems(text, CHANGES[change](shipped()))
    assert len(problems) == 1 and "add a CHANGELOG.md entry" in problems[0]


def test_a_new_entry_for_the_change_passes() -> None:
    changed = replace(shipped(), env_ids=shipped().env_ids | {"Gather-MultiHop-v1"}, package="0.2.0")
    _, current = latest_entry(CHANGELOG.read_text(encoding="utf-8"))
    ids = ", ".join(f"`{env_id}`" for env_id in sorted(changed.env_ids))
    corpora = "".join(f"| corpus `{n}` | {v}, content hash `{h}` |\n" for n, (v, h) in current.corpora.items())
    entry = (
        "## 0.2.0\n\n| what | version |\n|---|---|\n| package | 0.2.0 |\n"
        f"| env ids | {ids} |\n{corpora}| record schema | {current.record_schema} |\n\n"
    )
    text = CHANGELOG.read_text(encoding="utf-8")
    first = ENTRY.search(text)
    assert first is not None
    new_text = text[: first.start()] + entry + text[first.start() :]
    assert changelog_problems(new_text, changed) == []
    assert changelog_problems(new_text, shipped()) != []


def test_the_citation_file_names_the_package_version_and_the_readme_points_to_it() -> None:
    citation = (CHANGELOG.parent / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(r"^version: (\S+)$", citation, flags=re.M).group(1) == gather_envs.__version__  # type: ignore[union-attr]
    assert "arXiv:2604.14877" in citation
    first_paragraph = (CHANGELOG.parent / "README.md").read_text(encoding="utf-8").split("\n\n")[1]
    assert "CITATION.cff" in first_paragraph and "arXiv:2604.14877" in first_paragraph
