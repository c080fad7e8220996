"""The ``heuristic`` agent: a seeded, stochastic searcher that reads only the question and observations.

It takes the capitalized names of the question, searches one, follows a name from the retrieved
document (favouring sentences that share words with the question), and answers with a name,
number or yes/no drawn from what it found. Its success grows with the budget T on bridge tasks
and with k, so its PASS@(k,T) curves show the metric working. A "whichever of X and Y" question
it parses with the published question and sentence templates (as a rule-based reader would):
it searches X and Y, reads their years off their documents, picks the winner by the comparison
word and reads the asked fact from the winner's document; short of evidence it answers with what
it has (the fact of the one entity it read).
"""


from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gather_envs.agents.base import Agent, EpisodePolicy, register_agent
from gather_envs.agents.scripted import NO, NUMBER, UNKNOWN_ANSWER, WORD, YES, action_text, parse_options
from gather_envs.envs.actions import ANSWER, SEARCH
from gather_envs.parameters import Parameter
from gather_envs.tasks.comparison import SELECTORS
from gather_envs.world.schema import ATTRIBUTES_BY_NAME, RELATIONS, Attribute, Relation

RELATION_BOOST = 4.0  # extra weight per question word shared with a sentence
EXPLORE_PROBABILITY = 0.2  # chance to follow or read a value from any seen document, not the focus one
PLAN_NOISE = (-1, 0, 0, 1)  # added to the planned number of lookups (drawn uniformly)
STEM_LENGTH = 5  # words match when their first STEM_LENGTH letters agree ("founded" ~ "founder")
PARTIAL_QUERY_PROBABILITY = 0.5  # chance a search uses only some words of the name it looks for

_NAME = re.compile(r"[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")
_DOCUMENT_LINE = re.compile(r"^\s*(?:\d+\.\s+)?\[([^\]\n]+)\]\s*(.*)$", re.MULTILINE)
_ARTICLE = re.compile(r"^(?:the|a|an)\s+")  # the lower-case article of a mid-sentence reference
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")  # a line break ends a sentence too (PhantomWiki)
_RESULTS_HEADER = "Results for search["
_BUDGET_FOOTER = re.compile(r"^Searches left: \d+\.$")
_SEVERAL_ANSWERS = "This question has several answers"
_FACT_SENTENCE = re.compile(r"The (?P<r>[\w -]+?) of (?P<s>.+?) (?:is|are) (?P<v>[^.]+)\.")
"""PhantomWiki's fact phrasing ("The job of X is potter.", "The children of X are A, B and C.")."""
_VALUE_SEPARATORS = re.compile(r",\s*(?:and\s+)?|\s+and\s+")
SET_JOINER = "; "
_HOP_MARKER = re.compile(r"\bof (?=the\b|[A-Z])|\bwhere\b|\bin which\b|\bthat\b|\bthe person the\b")
_YES_NO_START = re.compile(r"^(was|were|is|are|do|does|did|has|have|had)\b", re.IGNORECASE)
_NUMBER_QUESTION = re.compile(r"\b(what year|which year|how many|how much|population|area)\b", re.I)

# Words that never start a name: question words, articles, pronouns and common sentence openers.
_NOT_NAME = frozenset(
    # question words, articles, pronouns, conjunctions
    ("a", "an", "the", "in", "on", "at", "of", "for", "to", "by", "with", "from", "what", "which")
    + ("who", "whom", "whose", "where", "when", "why", "how", "was", "were", "is", "are", "do")
    + ("does", "did", "has", "have", "had", "and", "or", "but", "if", "it", "its", "this", "that")
    + ("these", "those", "there", "they", "he", "she", "his", "her", "their", "no", "yes")
    # quantifiers and nouns that often open a sentence
    + ("some", "many", "several", "little", "local", "records", "visitors", "one", "each", "every")
)
# Question words that carry no relation meaning.
_QUESTION_STOP = _NOT_NAME | frozenset(
    ("same", "year", "many", "much", "square", "kilometres", "kilometers", "first", "before")
    + ("after", "earlier", "later", "apart")
)


def _template_pattern(template: str, groups: dict[str, str]) -> re.Pattern[str]:
    """A pattern matching ``template`` with each ``{field}`` replaced by the regex ``groups[field]``."""
    parts = re.split(r"(\{\w+\})", template)
    return re.compile("".join(groups[p[1:-1]] if p[:1] == "{" else re.escape(p) for p in parts))


@dataclass(frozen=True)
class _SelectQuestion:
    """A parsed "fact of whichever of two entities wins a year comparison" question."""

    relation: Relation
    attribute: Attribute
    later: bool  # the winner has the later year (last, later, younger)
    pattern: re.Pattern[str]  # the whole question, with groups a and b for the two names


