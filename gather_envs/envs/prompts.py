"""The text the env shows: the task prompt, search results and error messages.

Agents read the action syntax and the budget from these observations, so agent and env
never disagree about the grammar.
"""

from __future__ import annotations

from collections.abc import Sequence

from gather_envs.records.documents import Document

SYNTAX = {
    "react": ("search[<query>]", "answer[<answer>]"),
    "tags": ("<search><query></search>", "<answer><answer></answer>"),
    "json": (
        '{"name": "search", "arguments": {"query": "<query>"}}',
        '{"name": "answer", "arguments": {"answer": "<answer>"}}',
    ),
}
SET_ANSWER_HINTS = {
    "react": "This question has several answers: give all of them in one answer, separated by ';' (answer[A; B]).",
    "tags": "This question has several answers: give all of them in one answer, separated by ';' (<answer>A; B</answer>).",
    "json": 'This question has several answers: give all of them as one JSON list ({"answer": ["A", "B"]}).',
}
"""Shown under the question of a set-valued task (every item must be given)."""
MAX_ECHO = 120  # characters of an agent's text repeated back in an observation


def action_help(dialect: str, searches_allowed: bool) -> str:
    """The lines that tell an agent which actions exist and how to write them."""
    search, answer = SYNTAX[dialect]
    lines = []
    if searches_allowed:
        lines.append(f"  {search}  searches the documents and returns the best matches")
    lines.append(f"  {answer}  gives your final answer and ends the episode")
    return "Reply with exactly one action:\n" + "\n".join(lines)


def budget_line(left: int) -> str:
    return f"Searches left: {left}."


def task_prompt(
    question: str,
    dialect: str,
    budget: int,
    show_budget: bool,
    context: Sequence[Document] = (),
    set_answer: bool = False,
) -> str:
    """The first observation: (context documents), the question, (the set-answer hint), the actions, the budget."""
    parts = []
    if context:
        parts.append("Documents:\n" + "\n".join(doc.render() for doc in context))
    parts.append(f"Question: {question}")
    if set_answer:
        parts.append(SET_ANSWER_HINTS[dialect])
    if budget > 0:
        parts.append(f"You may search at most {budget} time{'s' if budget != 1 else ''}.")
    else:
        parts.append(
            "No searches are available: answer from what you know"
            + (" and the documents." if context else ".")
        )
    parts.append(action_help(dialect, budget > 0))
    if show_budget and budget > 0:
        parts.append(budget_line(budget))
    return "\n".join(parts)


def search_result(query: str, documents: Sequence[Document], left: int, show_budget: bool) -> str:
    """The observation after a search: the numbered documents, then the remaining budget."""
    header = f"Results for search[{echo(query)}]:"
    if documents:
        body = "\n".join(f"{i}. {doc.render()}" for i, doc in enumerate(documents, start=1))
    else:
        body = "No document matches these words."
    lines = [header, body]
    if show_budget:
        lines.append(budget_line(left))
    return "\n".join(lines)


def error_message(problem: str, dialect: str, searches_allowed: bool, invalid_left: int) -> str:
    """The observation for an invalid action: what was wrong and what is allowed."""
    return f"{invalid_call(problem)}\n{invalid_tail(dialect, searches_allowed, invalid_left)}"


def invalid_call(problem: str) -> str:
    """One invalid call's line in the observation of a turn with several calls."""
    return f"Invalid action: {problem}. No search was used."


def invalid_tail(dialect: str, searches_allowed: bool, invalid_left: int) -> str:
    """What follows the invalid calls of a turn: the allowed actions and the invalid actions left."""
    return f"{action_help(dialect, searches_allowed)}\nInvalid actions allowed before the episode ends: {invalid_left}."


def ignored_calls(count: int, reason: str) -> str:
    """The line that says how many calls of a reply the env did not take, and why."""
    return f"{count} call{'s' if count != 1 else ''} {reason} {'were' if count != 1 else 'was'} ignored."


def echo(text: str) -> str:
    """Agent text shortened for repeating back in an observation."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 1] + "…"
