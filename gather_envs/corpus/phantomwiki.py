"""PhantomWiki's generator output (``--article-format json --question-format json``) as a corpus.

``articles.json`` is a JSON list of ``{"title", "article", "facts"}`` (one article per person of the
universe; the title is the person's name and becomes the document id). ``questions.json`` is a JSON
list of ``{"id", "question", "answer" (a list of strings), "difficulty", "type", "template",
"prolog": {"query", "answer"}, "solution_traces"}``. Every question is a set task (all its answers
must be given); ``difficulty`` (PhantomWiki's count of reasoning steps, 0 for a question its
difficulty table does not score) becomes ``hops`` (at least 1), and a question of one hop is
``single-hop``, any other ``bridge``. PhantomWiki names no supporting articles, so there is no
per-question scope: search every article (``scope="world"``). A gold path is derived where the
question's template allows (:func:`derive_gold_path`): for "What is the job of the mother of Y?"
the article of Y names the mother (its sentence "The mother of Y is X."), so the path is the
article of Y, then the article of X; a question it cannot follow has no gold path.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from gather_envs.corpus.corpus import Corpus
from gather_envs.corpus.custom import set_answer_text
from gather_envs.errors import DataFileError
from gather_envs.json_files import read_json
from gather_envs.records.documents import Document
from gather_envs.records.tasks import FAMILY_BRIDGE, FAMILY_SINGLE_HOP, GoldStep, Task
from gather_envs.scoring.checkers import CHECKER_KEY, CHECKER_SET
from gather_envs.scoring.normalize import normalize_answer
from gather_envs.scoring.sets import ANSWER_SET_KEY

ARTICLES_FILE = "articles.json"
QUESTIONS_FILE = "questions.json"
PHANTOMWIKI_SPLIT = "test"
FILE_HINT = (
    "run PhantomWiki's generator with --article-format json --question-format json and pass its "
    "output directory (it holds articles.json and questions.json)"
)


_RELATION = re.compile(r"\bthe ([a-z][a-z -]*?) of ", re.IGNORECASE)
_NAME_SEPARATORS = re.compile(r",\s*(?:and\s+)?|\s+and\s+")


def derive_gold_path(question: str, articles: dict[str, str]) -> tuple[GoldStep, ...]:
    """The articles that answer ``question``, in order, read from the universe's own sentences.

    The question is a chain "the R1 of the R2 of ... Y" ending in a person Y with an article. Each
    inner relation is followed in the current people's articles ("The R of P is X." or "The Rs of
    P are X, Y and Z."); the path is Y's article, then those of the people each step reaches. The
    outermost relation's value is in the last articles read. Empty when the chain cannot be
    followed (no such sentence, a person without an article, another template).

    >>> derive_gold_path("Who is the mother of Bo?", {"Bo": "The mother of Bo is Al.", "Al": ""})
    (GoldStep(query='Bo', doc_id='Bo'),)
    """
    relations = [m.group(1).strip() for m in _RELATION.finditer(question)]
    if not relations:
        return ()
    tail = question[list(_RELATION.finditer(question))[-1].end() :].rstrip(" ?.")
    if tail not in articles:
        return ()
    people, path = [tail], [tail]
    for relation in reversed(relations[1:]):  # innermost first; the outermost is answered by reading
        reached: list[str] = []
        for person in people:
            reached.extend(_related(articles[person], relation, person, articles))
        if not reached:
            return ()
        people = list(dict.fromkeys(reached))
        path.extend(p for p in people if p not in path)
    return tuple(GoldStep(title, title) for title in path)


def _related(article: str, relation: str, person: str, articles: dict[str, str]) -> list[str]:
    """The people an article's sentence relates to ``person`` by ``relation`` (those with articles)."""
    sentence = re.compile(
        rf"\bThe {re.escape(relation)}(?:s|es)? of {re.escape(person)} (?:is|are) ([^.]+)\.", re.IGNORECASE
    )
    names: list[str] = []
    for match in sentence.finditer(article):
        names.extend(n.strip() for n in _NAME_SEPARATORS.split(match.group(1)) if n.strip() in articles)
    return names


def _read_list(path: Path) -> list[Any]:
    if not path.is_file():
        raise DataFileError(f"{path}: no such file; {FILE_HINT}")
    data = read_json(path, DataFileError)
    if not isinstance(data, list) or not data:
        raise DataFileError(f"{path}: must be a non-empty JSON list of objects; {FILE_HINT}")
    return data


