"""The frozen-corpus manifest, verified like the files it lists: every field checked, every field hashed.

A manifest is a JSON object whose fields are exactly those of :data:`MANIFEST_FIELDS`. Each field
has a checker (types, allowed values) and a sha256 of its canonical JSON (sorted keys, no spaces)
under ``field_hashes``, which :func:`seal_manifest` adds when the corpus is written. Reading checks
the schema version, the field names, each field, then each hash, so any edit or corruption of the
file is a :class:`~gather_envs.errors.CorpusError` naming the field. Checks that need the content
files (the counts, the content hash) run when the corpus is loaded (:func:`check_against_content`).

A new manifest field is one line in :data:`MANIFEST_FIELDS` (plus its checker if none fits).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from gather_envs.errors import ConfigError, CorpusError
from gather_envs.json_files import NotJson, loads_bounded
from gather_envs.records.tasks import FAMILIES, Task
from gather_envs.tasks.builder import FamilyStats
from gather_envs.tasks.floor import ALL_GUESSERS, GUESSER_NONE
from gather_envs.world.generator import GENERATOR_VERSION, WorldConfig

MANIFEST_SCHEMA_VERSION = 2
"""Version 2 added ``field_hashes``; version 1 manifests are refused with the command that upgrades."""

HASHES_FIELD = "field_hashes"
DOCUMENTS_FILE = "documents.jsonl"
TASKS_PREFIX, TASKS_SUFFIX = "tasks-", ".jsonl"
FILE_NAME_PATTERNS = (re.compile(r"documents\.jsonl"), re.compile(r"tasks-[A-Za-z0-9_]+\.jsonl"))
"""The content files a manifest may list; ``documents.jsonl`` and at least one tasks file must be there."""
SPLIT_PATTERN = re.compile(r"[A-Za-z0-9_]+")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
VERSION_PATTERN = re.compile(r"v[0-9]+")
SHORTCUT_RATE_DIGITS = 6
"""The manifest stores each family's shortcut rate rounded to this many digits."""

IMPORTED_FORMAT = "custom"
"""``knobs.format`` of a corpus imported from your own files (``gather-envs import``): no generator knobs."""

UPGRADE_HINT = "restore the corpus directory, or regenerate it with `gather-envs generate`"


class _Invalid(Exception):
    """A field's value is wrong; the message says how (the caller adds file and field)."""


# --------------------------------------------------------------------------------------------
# Checkers: each takes a field's value and raises _Invalid with a reason


def _subject(what: str) -> str:
    """``what`` as the start of a reason ("" for the field itself, which the caller names)."""
    return f"{what} " if what else ""


