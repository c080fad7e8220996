"""MATH-500-style static problems: JSON lines with ``problem`` and a LaTeX ``answer``.

Item layout: ``problem``, ``answer`` (LaTeX, e.g. ``\\frac{14}{3}``), and optionally ``subject``,
``level`` (1-5) and ``unique_id`` (e.g. ``test/precalculus/807.json``), as in MATH-500's
``test.jsonl``. Each problem is a ``static`` task (closed-book, T = 0, no documents) whose
``meta["checker"]`` is ``"math"``, so the env scores answers with
:func:`~gather_envs.scoring.checkers.math_equal` instead of string equality. ``type`` is
the subject; an item without ``unique_id`` gets the id ``math-<position>``.
"""

from __future__ import annotations

from typing import Any

from gather_envs.corpus.datasets.common import (
    CONTAINER_LINES,
    DatasetFormat,
    FieldError,
    ParsedItem,
    as_object,
    optional_str,
    require_str,
    type_name,
)
from gather_envs.records.tasks import FAMILY_STATIC
from gather_envs.scoring.checkers import CHECKER_KEY, CHECKER_MATH

FORMAT_NAME = "math500"
ID_FIELD = "unique_id"
DEFAULT_SUBJECT = "math"
ID_PREFIX = "math-"


def parse_item(value: Any, position: int) -> ParsedItem:
    """One MATH-500 problem."""
    item = as_object(value)
    item_id = optional_str(item, ID_FIELD) or f"{ID_PREFIX}{position}"
    problem = require_str(item, "problem")
    answer = require_str(item, "answer")
    subject = optional_str(item, "subject") or DEFAULT_SUBJECT
    level = item.get("level")
    if level is not None and (isinstance(level, bool) or not isinstance(level, int | str)):
        raise FieldError("level", f"expected an integer or a string, got {type_name(level)}")
    return ParsedItem(
        item_id=item_id,
        question=problem,
        answer=answer,
        aliases=(),
        family=FAMILY_STATIC,
        source_type=subject,
        level=None if level is None else str(level),
        paragraphs=(),
        gold=(),
        supporting=(),
        meta={CHECKER_KEY: CHECKER_MATH},
    )


FORMAT = DatasetFormat(
    name=FORMAT_NAME,
    env_id="Gather-Math-v0",
    id_field=ID_FIELD,
    parse=parse_item,
    type_families=None,
    default_family=FAMILY_STATIC,
    container=CONTAINER_LINES,
    file_hint=(
        "download test.jsonl of the MATH-500 dataset (HuggingFaceH4/MATH-500 on the Hugging Face hub, "
        "or prm800k/math_splits/test.jsonl in https://github.com/openai/prm800k)"
    ),
    example_file="test.jsonl",
)
