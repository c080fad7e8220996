"""Answer scoring: normalization, EM/F1 and the per-task checkers (records only below it)."""

from gather_envs.scoring.checkers import CHECKER_EXACT, CHECKER_KEY, CHECKER_MATH, CHECKERS, answer_is_correct
from gather_envs.scoring.normalize import answer_in_text, exact_match, f1_score, normalize_answer

__all__ = [
    "CHECKERS",
    "CHECKER_EXACT",
    "CHECKER_KEY",
    "CHECKER_MATH",
    "answer_in_text",
    "answer_is_correct",
    "exact_match",
    "f1_score",
    "normalize_answer",
]
