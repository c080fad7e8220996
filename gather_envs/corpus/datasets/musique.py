"""MuSiQue: JSON lines; each question brings 20 paragraphs and its decomposition into single hops.

Item layout: ``id``, ``question``, ``answer``, ``answer_aliases``, ``answerable``, ``paragraphs`` =
``[{idx, title, paragraph_text, is_supporting}, ...]`` and ``question_decomposition`` =
``[{id, question, answer, paragraph_support_idx}, ...]``. Every question is ``bridge`` (each
sub-question uses the previous answer). The gold path follows the decomposition: step i searches
the title of paragraph ``paragraph_support_idx`` (a paragraph used twice is searched once);
supporting paragraphs the decomposition does not name are appended to ``supporting_doc_ids``.
``type`` is the hop pattern from the id (``2hop``, ``3hop1``, ``4hop3``, ...). Unanswerable
questions (``answerable: false``, in MuSiQue-Full) have no gold path and are left out, counted in
the corpus knobs as ``excluded``.
"""

from __future__ import annotations

from typing import Any

from gather_envs.corpus.datasets.common import (
    CONTAINER_LINES,
    DatasetFormat,
    FieldError,
    ParsedItem,
    as_object,
    check_int,
    check_list,
    check_str,
    require_list,
    require_str,
    type_name,
)
from gather_envs.records.tasks import FAMILY_BRIDGE

FORMAT_NAME = "musique"
ID_FIELD = "id"
HOP_SEPARATOR = "__"
DEFAULT_TYPE = "musique"


def parse_item(value: Any, position: int) -> ParsedItem | None:
    """One MuSiQue item; None for an unanswerable one."""
    del position
    item = as_object(value)
    item_id = require_str(item, ID_FIELD)
    answerable = item.get("answerable", True)
    if not isinstance(answerable, bool):
        raise FieldError("answerable", f"expected true or false, got {type_name(answerable)}")
    if not answerable:
        return None
    question = require_str(item, "question")
    answer = require_str(item, "answer")
    aliases = check_list(item.get("answer_aliases", []), "answer_aliases", non_empty=False)
    for j, alias in enumerate(aliases):
        check_str(alias, f"answer_aliases[{j}]")
    paragraphs, by_idx, supporting = _paragraphs(require_list(item, "paragraphs"))
    steps = require_list(item, "question_decomposition")
    gold: dict[int, None] = {}
    decomposition = []
    for j, step in enumerate(steps):
        name = f"question_decomposition[{j}]"
        step = as_object(step, name)
        support = step.get("paragraph_support_idx")
        decomposition.append({"question": step.get("question"), "answer": step.get("answer")})
        if support is None:
            continue
        check_int(support, f"{name}.paragraph_support_idx")
        if support not in by_idx:
            raise FieldError(f"{name}.paragraph_support_idx", f"no paragraph has idx {support}")
        gold.setdefault(by_idx[support], None)
    if not gold:
        raise FieldError("question_decomposition", "no step names a supporting paragraph")
    hop_type = item_id.split(HOP_SEPARATOR, 1)[0] if HOP_SEPARATOR in item_id else DEFAULT_TYPE
    return ParsedItem(
        item_id=item_id,
        question=question,
        answer=answer,
        aliases=tuple(aliases),
        family=FAMILY_BRIDGE,
        source_type=hop_type,
        level=None,
        paragraphs=paragraphs,
        gold=tuple(gold),
        supporting=tuple(dict.fromkeys([*gold, *supporting])),
        meta={"decomposition": decomposition},
    )


def _paragraphs(
    entries: list[Any],
) -> tuple[tuple[tuple[str, str], ...], dict[int, int], list[int]]:
    """(title, text) pairs, idx -> position, and the positions marked ``is_supporting``."""
    paragraphs = []
    by_idx: dict[int, int] = {}
    supporting = []
    for i, entry in enumerate(entries):
        name = f"paragraphs[{i}]"
        entry = as_object(entry, name)
        idx = check_int(require_field(entry, "idx", name), f"{name}.idx")
        if idx in by_idx:
            raise FieldError(f"{name}.idx", f"idx {idx} is used twice")
        by_idx[idx] = i
        title = check_str(require_field(entry, "title", name), f"{name}.title")
        text = check_str(
            require_field(entry, "paragraph_text", name), f"{name}.paragraph_text", allow_empty=True
        )
        is_supporting = entry.get("is_supporting", False)
        if not isinstance(is_supporting, bool):
            raise FieldError(
                f"{name}.is_supporting", f"expected true or false, got {type_name(is_supporting)}"
            )
        if is_supporting:
            supporting.append(i)
        paragraphs.append((title, text.strip()))
    return tuple(paragraphs), by_idx, supporting


def require_field(entry: Any, key: str, name: str) -> Any:
    """A required key of a nested object, named ``<name>.<key>`` when missing."""
    if key not in entry:
        raise FieldError(f"{name}.{key}", "missing")
    return entry[key]


FORMAT = DatasetFormat(
    name=FORMAT_NAME,
    env_id="Gather-MuSiQue-v0",
    id_field=ID_FIELD,
    parse=parse_item,
    type_families=None,
    default_family=FAMILY_BRIDGE,
    container=CONTAINER_LINES,
    file_hint=(
        "download the MuSiQue data with download_data.sh from the MuSiQue repository "
        "(https://github.com/StonyBrookNLP/musique) and use musique_ans_v1.0_dev.jsonl"
    ),
    example_file="musique_ans_v1.0_dev.jsonl",
)
