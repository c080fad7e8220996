"""HotpotQA, distractor setting: one JSON array; each question brings its own ten paragraphs.

Item layout: ``_id``, ``question``, ``answer``, ``type`` (``bridge`` or ``comparison``), ``level``,
``supporting_facts`` = ``[[title, sentence index], ...]`` and ``context`` =
``[[title, [sentence, ...]], ...]``. Each context paragraph becomes a document (its sentences
joined); the gold path visits the supporting paragraphs in the order their titles first appear in
``supporting_facts``, each searched by its title. Sentence indices are checked to be integers but
not against the paragraph's length, because the published training file has a few that point past
the end. When two paragraphs of one question share a title, a supporting fact names the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gather_envs.corpus.datasets.common import (
    CONTAINER_ARRAY,
    DatasetFormat,
    FieldError,
    ParsedItem,
    as_object,
    check_int,
    check_list,
    check_str,
    join_sentences,
    optional_str,
    require_list,
    require_str,
)
from gather_envs.records.tasks import FAMILY_BRIDGE, FAMILY_COMPARISON

FORMAT_NAME = "hotpotqa"
ID_FIELD = "_id"
TYPE_FAMILIES = {"bridge": FAMILY_BRIDGE, "comparison": FAMILY_COMPARISON}


def parse_hotpot_layout(
    value: Any, format_name: str, type_families: Mapping[str, str]
) -> tuple[ParsedItem, Mapping[str, Any]]:
    """Validate an item in the HotpotQA layout (shared with 2WikiMultiHopQA); also returns the raw dict."""
    item = as_object(value)
    item_id = require_str(item, ID_FIELD)
    question = require_str(item, "question")
    answer = require_str(item, "answer")
    source_type = require_str(item, "type")
    if source_type not in type_families:
        raise FieldError("type", f"unknown type {source_type!r}; {format_name} has {sorted(type_families)}")
    level = optional_str(item, "level")
    paragraphs = _paragraphs(require_list(item, "context"))
    gold = _gold_paragraphs(require_list(item, "supporting_facts"), paragraphs)
    parsed = ParsedItem(
        item_id=item_id,
        question=question,
        answer=answer,
        aliases=(),
        family=type_families[source_type],
        source_type=source_type,
        level=level,
        paragraphs=paragraphs,
        gold=gold,
        supporting=gold,
    )
    return parsed, item


def _paragraphs(context: list[Any]) -> tuple[tuple[str, str], ...]:
    paragraphs = []
    for i, entry in enumerate(context):
        name = f"context[{i}]"
        if not isinstance(entry, list) or len(entry) != 2:
            raise FieldError(name, "expected [title, [sentence, ...]]")
        title = check_str(entry[0], f"{name}[0]")
        sentences = check_list(entry[1], f"{name}[1]", non_empty=False)
        for j, sentence in enumerate(sentences):
            check_str(sentence, f"{name}[1][{j}]", allow_empty=True)
        paragraphs.append((title, join_sentences(sentences)))
    return tuple(paragraphs)


def _gold_paragraphs(facts: list[Any], paragraphs: tuple[tuple[str, str], ...]) -> tuple[int, ...]:
    """Positions of the supporting paragraphs, in order of first appearance in supporting_facts."""
    position: dict[str, int] = {}
    for i, (title, _) in enumerate(paragraphs):
        position.setdefault(title, i)
    gold: dict[int, None] = {}
    for j, fact in enumerate(facts):
        name = f"supporting_facts[{j}]"
        if not isinstance(fact, list) or len(fact) != 2:
            raise FieldError(name, "expected [title, sentence index]")
        title = check_str(fact[0], f"{name}[0]")
        check_int(fact[1], f"{name}[1]")
        if title not in position:
            raise FieldError(f"{name}[0]", f"title {title!r} is not one of the context's paragraphs")
        gold.setdefault(position[title], None)
    return tuple(gold)


def parse_item(value: Any, position: int) -> ParsedItem:
    """One HotpotQA item."""
    del position
    return parse_hotpot_layout(value, FORMAT_NAME, TYPE_FAMILIES)[0]


FORMAT = DatasetFormat(
    name=FORMAT_NAME,
    env_id="Gather-HotpotQA-v0",
    id_field=ID_FIELD,
    parse=parse_item,
    type_families=TYPE_FAMILIES,
    default_family=FAMILY_BRIDGE,
    container=CONTAINER_ARRAY,
    file_hint=(
        "download hotpot_dev_distractor_v1.json (or hotpot_train_v1.1.json) from the HotpotQA site "
        "(https://hotpotqa.github.io)"
    ),
    example_file="hotpot_dev_distractor_v1.json",
)

__all__ = ["FORMAT", "parse_hotpot_layout", "parse_item"]