def _select_questions() -> tuple[_SelectQuestion, ...]:
    """Every select-question shape: a relation phrase around a year selector of its subject type."""
    shapes = []
    for attribute_name, selectors in SELECTORS.items():
        attribute = ATTRIBUTES_BY_NAME[attribute_name]
        for later, selector in enumerate(selectors):
            inner = _template_pattern(selector, {"a": "(?P<a>.+?)", "b": "(?P<b>.+?)"}).pattern
            for relation in RELATIONS:
                if relation.subject == attribute.entity:
                    phrase = _template_pattern(relation.phrase, {"s": inner}).pattern
                    pattern = re.compile(rf"(?:Who|What) is {phrase}\?", re.IGNORECASE)
                    shapes.append(_SelectQuestion(relation, attribute, bool(later), pattern))
    return tuple(shapes)


_SELECT_QUESTIONS = _select_questions()
_SUBJECT_GROUPS = {"s": "(?P<s>.+?)", "o": "(?P<o>.+?)", "v": r"(?P<v>\d[\d,]*)"}
_SENTENCE_PATTERNS = {
    item.name: tuple(_template_pattern(t, _SUBJECT_GROUPS) for t in item.sentences)
    for item in (*RELATIONS, *ATTRIBUTES_BY_NAME.values())
}


def _read_fact(text: str, name: str, fact: str) -> str | None:
    """The value of relation or attribute ``fact`` of entity ``name`` in a document's ``text``."""
    for sentence in _SENTENCE_END.split(text):
        for pattern in _SENTENCE_PATTERNS[fact]:
            match = pattern.fullmatch(sentence.strip())
            if match and _key(match.group("s")) == _key(name):
                return match.group("v" if "v" in pattern.groupindex else "o")
    return None


def _stems(text: str) -> set[str]:
    return {w[:STEM_LENGTH] for w in WORD.findall(text.lower())}


def _key(name: str) -> str:
    """A name's comparison key: lower case, no leading article."""
    words = name.lower().split()
    while words and words[0] in ("the", "a", "an"):
        words = words[1:]
    return " ".join(words)


def _names(sentence: str, common: set[str]) -> list[str]:
    """Capitalized word runs, without leading function words or common words that open sentences."""
    names = []
    for match in _NAME.finditer(sentence):
        words = match.group(0).split()
        while words and (words[0].lower() in _NOT_NAME or words[0].lower() in common):
            words = words[1:]
        if words:
            names.append(" ".join(words))
    return names


@dataclass
class _Evidence:
    """What the heuristic has read: documents by title key, in the order seen."""

    docs: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (title, text)
    common: set[str] = field(default_factory=set)  # words seen in lower case

    def absorb(self, observation: str) -> list[str]:
        """Store the documents of an observation; return their keys in rank order."""
        keys = []
        for title, text in _documents(observation):
            key = _key(title)
            self.docs.setdefault(key, (title, text))
            keys.append(key)
            self.common.update(w for w in WORD.findall(text) if w.islower())
        return keys


def _documents(observation: str) -> list[tuple[str, str]]:
    """(title, text) of each document shown; in search results a text may run over several lines
    (a PhantomWiki article is markdown: a heading, then one fact per line), up to the next document
    or the budget line."""
    found = [list(pair) for pair in _DOCUMENT_LINE.findall(observation)]
    if not observation.startswith(_RESULTS_HEADER) or not found:
        return [(title, text) for title, text in found]
    found, current = [], None
    for line in observation.splitlines()[1:]:
        start = _DOCUMENT_LINE.fullmatch(line)
        if start:
            current = [start.group(1), start.group(2)]
            found.append(current)
        elif current is not None and not _BUDGET_FOOTER.match(line.strip()):
            current[1] += "\n" + line
    return [(title, text) for title, text in found]


def _fact_values(sentence: str, title: str) -> list[str]:
    """The values of a "The R of <title> is/are V." sentence, lower-case ones included."""
    match = _FACT_SENTENCE.fullmatch(sentence.strip())
    if match is None or _key(match.group("s")) != _key(title):
        return []
    return [v.strip() for v in _VALUE_SEPARATORS.split(match.group("v")) if v.strip()]


class HeuristicAgent(Agent):
    """A seeded stochastic searcher that follows names from the question through the results."""

    agent_id = "heuristic"
    options = (
        Parameter(
            "relation_boost",
            float,
            RELATION_BOOST,
            minimum=0.0,
            help="extra weight per question word a sentence shares",
        ),
        Parameter(
            "explore_probability",
            float,
            EXPLORE_PROBABILITY,
            minimum=0.0,
            maximum=1.0,
            help="chance to read any seen document instead of the focus one",
        ),
    )

    def __init__(self, env: Any, **options: Any) -> None:
        values = parse_options(self, options)
        self.relation_boost: float = values["relation_boost"]
        self.explore_probability: float = values["explore_probability"]
        self.dialect: str = env.dialect

    def settings(self) -> dict[str, Any]:
        return {
            "agent": self.agent_id,
            "dialect": self.dialect,
            "relation_boost": self.relation_boost,
            "explore_probability": self.explore_probability,
            "plan_noise": list(PLAN_NOISE),
        }

    def start(self, seed: int) -> EpisodePolicy:
        return _HeuristicPolicy(np.random.default_rng(seed), self)


