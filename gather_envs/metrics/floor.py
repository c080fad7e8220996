"""The chance floor: PASS@(k,0) of a question-only guesser, shown beside every reading.

A guesser that sees only the question (no search, no documents) still solves some tasks, more so
at large k when answers come from a small set; the floor says what luck alone gives at each k, so
a reader can tell a reading from it. It is measured per task family and stored in the corpus
manifest under :data:`MANIFEST_KEY`, per family either ``{"<k>": PASS@(k,0), ...}`` or an object
whose :data:`FLOOR_FIELD` holds that mapping (beside the winning guesser and every guesser's
curve); reports show it when the records' corpus has one and show nothing otherwise (no floor is
ever invented).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gather_envs.errors import CorpusError, GatherError
from gather_envs.records import EpisodeRecord

ChanceFloor = Mapping[str, Mapping[int, float]]
"""family -> k -> PASS@(k, T=0) of the question-only guesser."""

MANIFEST_KEY = "chance_floor"
"""Field of a corpus manifest that holds its chance floor."""

FLOOR_FIELD = "floor"
"""Field of a family's manifest entry holding k -> PASS@(k,0) when the entry also names guessers."""


def parse_chance_floor(
    data: Any, where: str, error: type[GatherError] = CorpusError
) -> dict[str, dict[int, float]]:
    """``{family: {k: value}}`` from its JSON form (k may be strings); ``error`` naming ``where``."""
    if not isinstance(data, Mapping):
        raise error(f"{where}: {MANIFEST_KEY} must map family -> {{k: PASS@(k,0)}}, got {data!r:.80}")
    floor: dict[str, dict[int, float]] = {}
    for family in sorted(data):
        per_k = data[family]
        if isinstance(per_k, Mapping) and isinstance(per_k.get(FLOOR_FIELD), Mapping):
            per_k = per_k[FLOOR_FIELD]
        if not isinstance(per_k, Mapping):
            raise error(f"{where}: {MANIFEST_KEY}[{family!r}] must map k -> PASS@(k,0), got {per_k!r:.80}")
        values: dict[int, float] = {}
        for key, value in per_k.items():
            try:
                k, v = int(key), float(value)
            except (TypeError, ValueError):
                raise error(
                    f"{where}: {MANIFEST_KEY}[{family!r}] has a bad entry {key!r}: {value!r:.40}"
                ) from None
            if k < 1 or not 0.0 <= v <= 1.0:
                raise error(
                    f"{where}: {MANIFEST_KEY}[{family!r}][{key!r}] = {value!r}: k must be >= 1 and "
                    "the value a probability in [0, 1]"
                )
            values[k] = v
        floor[str(family)] = dict(sorted(values.items()))
    return floor


def floor_for_families(floor: ChanceFloor, tasks_per_family: Mapping[str, int]) -> dict[int, float]:
    """The floor of a task set: the task-weighted mean of its families' floors, per k.

    Only the k every family has; empty when a family of the set has no floor (then nothing is
    shown rather than a floor for part of the tasks).
    """
    counts = {family: n for family, n in tasks_per_family.items() if n > 0}
    if not counts or any(family not in floor for family in counts):
        return {}
    ks = sorted(set.intersection(*(set(floor[family]) for family in counts)))
    total = sum(counts.values())
    return {k: sum(floor[family][k] * n for family, n in counts.items()) / total for k in ks}


def at_ks(values: Mapping[int, float], ks: tuple[int, ...]) -> dict[int, float]:
    """``values`` restricted to the k of a table's grid (in grid order)."""
    return {k: values[k] for k in ks if k in values}