def _int(value: Any, what: str = "", minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _Invalid(f"{_subject(what)}must be an int >= {minimum}, got {value!r:.60}")
    return value


def _mapping(value: Any, what: str = "") -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{_subject(what)}must be a JSON object, got {type(value).__name__}")
    return value


def _sha256(value: Any, what: str = "") -> str:
    if not isinstance(value, str) or not SHA256_PATTERN.fullmatch(value):
        raise _Invalid(f"{_subject(what)}must be a sha256 (64 lowercase hex digits), got {value!r:.80}")
    return value


def _check_schema_version(value: Any) -> None:
    _int(value, minimum=1)
    if value < MANIFEST_SCHEMA_VERSION:
        raise _Invalid(
            f"is {value}: this manifest predates verified manifests (version {MANIFEST_SCHEMA_VERSION}); "
            "regenerate the corpus with `gather-envs generate` and its knobs"
        )
    if value > MANIFEST_SCHEMA_VERSION:
        raise _Invalid(
            f"is {value}, newer than this gather-envs reads ({MANIFEST_SCHEMA_VERSION}); upgrade gather-envs"
        )


def _check_name(value: Any) -> None:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise _Invalid(f"must be a name of letters, digits, '.', '_' or '-', got {value!r:.60}")


def _check_knobs(value: Any) -> None:
    knobs = dict(_mapping(value))
    if knobs.get("format") == IMPORTED_FORMAT and "generator_version" not in knobs:
        for name, knob in sorted(knobs.items()):
            if isinstance(knob, bool) or not isinstance(knob, int | str):
                raise _Invalid(
                    f"knob {name!r} of an imported corpus must be an int or a string, got {knob!r:.60}"
                )
        return
    version = _int(knobs.pop("generator_version", None), "knobs.generator_version", 1)
    for name, knob in sorted(knobs.items()):
        if isinstance(knob, list) and all(isinstance(item, str) for item in knob):
            continue  # a list of names (comparison_styles)
        if not isinstance(knob, int | float | str) or (isinstance(knob, float) and not math.isfinite(knob)):
            raise _Invalid(f"knob {name!r} must be a number, a string or a list of strings, got {knob!r:.60}")
    if version != GENERATOR_VERSION:
        return  # another generator's knobs: only regenerating needs to understand them
    types = {f.name: f.type for f in fields(WorldConfig)}
    for name, knob in sorted(knobs.items()):
        wanted = types.get(name)
        if wanted in ("int", "float") and (
            isinstance(knob, bool) or not isinstance(knob, int if wanted == "int" else int | float)
        ):
            raise _Invalid(f"knob {name!r} must be {wanted}, got {knob!r:.60}")
    try:
        WorldConfig.from_json(knobs)
    except (ConfigError, TypeError) as exc:
        raise _Invalid(f"are not a valid world config: {exc}") from None


def _check_files(value: Any) -> None:
    files = _mapping(value)
    for name, digest in sorted(files.items()):
        if not any(pattern.fullmatch(name) for pattern in FILE_NAME_PATTERNS):
            allowed = ", ".join(p.pattern.replace("\\", "") for p in FILE_NAME_PATTERNS)
            raise _Invalid(f"lists {name!r}, which is not a corpus file name ({allowed})")
        _sha256(digest, f"the hash of {name}")
    if DOCUMENTS_FILE not in files:
        raise _Invalid(f"must list {DOCUMENTS_FILE}")
    if not splits_of(files):
        raise _Invalid(f"must list at least one {TASKS_PREFIX}<split>{TASKS_SUFFIX}")


def _check_counts(value: Any) -> None:
    for split, families in sorted(_mapping(value).items()):
        if not SPLIT_PATTERN.fullmatch(split):
            raise _Invalid(f"has a split named {split!r:.60}, not letters, digits or '_'")
        for family, count in sorted(_mapping(families, f"counts.{split}").items()):
            if family not in FAMILIES:
                raise _Invalid(
                    f"has an unknown family {family!r:.60} in split {split!r}; known: {list(FAMILIES)}"
                )
            _int(count, f"counts.{split}.{family}")


def _check_filter_stats(value: Any) -> None:
    if not isinstance(value, list):
        raise _Invalid(f"must be a JSON list, got {type(value).__name__}")
    expected = sorted([f.name for f in fields(FamilyStats)] + ["shortcut_rate"])
    seen: list[tuple[str, str]] = []
    for i, entry in enumerate(value):
        entry = _mapping(entry, f"filter_stats[{i}]")
        if sorted(entry) != expected:
            raise _Invalid(f"[{i}] must have the fields {expected}, has {sorted(entry)}")
        family, split = entry["family"], entry["split"]
        if not isinstance(split, str) or not SPLIT_PATTERN.fullmatch(split):
            raise _Invalid(f"[{i}] has a split named {split!r:.60}, not letters, digits or '_'")
        if family not in FAMILIES or (split, family) in seen:
            raise _Invalid(f"[{i}] has an unknown or repeated family {family!r:.60} in split {split!r}")
        seen.append((split, family))
        counts = {
            name: _int(entry[name], f"filter_stats[{i}].{name}")
            for name in expected
            if name not in ("family", "split", "shortcut_rate")
        }
        rate = round(FamilyStats(family=family, split=split, **counts).shortcut_rate, SHORTCUT_RATE_DIGITS)
        if entry["shortcut_rate"] != rate or isinstance(entry["shortcut_rate"], bool):
            raise _Invalid(
                f"[{i}].shortcut_rate is {entry['shortcut_rate']!r:.30}, but its counts give {rate}"
            )


def _check_content_hash(value: Any) -> None:
    _sha256(value)


def _rate(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise _Invalid(f"{what} must be a rate in [0, 1], got {value!r:.30}")
    return float(value)


def _check_version(value: Any) -> None:
    if not isinstance(value, str) or not VERSION_PATTERN.fullmatch(value):
        raise _Invalid(f"must be a corpus version such as 'v1', got {value!r:.30}")


def _check_split_documents(value: Any) -> None:
    previous_stop = 0
    for split, bounds in sorted(
        _mapping(value).items(), key=lambda item: item[1] if isinstance(item[1], list) else []
    ):
        if not SPLIT_PATTERN.fullmatch(split):
            raise _Invalid(f"has a split named {split!r:.60}, not letters, digits or '_'")
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise _Invalid(f"gives split {split!r} {bounds!r:.60}, not a [start, stop] pair")
        start, stop = (
            _int(bounds[0], f"split_documents.{split}[0]"),
            _int(bounds[1], f"split_documents.{split}[1]"),
        )
        if not previous_stop <= start <= stop:
            raise _Invalid(
                f"gives split {split!r} the range [{start}, {stop}), which is empty-backwards or overlaps"
            )
        previous_stop = stop


def _check_chance_floor(value: Any) -> None:
    for family, entry in sorted(_mapping(value).items()):
        if family not in FAMILIES:
            raise _Invalid(f"has an unknown family {family!r:.60}; known: {list(FAMILIES)}")
        entry = _mapping(entry, f"chance_floor.{family}")
        if sorted(entry) != ["best_guesser", "floor", "guessers", "tasks"]:
            raise _Invalid(f"{family} must have best_guesser, floor, guessers and tasks, has {sorted(entry)}")
        _int(entry["tasks"], f"chance_floor.{family}.tasks", 1)
        curves = _mapping(entry["guessers"], f"chance_floor.{family}.guessers")
        unknown = sorted(set(curves) - set(ALL_GUESSERS))
        if unknown:
            raise _Invalid(f"{family} names unknown guesser(s) {unknown}; known: {list(ALL_GUESSERS)}")
        for k, floor in sorted(_mapping(entry["floor"], f"chance_floor.{family}.floor").items()):
            best = max(
                _rate(curve.get(k), f"chance_floor.{family}.guessers.*.{k}") for curve in curves.values()
            )
            if _rate(floor, f"chance_floor.{family}.floor.{k}") != best:
                raise _Invalid(f"{family} floor at k={k} is {floor}, but its best guesser scores {best}")
            if entry["best_guesser"].get(k) not in (*ALL_GUESSERS, GUESSER_NONE):
                raise _Invalid(f"{family} names no known best guesser at k={k}")


def _check_hop_skip_rates(value: Any) -> None:
    rates = dict(_mapping(value))
    guaranteed = _int(rates.pop("guaranteed_top_k", None), "hop_skip_rates.guaranteed_top_k", 1)
    for split, scopes in sorted(rates.items()):
        for scope, by_k in sorted(_mapping(scopes, f"hop_skip_rates.{split}").items()):
            for k, rate in sorted(_mapping(by_k, f"hop_skip_rates.{split}.{scope}").items()):
                if not k.isdigit():
                    raise _Invalid(f"{split}.{scope} has a top_k {k!r:.20} that is not a number")
                if _rate(rate, f"{split}.{scope}.{k}") and int(k) <= guaranteed:
                    raise _Invalid(f"{split}.{scope} gives {rate} at top_k={k}, inside the guaranteed top_k")


def _check_hashes(value: Any) -> None:
    for name, digest in sorted(_mapping(value).items()):
        _sha256(digest, f"the hash of field {name!r}")


MANIFEST_FIELDS: dict[str, Callable[[Any], None]] = {
    "schema_version": _check_schema_version,
    "name": _check_name,
    "knobs": _check_knobs,
    "content_hash": _check_content_hash,
    "files": _check_files,
    "counts": _check_counts,
    "filter_stats": _check_filter_stats,
    "version": _check_version,
    "split_documents": _check_split_documents,
    "chance_floor": _check_chance_floor,
    "hop_skip_rates": _check_hop_skip_rates,
    HASHES_FIELD: _check_hashes,
}
"""Every manifest field and its checker; each is required and no other field is allowed."""


# --------------------------------------------------------------------------------------------
# Hashing, reading, checking


def splits_of(files: Mapping[str, Any]) -> list[str]:
    """The split names of the tasks files a manifest lists, sorted."""
    return sorted(
        name[len(TASKS_PREFIX) : -len(TASKS_SUFFIX)]
        for name in files
        if name.startswith(TASKS_PREFIX) and name.endswith(TASKS_SUFFIX)
    )


def field_hash(value: Any) -> str:
    """sha256 of a field's canonical JSON (sorted keys, no spaces, UTF-8): what ``field_hashes`` stores."""
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """``manifest`` with ``field_hashes`` set to the hash of every other field (what the writer stores)."""
    body = {name: value for name, value in manifest.items() if name != HASHES_FIELD}
    return {**body, HASHES_FIELD: {name: field_hash(value) for name, value in sorted(body.items())}}


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """The manifest in ``data`` (the bytes of ``where``), fully checked; CorpusError naming the field."""
    try:
        manifest = loads_bounded(data, unique_keys=True, constants=False)
    except NotJson as exc:
        raise CorpusError(f"{where}: unreadable manifest ({exc}); {UPGRADE_HINT}") from None
    check_manifest(manifest, where)
    return manifest


def check_manifest(manifest: Any, where: str) -> None:
    """CorpusError naming the field unless ``manifest`` has exactly the known fields, each valid and
    matching its hash in ``field_hashes``."""
    if not isinstance(manifest, dict):
        raise CorpusError(
            f"{where}: a manifest must be a JSON object, got {type(manifest).__name__}; {UPGRADE_HINT}"
        )
    if "schema_version" in manifest:  # first: an old manifest lacks fields, and should say why
        _check_field(manifest, "schema_version", where)
    unknown = sorted(set(manifest) - set(MANIFEST_FIELDS))
    missing = [name for name in MANIFEST_FIELDS if name not in manifest]
    if unknown:
        raise CorpusError(
            f"{where}: unknown manifest field(s) {unknown} (this gather-envs knows {list(MANIFEST_FIELDS)}: "
            f"a newer one wrote it, or the field is missing from MANIFEST_FIELDS); {UPGRADE_HINT}"
        )
    if missing:
        raise CorpusError(f"{where}: manifest lacks field(s) {missing}; {UPGRADE_HINT}")
    for name in MANIFEST_FIELDS:
        _check_field(manifest, name, where)
    hashes = manifest[HASHES_FIELD]
    hashed = [name for name in MANIFEST_FIELDS if name != HASHES_FIELD]
    extra = sorted(set(hashes) - set(hashed))
    if extra:
        raise CorpusError(f"{where}: field {HASHES_FIELD!r} hashes unknown field(s) {extra}; {UPGRADE_HINT}")
    for name in hashed:
        if name not in hashes:
            raise CorpusError(f"{where}: field {name!r} has no hash in {HASHES_FIELD}; {UPGRADE_HINT}")
        if field_hash(manifest[name]) != hashes[name]:
            raise CorpusError(
                f"{where}: field {name!r} does not match its hash in {HASHES_FIELD} (the field or its hash "
                f"was edited or corrupted); {UPGRADE_HINT}"
            )
    if splits_of(manifest["files"]) != sorted(manifest["counts"]):
        raise CorpusError(
            f"{where}: field 'counts' has splits {sorted(manifest['counts'])}, but field 'files' lists "
            f"the splits {splits_of(manifest['files'])}; {UPGRADE_HINT}"
        )


def _check_field(manifest: Mapping[str, Any], name: str, where: str) -> None:
    try:
        MANIFEST_FIELDS[name](manifest[name])
    except _Invalid as exc:
        raise CorpusError(f"{where}: field {name!r} {exc}; {UPGRADE_HINT}") from None


def check_against_content(
    manifest: Mapping[str, Any], where: str, content_hash: str, splits: Mapping[str, Sequence[Task]]
) -> None:
    """CorpusError naming the field unless the manifest's content hash and counts match the loaded files."""
    if manifest["content_hash"] != content_hash:
        raise CorpusError(
            f"{where}: field 'content_hash' is {manifest['content_hash'][:12]}…, but the documents hash "
            f"to {content_hash[:12]}…; {UPGRADE_HINT}"
        )
    for split, tasks in sorted(splits.items()):
        counts: dict[str, int] = {}
        for task in tasks:
            counts[task.family] = counts.get(task.family, 0) + 1
        if counts != manifest["counts"][split]:
            raise CorpusError(
                f"{where}: field 'counts' gives split {split!r} the families {manifest['counts'][split]}, "
                f"but its tasks file holds {dict(sorted(counts.items()))}; {UPGRADE_HINT}"
            )