def _field(path: Path, index: int, row: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(row, dict):
        raise DataFileError(f"{path}: item {index} must be a JSON object, got {type(row).__name__}")
    value = row.get(name)
    if name not in row or isinstance(value, bool) or not isinstance(value, kind):
        raise DataFileError(f"{path}: item {index} field {name!r} is missing or not {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "a string", int: "an int", list: "a list", dict: "an object"}[k] for k in kinds)


def read_phantomwiki(directory: Path) -> Corpus:
    """The corpus of one PhantomWiki output directory; every item is checked before any is used."""
    articles_path, questions_path = directory / ARTICLES_FILE, directory / QUESTIONS_FILE
    documents: list[Document] = []
    seen: set[str] = set()
    texts: dict[str, str] = {}
    for index, row in enumerate(_read_list(articles_path)):
        title = _field(articles_path, index, row, "title", str)
        article = _field(articles_path, index, row, "article", str)
        facts = _field(articles_path, index, row, "facts", list)
        if not title.strip() or title in seen:
            raise DataFileError(
                f"{articles_path}: item {index} field 'title' is empty or repeats {title!r:.60}"
            )
        if not all(isinstance(fact, str) for fact in facts):
            raise DataFileError(f"{articles_path}: item {index} field 'facts' must be a list of strings")
        seen.add(title)
        texts[title] = article
        documents.append(Document(title, title, article))
    tasks: list[Task] = []
    ids: set[str] = set()
    for index, row in enumerate(_read_list(questions_path)):
        task_id = _field(questions_path, index, row, "id", str)
        question = _field(questions_path, index, row, "question", str)
        answers = _field(questions_path, index, row, "answer", list)
        difficulty = _field(questions_path, index, row, "difficulty", int)
        kind = _field(questions_path, index, row, "type", int)
        template = _field(questions_path, index, row, "template", (list, str))
        prolog = _field(questions_path, index, row, "prolog", dict)
        if task_id in ids:
            raise DataFileError(f"{questions_path}: item {index} field 'id' repeats {task_id!r:.60}")
        if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
            raise DataFileError(
                f"{questions_path}: item {index} field 'answer' must be a non-empty list of strings"
            )
        blank = next((i for i, a in enumerate(answers) if not normalize_answer(a)), None)
        if blank is not None:
            raise DataFileError(
                f"{questions_path}: item {index} field 'answer'[{blank}] is {answers[blank]!r:.60}, which "
                "normalizes to the empty string, so any empty answer would match it"
            )
        if difficulty < 0:
            raise DataFileError(
                f"{questions_path}: item {index} field 'difficulty' must be >= 0, got {difficulty}"
            )
        hops = max(1, difficulty)
        ids.add(task_id)
        items = tuple(dict.fromkeys(answers))  # PhantomWiki lists each answer once; keep its order
        gold_path = derive_gold_path(question, texts)
        tasks.append(
            Task(
                task_id=task_id,
                question=question,
                answer=set_answer_text(items),
                aliases=(),
                family=FAMILY_SINGLE_HOP if hops == 1 else FAMILY_BRIDGE,
                hops=hops,
                gold_path=gold_path,
                supporting_doc_ids=tuple(step.doc_id for step in gold_path),
                kind=f"type{kind}",
                meta={
                    CHECKER_KEY: CHECKER_SET,
                    ANSWER_SET_KEY: list(items),
                    "difficulty": difficulty,
                    "template": template if isinstance(template, str) else " ".join(map(str, template)),
                    "prolog_query": prolog.get("query"),
                },
            )
        )
    knobs = {
        "format": "phantomwiki",
        "path": str(directory),
        "articles": len(documents),
        "questions": len(tasks),
    }
    return Corpus(f"phantomwiki:{directory.name}", documents, {PHANTOMWIKI_SPLIT: tasks}, knobs=knobs)


@functools.lru_cache(maxsize=4)
def _cached(directory: str, _stamp: tuple[Any, ...]) -> Corpus:
    return read_phantomwiki(Path(directory))


def load_phantomwiki(path: str) -> Corpus:
    """``read_phantomwiki``, cached per process by the files' paths, sizes and modification times."""
    directory = Path(path).expanduser().resolve()
    if not directory.is_dir():
        raise DataFileError(f"{directory}: no such directory; {FILE_HINT}")
    files = [directory / ARTICLES_FILE, directory / QUESTIONS_FILE]
    stamp = tuple((f.stat().st_size, f.stat().st_mtime_ns) if f.is_file() else None for f in files)
    return _cached(str(directory), stamp)