def load_chance_floor(corpus_hash: str) -> dict[str, dict[int, float]] | None:
    """The chance floor in the manifest of the shipped frozen corpus with this content hash.

    None when no shipped corpus has that hash (a procedural world, a dataset file) or its manifest
    has no :data:`MANIFEST_KEY`.
    """
    from gather_envs.corpus.frozen import MANIFEST, available_corpora, corpora_root, read_manifest

    root = corpora_root()
    for name in available_corpora():
        manifest = read_manifest(root / name)
        if manifest.get("content_hash") != corpus_hash:
            continue
        if MANIFEST_KEY not in manifest:
            return None
        return parse_chance_floor(manifest[MANIFEST_KEY], str(root / name / MANIFEST))
    return None


FLOOR_SPLIT = "test"
"""The split a manifest's floor was measured on (the guesser learns from the train split)."""

SPLIT_KWARG = "split"


def chance_floor_of(records: Iterable[EpisodeRecord]) -> dict[str, dict[int, float]] | None:
    """The chance floor of the corpus the records ran on (:func:`load_chance_floor`); None if none.

    None as well when the records span several corpora (the report and the comparison refuse
    those with their own message) or ran on another split than the floor's (a floor measured on
    the test tasks says nothing about the train tasks).
    """
    records = list(records)
    hashes = sorted({record.corpus_hash for record in records})
    splits = {str(record.env_kwargs.get(SPLIT_KWARG, FLOOR_SPLIT)) for record in records}
    if len(hashes) != 1 or splits != {FLOOR_SPLIT}:
        return None
    floor = load_chance_floor(hashes[0])
    return floor if floor is not None else _floor_of_own_data(records, hashes[0])


def _floor_of_own_data(records: list[EpisodeRecord], corpus_hash: str) -> dict[str, dict[int, float]] | None:
    """The floor of your own data (a corpus directory, custom files, PhantomWiki), measured now.

    The same guessers as the stored floors (question-only rules, plus the train guesser when the
    corpus has a train split), over the test split; None when the records came from elsewhere or
    the files no longer hold the corpus they ran on (another content hash, or a task id gone).
    """
    from gather_envs.corpus.frozen import is_corpus_path, load_frozen
    from gather_envs.corpus.synthetic import floor_tasks
    from gather_envs.envs.sources import resolve_corpus
    from gather_envs.tasks.floor import chance_floor_table

    sources = {_own_source(record) for record in records}
    if len(sources) != 1 or None in sources:
        return None
    source = sources.pop()
    assert source is not None
    try:
        if source[0] == "corpus":
            if not is_corpus_path(source[1]):
                return None
            corpus = load_frozen(source[1])
        else:
            corpus = resolve_corpus(dataset=dict(source[1]))
    except GatherError:  # the files moved or changed since the run: show no floor rather than fail
        return None
    if corpus.content_hash != corpus_hash or FLOOR_SPLIT not in corpus.splits:
        return None
    test = floor_tasks(corpus, FLOOR_SPLIT)
    known = {task.task_id for task in test}
    if any(record.task_id not in known for record in records):
        return None
    train = floor_tasks(corpus, "train") if "train" in corpus.splits else ()
    return chance_floor_table(test, train).floor


def _own_source(record: EpisodeRecord) -> tuple[str, Any] | None:
    """Where a record's corpus came from, when it is your own data: ``("corpus", DIR)`` or a dataset= dict's items."""
    from gather_envs.envs.custom_registration import CUSTOM_ENV_ID, PHANTOMWIKI_ENV_ID
    from gather_envs.envs.sources import CUSTOM_FORMAT, PHANTOMWIKI_FORMAT

    kwargs = record.env_kwargs
    if record.env_id == CUSTOM_ENV_ID:
        return (
            "dataset",
            (
                ("documents", kwargs.get("documents")),
                ("format", CUSTOM_FORMAT),
                ("tasks", kwargs.get("tasks")),
            ),
        )
    if record.env_id == PHANTOMWIKI_ENV_ID:
        return ("dataset", (("format", PHANTOMWIKI_FORMAT), ("path", kwargs.get("path"))))
    if isinstance(kwargs.get("corpus"), str):
        return ("corpus", kwargs["corpus"])
    return None
