"""2WikiMultiHopQA: HotpotQA's JSON layout with four question types and evidence triples.

Item layout: HotpotQA's (``_id``, ``question``, ``answer``, ``type``, ``supporting_facts``,
``context``) plus ``evidences`` = ``[[subject, relation, object], ...]``, kept in
``Task.meta["evidences"]``. Families: ``compositional`` and ``inference`` questions chain lookups
(the next search needs the previous answer), so they are ``bridge``; ``comparison`` and
``bridge_comparison`` questions compare entities named in the question, so they are
``comparison`` (``bridge_comparison`` first resolves each entity's relative, e.g. two films'
directors, then compares them: 4 supporting paragraphs and hops).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gather_envs.corpus.datasets.common import (
    CONTAINER_ARRAY,
    DatasetFormat,
    ParsedItem,
    check_list,
)
from gather_envs.corpus.datasets.hotpotqa import ID_FIELD, parse_hotpot_layout
from gather_envs.records.tasks import FAMILY_BRIDGE, FAMILY_COMPARISON

FORMAT_NAME = "2wiki"
TYPE_FAMILIES = {
    "compositional": FAMILY_BRIDGE,
    "inference": FAMILY_BRIDGE,
    "comparison": FAMILY_COMPARISON,
    "bridge_comparison": FAMILY_COMPARISON,
}


def parse_item(value: Any, position: int) -> ParsedItem:
    """One 2WikiMultiHopQA item."""
    del position
    parsed, item = parse_hotpot_layout(value, FORMAT_NAME, TYPE_FAMILIES)
    evidences = item.get("evidences")
    if evidences is None:
        return parsed
    check_list(evidences, "evidences", non_empty=False)
    return replace(parsed, meta={**parsed.meta, "evidences": evidences})


FORMAT = DatasetFormat(
    name=FORMAT_NAME,
    env_id="Gather-2Wiki-v0",
    id_field=ID_FIELD,
    parse=parse_item,
    type_families=TYPE_FAMILIES,
    default_family=FAMILY_BRIDGE,
    container=CONTAINER_ARRAY,
    file_hint=(
        "download data.zip from the 2WikiMultiHopQA repository (https://github.com/Alab-NII/2wikimultihop) "
        "and unpack dev.json"
    ),
    example_file="dev.json",
)
