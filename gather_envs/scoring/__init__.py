"""Answer scoring: normalization, EM/F1 and the per-task checkers (records only below it)."""

from gather_envs.scoring.checkers import (
    CHECKER_EXACT,
    CHECKER_KEY,
    CHECKER_MATH,
    CHECKER_SET,
    CHECKERS,
    answer_covers,
    answer_f1,
    answer_is_correct,
    blank_gold_field,
)
from gather_envs.scoring.normalize import answer_in_text, exact_match, f1_score, normalize_answer
from gather_envs.scoring.sets import ANSWER_SET_KEY, answer_items, set_equal, set_f1

__all__ = [
    "ANSWER_SET_KEY",
    "CHECKERS",
    "CHECKER_EXACT",
    "CHECKER_KEY",
    "CHECKER_MATH",
    "CHECKER_SET",
    "answer_covers",
    "answer_f1",
    "answer_in_text",
    "answer_items",
    "answer_is_correct",
    "blank_gold_field",
    "exact_match",
    "f1_score",
    "normalize_answer",
    "set_equal",
    "set_f1",
]