class _HeuristicPolicy(EpisodePolicy):
    def __init__(self, rng: np.random.Generator, agent: HeuristicAgent) -> None:
        self._rng = rng
        self._agent = agent
        self._evidence = _Evidence()
        self._question = ""
        self._relation: set[str] = set()
        self._targets: list[str] = []  # comparison: the question's names still to resolve
        self._resolved: list[str] = []  # keys of the documents the chain has reached
        self._pending: str | None = None  # the name searched by the last action
        self._retried = False  # whether the pending name was already searched again in full
        self._plan = 0
        self._searches = 0
        self._select: _SelectQuestion | None = None
        self._several = False  # a set question: answer every name of the sentence read

    # The episode: read the question, then per observation resolve the last search and move on.

    def act(self, observation: str, info: dict[str, Any]) -> str:
        ranked = self._evidence.absorb(observation)
        if not self._question:
            self._start(observation)
        left = int(info.get("tool_calls_left", 0))
        if self._pending is not None:
            name, self._pending = self._pending, None
            if _key(name) in ranked:
                self._resolved.append(_key(name))
            elif left > 0 and not self._retried:  # a look-alike came back: search the full name
                self._retried = True
                return self._search(name, full=True)
            elif ranked:
                self._resolved.append(ranked[0])
        while len(self._resolved) < self._plan:
            name = self._next_name()
            if name is None:
                break
            if _key(name) in self._evidence.docs:  # already read: follow it for free
                self._resolved.append(_key(name))
                continue
            if left <= 0:
                break
            self._retried = False
            return self._search(name, full=False)
        return action_text(self._agent.dialect, ANSWER, self._answer())

    def _search(self, name: str, full: bool) -> str:
        """Search ``name``, sometimes with only some of its words (as a careless searcher would)."""
        self._pending = name
        self._searches += 1
        words = name.split()
        if not full and len(words) > 1 and self._rng.random() < PARTIAL_QUERY_PROBABILITY:
            keep = self._rng.random(len(words)) < 0.5
            keep[int(self._rng.integers(len(words)))] = True
            words = [w for w, k in zip(words, keep, strict=True) if k]
        return action_text(self._agent.dialect, SEARCH, " ".join(words))

    def usage(self) -> dict[str, Any]:
        return {"searches": self._searches}

    def _start(self, observation: str) -> None:
        self._several = _SEVERAL_ANSWERS in observation
        for line in observation.splitlines():
            if line.startswith("Question:"):
                self._question = line[len("Question:") :].strip()
        names = _names(self._question, set())
        name_words = {w.lower() for name in names for w in name.split()}
        words = [w for w in WORD.findall(self._question.lower()) if w not in _QUESTION_STOP]
        self._relation = {w[:STEM_LENGTH] for w in words if w not in name_words and not w.isdigit()}
        self._select, pair = _parse_select(self._question)
        if pair:  # a fact of whichever of two entities wins: look up both, then read the winner's fact
            self._targets = list(pair)
            self._plan = len(pair)
            return
        if len(names) >= 2:  # a comparison: look up each named entity
            self._targets = list(names)
            lookups = len(self._targets)
        else:  # a chain: about one lookup per relation phrase
            self._targets = names[:1]
            lookups = len(_HOP_MARKER.findall(self._question))
        self._plan = max(1, lookups + int(self._rng.choice(PLAN_NOISE)))

    def _next_name(self) -> str | None:
        if self._targets and (len(self._targets) > 1 or not self._resolved):
            # comparison targets, or the first hop of a chain: names from the question
            index = len(self._resolved)
            return self._targets[index] if index < len(self._targets) else None
        focus = self._resolved[-1] if self._resolved else None
        if focus is None:
            return None
        if self._rng.random() < self._agent.explore_probability:
            keys = list(self._evidence.docs)
            focus = keys[int(self._rng.integers(len(keys)))]
        visited = set(self._resolved)
        candidates = [
            (name, weight) for name, weight in self._weighted(focus, kind="name") if _key(name) not in visited
        ]
        return self._draw(candidates)

    # Reading documents.

    def _weighted(self, key: str, kind: str) -> list[tuple[str, float]]:
        """Names (or numbers) in a document, weighted by the question words their sentence shares."""
        title, text = self._evidence.docs[key]
        found = []
        for sentence in _SENTENCE_END.split(text):
            if sentence.startswith("#"):  # a markdown heading names no fact
                continue
            weight = 1.0 + self._agent.relation_boost * len(self._relation & _stems(sentence))
            if kind == "number":
                values = NUMBER.findall(sentence)
            else:
                values = [n for n in _names(sentence, self._evidence.common) if _key(n) != _key(title)]
                if not values and "\n" in text:  # a markdown article (PhantomWiki): read its phrasing
                    values = _fact_values(sentence, title)
            found.extend((value, weight) for value in values)
        return found

    def _draw(self, candidates: list[tuple[str, float]]) -> str | None:
        if not candidates:
            return None
        weights = np.array([w for _, w in candidates], dtype=float)
        index = int(self._rng.choice(len(candidates), p=weights / weights.sum()))
        return candidates[index][0]

    def _value(self, key: str | None, kind: str) -> str | None:
        """A value read from document ``key`` (sometimes, by a slip of attention, from another)."""
        if key is None or key not in self._evidence.docs:
            return None
        if self._rng.random() < self._agent.explore_probability:
            keys = list(self._evidence.docs)
            key = keys[int(self._rng.integers(len(keys)))]
        return self._draw(self._weighted(key, kind))

    # Answering.

    def _answer(self) -> str:
        question = self._question.lower()
        yes_no = bool(_YES_NO_START.match(self._question))
        numeric = bool(_NUMBER_QUESTION.search(question)) or "apart" in question
        if self._select is not None:
            return self._select_answer(self._select)
        if len(self._targets) >= 2:
            return self._compare(question, yes_no)
        focus = self._resolved[-1] if self._resolved else None
        if yes_no:
            return [YES, NO][int(self._rng.integers(2))]
        if self._several and not numeric:
            return self._every_name(focus)
        value = self._value(focus, "number" if numeric else "name")
        return value if value is not None else UNKNOWN_ANSWER

    def _every_name(self, key: str | None) -> str:
        """Every name of one drawn sentence of document ``key`` (PhantomWiki's "The children of X
        are A, B and C."), for a question that wants all its answers."""
        if key is None or key not in self._evidence.docs:
            return UNKNOWN_ANSWER
        name = self._draw(self._weighted(key, "name"))
        if name is None:
            return UNKNOWN_ANSWER
        title, text = self._evidence.docs[key]
        for sentence in _SENTENCE_END.split(text):
            names = [n for n in _names(sentence, self._evidence.common) if _key(n) != _key(title)]
            names = names or (_fact_values(sentence, title) if "\n" in text else [])
            if name in names:
                return SET_JOINER.join(dict.fromkeys(names))
        return name

    def _select_answer(self, select: _SelectQuestion) -> str:
        """The asked fact of the entity whose year wins; of the one entity read when the other is not."""
        years = {}
        for name in self._targets:
            document = self._evidence.docs.get(_key(name))
            year = None if document is None else _read_fact(document[1], name, select.attribute.name)
            if year is not None:
                years[name] = int(year.replace(",", ""))
        if not years:
            return UNKNOWN_ANSWER
        pick = max if select.later else min
        winner = pick(years, key=lambda name: years[name])
        fact = _read_fact(self._evidence.docs[_key(winner)][1], winner, select.relation.name)
        if fact is None:  # the relation sentence is not in the document as read: guess from it
            fact = self._value(_key(winner), "name")
        return fact if fact is not None else UNKNOWN_ANSWER

    def _compare(self, question: str, yes_no: bool) -> str:
        """Answer a two-entity question from one drawn value per entity (a guess when one is missing)."""
        same = "same" in question
        kind = "name" if same else "number"
        values = [self._value(key, kind) for key in self._resolved[:2]]
        if len(values) < 2 or None in values:
            if yes_no:
                return [YES, NO][int(self._rng.integers(2))]
            return str(int(self._rng.integers(1, 100)))
        a, b = values
        assert a is not None and b is not None
        if same:
            return YES if _key(a) == _key(b) else NO
        x, y = (int(v.replace(",", "")) for v in (a, b))
        if not yes_no:
            return str(abs(x - y))
        later = any(word in question for word in ("after", "later", "younger"))
        return YES if (x > y if later else x < y) else NO


def _parse_select(question: str) -> tuple[_SelectQuestion | None, tuple[str, str] | None]:
    """The shape and the two entity names of a select question; ``(None, None)`` for other questions."""
    for shape in _SELECT_QUESTIONS:
        match = shape.pattern.fullmatch(question)
        if match:
            a, b = (_ARTICLE.sub("", match.group(g)) for g in ("a", "b"))
            return shape, (a, b)
    return None, None


register_agent(HeuristicAgent.agent_id, HeuristicAgent)
