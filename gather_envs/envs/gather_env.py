"""The Gather environment: answer a question by searching a corpus within a tool-call budget T.

One job, one module: about a quarter of it is the env's contract (the class docstring, which the
docs and tests are held to), the rest the episode rules that contract states.
"""

from __future__ import annotations

import weakref
from typing import Any

import gymnasium as gym

from gather_envs.corpus.corpus import Corpus, index_text
from gather_envs.envs import prompts
from gather_envs.envs.actions import ANSWER, DIALECTS, INVALID, SEARCH, Action, parse_calls
from gather_envs.envs.sources import resolve_corpus, resolve_index
from gather_envs.envs.spaces import MAX_ACTION_LENGTH, action_space, charset_for, fit, observation_space
from gather_envs.errors import ConfigError, EnvStateError, RetrieverError
from gather_envs.records.documents import Document
from gather_envs.records.episodes import REWARD_KIND_EM
from gather_envs.records.tasks import FAMILIES, FAMILY_STATIC, Task
from gather_envs.retrieval import BM25Index, get_index, tokenize
from gather_envs.retrieval.remote import RemoteHit, RemoteRetriever
from gather_envs.scoring.checkers import CHECKER_KEY, CHECKER_SET, answer_covers, answer_f1, answer_is_correct

REWARD_CORRECT = 1.0
REWARD_WRONG = 0.0
DEFAULT_MAX_TOOL_CALLS = 5
MAX_TOOL_CALLS = 100
"""The largest budget T (env, reset option and CLI alike): the study's grid stops at 5, so more is a typo."""
DEFAULT_TOP_K = 3
DEFAULT_MAX_INVALID_ACTIONS = 2
SCOPE_WORLD = "world"
SCOPE_DISTRACTOR = "distractor"
SCOPE_OPEN = "open"
SCOPES = (SCOPE_WORLD, SCOPE_DISTRACTOR, SCOPE_OPEN)  # the one scope vocabulary, synthetic and dataset envs alike

REWARD_EM = REWARD_KIND_EM
REWARD_F1 = "f1"
REWARD_COVER_EM = "cover_em"
REWARD_KINDS = (REWARD_EM, REWARD_F1, REWARD_COVER_EM)
DEFAULT_REWARD = REWARD_EM

TERMINATION_ANSWERED = "answered"
TERMINATION_INVALID = "invalid_actions"
TERMINATION_MAX_TURNS = "max_turns"

IGNORED_AFTER_ANSWER = "after the answer"
IGNORED_AFTER_OBSERVATION = "after a made-up observation"
MAX_REPORTED_INVALID = 5
"""Invalid calls of one turn shown line by line in the observation; the rest are counted."""


class GatherEnv(gym.Env[str, str]):
    r"""Search a corpus with text actions and answer one question; reward 1 for a correct answer.

    ## Description

    Each episode is one question about a synthetic world (or a dataset) whose documents are
    searched with BM25. The agent replies in text: it searches, reads the results, and gives one
    final answer. A budget of ``T`` searches (``max_tool_calls``) separates the *static* setting
    (``T = 0``: answer from the question, plus the context documents of the static family) from
    the *sequential* one, where each search may depend on what the previous ones returned.

    ## Action space

    A ``Text`` space (``MAX_ACTION_LENGTH`` characters): one reply of the model, in any of the
    three dialects (the prompt shows the one ``dialect`` picks; every env accepts all three):

    - ``react``: ``search[query]`` and ``answer[text]`` (``finish[text]`` is ReAct's spelling);
    - ``tags`` (Search-R1): ``<search>query</search>`` and ``<answer>text</answer>``;
    - ``json``: ``{"name": "search", "arguments": {"query": "..."}}`` and
      ``{"name": "answer", "arguments": {"answer": "..."}}``, one object or several, or a JSON list
      of them; a set answer may be a JSON list of strings.

    A reply may hold several calls (several ``search[...]``, several tags, several JSON calls,
    dialects mixed): the env takes every one, in the order they start, as one *turn*. Reasoning
    text around them is allowed. Calls that start after a made-up observation (a line starting
    ``Observation``, ``Results`` or ``Searches left``, or an ``<information>`` or
    ``<tool_response>`` tag, after the first call) are not calls: they are ignored and reported in
    ``info["ignored_calls"]``; the first call is always taken. Calls after an ``answer`` are
    ignored and reported the same way. ``step`` never raises on any string; only a failing remote
    ``retriever`` raises (:class:`~gather_envs.errors.RetrieverError`, from ``step`` or ``reset``):
    an infrastructure error that voids the episode (reset to play again).

    ## Observation

    A ``Text`` space. ``reset`` returns the task prompt: the context documents (static family),
    the question, the action syntax and the searches left. Each ``step`` answers every call of
    the reply in order, separated by a blank line: a search's ``top_k`` numbered documents and
    the searches left, an invalid call's problem, the verdict of the answer. A one-call reply gets
    exactly that call's text. ``info`` always holds ``task_id``, ``family``, ``hops``,
    ``max_tool_calls``, ``tool_calls_used``, ``tool_calls_left``, ``invalid_actions``, ``turns``,
    ``max_turns``, ``reward_kind``, ``corpus_hash`` and ``retriever`` (the remote retriever's identity,
    None for the env's own BM25); a step adds ``calls`` (the kind of each call taken),
    ``call_observations`` (each call's part of the observation, the turn's closing lines with the
    last call: what a native tool-calling path returns per call),
    ``searches`` (each search's ``query`` and ``retrieved_doc_ids``; ``query`` and
    ``retrieved_doc_ids`` also name the turn's last search) and ``error`` (the turn's first
    problem); the last step adds ``answer``, ``gold_answer``, ``em``, ``f1``, ``success``,
    ``termination``, ``queries`` and ``supporting_doc_ids``.

    ## Rewards

    0 on every step but the answer. The answer's reward is the declared ``reward``: ``"em"`` 1 for
    a correct answer, else 0 (the task's checker: SQuAD exact match after normalization, the set
    of items for set questions, equivalence for math); ``"f1"`` the token F1 against the best gold
    answer (item F1 for sets); ``"cover_em"`` 1 when the normalized answer contains a gold answer
    (Search-R1's cover exact match). ``info["success"]``, the PASS@(k,T) event, is the correct
    answer (``"em"``) whatever the reward.

    ## Termination and truncation

    ``terminated`` when the answer is given (right or wrong: a wrong answer is final) or when a
    turn with an invalid call goes past ``max_invalid_actions`` (``termination="invalid_actions"``,
    reward 0). ``truncated`` only by limits from outside the task: ``max_turns`` replies
    (``termination="max_turns"``, reward 0), or a wrapper such as ``TimeLimit``.

    ## Budget

    Every search uses one of ``T`` calls, within a turn too: a reply with more searches than are
    left runs the first ones and answers the rest with the budget error. Invalid calls (malformed,
    unknown tool, empty, too long, no searchable words, or past the budget) use no search; a
    turn with any invalid call counts as *one* invalid action, however many it holds.
    ``reset(options={"max_tool_calls": t})`` sets ``T`` for one episode.

    ## Arguments

    - ``family`` (default ``'bridge'``): the task family: ``static``, ``single-hop``,
      ``comparison`` or ``bridge`` (multi-hop).
    - ``split`` (default ``'test'``): the corpus split whose world is searched and whose tasks
      are drawn.
    - ``max_tool_calls`` (default ``None``): the budget ``T`` of searches, at most 100; None is 0
      for the static family (it must be 0 there) and 5 otherwise.
    - ``top_k`` (default ``3``): documents a search returns.
    - ``scope`` (default ``'world'``): ``world`` searches the split's whole world,
      ``distractor`` only the task's own context documents, ``open`` a foreign index behind
      ``retriever`` (open-domain, HotpotQA's fullwiki setting).
    - ``dialect`` (default ``'react'``): the action syntax the prompts show: ``react``,
      ``tags`` or ``json`` (every dialect is accepted whatever this is).
    - ``max_invalid_actions`` (default ``2``): turns with an invalid call allowed; one more
      ends the episode.
    - ``show_budget`` (default ``True``): whether observations say how many searches are left.
    - ``max_turns`` (default ``None``): replies allowed before the episode is truncated; None
      is no limit.
    - ``reward`` (default ``'em'``): the answer's training reward: ``em``, ``f1`` or
      ``cover_em``.
    - ``corpus`` (default ``None``): a shipped corpus name or a corpus directory; None is the
      default frozen corpus.
    - ``world`` (default ``None``): knobs of a procedural world built on the fly instead of a
      frozen corpus.
    - ``dataset`` (default ``None``): a dataset file to play instead (``format`` and its keys:
      see ``resolve_corpus``).
    - ``retriever`` (default ``None``): the URL of a retrieval server in Search-R1's protocol
      (``POST /retrieve``) that answers the searches instead of the env's own BM25; with
      ``scope='world'`` it must serve this corpus, with ``scope='open'`` any index.
    - ``index`` (default ``None``): an on-disk BM25 index directory (``gather-envs index build``)
      searched instead of the corpus's in-memory index; hits are its own documents. Built from
      this corpus's split, it plays the same episodes; another index (wiki-18 with
      ``scope='open'``) is named in every record.
    - ``render_mode`` (default ``None``): ``ansi`` (``render`` returns the last observation)
      or ``human`` (each observation is printed).

    ## Registered configurations

    - ``Gather-Static-v0``: the static family, closed book (``T = 0``) with context documents.
    - ``Gather-SingleHop-v0``: the single-hop family.
    - ``Gather-Compare-v0``: the comparison family (the paper's parallel category).
    - ``Gather-MultiHop-v0``: the bridge family (multi-hop, sequential).
    - ``Gather-v0``: any family through ``family=`` (default bridge).
    """

    metadata = {"render_modes": ["ansi", "human"]}

    def __init__(
        self,
        family: str = "bridge",
        split: str = "test",
        max_tool_calls: int | None = None,
        top_k: int = DEFAULT_TOP_K,
        scope: str = "world",
        dialect: str = "react",
        max_invalid_actions: int = DEFAULT_MAX_INVALID_ACTIONS,
        show_budget: bool = True,
        max_turns: int | None = None,
        reward: str = DEFAULT_REWARD,
        corpus: str | None = None,
        world: dict[str, Any] | None = None,
        dataset: dict[str, Any] | None = None,
        retriever: str | None = None,
        index: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        if family not in FAMILIES:
            raise ConfigError(f"unknown family {family!r}; choose one of {FAMILIES}")
        if max_tool_calls is None:
            max_tool_calls = 0 if family == FAMILY_STATIC else DEFAULT_MAX_TOOL_CALLS
        _check_budget(family, max_tool_calls)
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}; choose one of {SCOPES}")
        if retriever is not None and scope == SCOPE_DISTRACTOR:
            raise ConfigError(
                "retriever= searches the server's index, not a task's own documents: use scope='world' "
                "(the server serves this corpus) or scope='open' (any index)"
            )
        if retriever is not None and index is not None:
            raise ConfigError("retriever= and index= both replace the env's search: pass one of them")
        if index is not None and scope == SCOPE_DISTRACTOR:
            raise ConfigError("index= searches a whole index, not a task's own documents: use scope='world' or 'open'")
        if retriever is None and index is None and scope == SCOPE_OPEN:
            raise ConfigError(
                "scope='open' searches a foreign index: pass retriever=URL of a retrieval server or index=DIR"
            )
        if dialect not in DIALECTS:
            raise ConfigError(f"unknown dialect {dialect!r}; choose one of {DIALECTS}")
        if max_invalid_actions < 0:
            raise ConfigError(f"max_invalid_actions must be >= 0, got {max_invalid_actions}")
        if max_turns is not None and (isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1):
            raise ConfigError(f"max_turns must be an int >= 1 or None (no limit), got {max_turns!r}")
        if index is not None and scope != "world":
            raise ConfigError(f"index= is searched with scope='world', not scope={scope!r}")
        if reward not in REWARD_KINDS:
            raise ConfigError(f"unknown reward {reward!r}; choose one of {REWARD_KINDS}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"unknown render_mode {render_mode!r}")
        self.family = family
        self.split = split
        self.max_tool_calls = max_tool_calls
        self.top_k = top_k
        self.scope = scope
        self.dialect = dialect
        self.max_invalid_actions = max_invalid_actions
        self.show_budget = show_budget
        self.max_turns = max_turns
        self.reward = reward
        self.render_mode = render_mode
        self._source = {"corpus": corpus, "world": world, "dataset": dataset}
        self.retriever = retriever
        self._index_dir = index
        self._attach()
        self.action_space = action_space()
        self._reset_episode_state()

    # -- corpus and spaces -------------------------------------------------------------------

    def _attach(self) -> None:
        """Resolve the shared corpus and build the spaces (also after unpickling)."""
        self.corpus: Corpus = resolve_corpus(**self._source)
        self.tasks: tuple[Task, ...] = self.corpus.tasks(self.split, self.family)
        self._task_ids = frozenset(t.task_id for t in self.tasks)
        if not self.tasks:
            raise ConfigError(
                f"corpus {self.corpus.name!r} has no {self.family!r} tasks in split {self.split!r}"
            )
        self._disk = None if self._index_dir is None else resolve_index(self._index_dir, self.corpus, self.split)
        self._disk_hash = None if self._disk is None else self._disk.manifest_hash
        self._charset = _corpus_charset(self.corpus)
        self.observation_space = observation_space(self._charset)
        self._remote = None if self.retriever is None else RemoteRetriever(self.retriever)

    @property
    def retriever_identity(self) -> str | None:
        """What answers the searches: a remote retriever (``scheme:index hash``, from its ``/health``), a
        foreign on-disk index (``index:manifest hash``), or None for the env's own BM25."""
        if self._remote is not None:
            return self._remote.identity()
        if self._disk is not None and self._disk.manifest.get("corpus", {}).get("content_hash") != self.corpus.content_hash:
            return f"index:{self._disk_hash}"  # another corpus's documents: its own searches
        return None  # the env's BM25, or an index of exactly its split's documents (the same searches)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for shared in ("corpus", "tasks", "_task_ids", "_charset", "observation_space", "_remote", "_disk"):
            state.pop(shared, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._attach()

    # -- episode -----------------------------------------------------------------------------

    def _reset_episode_state(self) -> None:
        self.task: Task | None = None
        self.budget = self.max_tool_calls
        self.tool_calls_used = 0
        self.invalid_actions = 0
        self.turns = 0
        self.queries: list[str] = []
        self._done = False
        self._last_observation = ""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode on a drawn task, or on ``options["task_id"]`` / ``["task_index"]``.

        ``options["max_tool_calls"]`` overrides T for this episode only.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        self._reset_episode_state()
        self.task = self._choose_task(options)
        budget = options.get("max_tool_calls", self.max_tool_calls)
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise ConfigError(f"max_tool_calls must be an int, got {budget!r}")
        _check_budget(self.family, budget)
        self.budget = budget
        context = self._context_documents() if self.family == FAMILY_STATIC else ()
        set_answer = self.task.meta.get(CHECKER_KEY) == CHECKER_SET
        text = prompts.task_prompt(
            self.task.question, self.dialect, budget, self.show_budget, context, set_answer
        )
        return self._observe(text), self._info()

    def _choose_task(self, options: dict[str, Any]) -> Task:
        unknown = sorted(set(options) - {"task_id", "task_index", "max_tool_calls"})
        if unknown:
            raise ConfigError(f"unknown reset option(s) {unknown}")
        if "task_id" in options:
            task = self.corpus.task(str(options["task_id"]))
            if task.family != self.family:
                raise ConfigError(f"task {task.task_id!r} is {task.family!r}, not {self.family!r}")
            if task.task_id not in self._task_ids:  # another split's task: its world is not searched here
                raise ConfigError(
                    f"task {task.task_id!r} is not in split {self.split!r}; pass split= for its split"
                )
            return task
        if "task_index" in options:
            index = options["task_index"]
            if not isinstance(index, int) or not 0 <= index < len(self.tasks):
                raise ConfigError(f"task_index must be an int in [0, {len(self.tasks)}), got {index!r}")
            return self.tasks[index]
        return self.tasks[int(self.np_random.integers(len(self.tasks)))]

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply one reply (every call in it, in order); never raises on any string."""
        if self.task is None:
            raise EnvStateError("step() called before reset()")
        if self._done:
            raise EnvStateError("step() called after the episode ended; call reset()")
        turn = parse_calls(action if isinstance(action, str) else str(action))
        self.turns += 1
        results: list[tuple[str, str]] = []  # (kind, the search's observation or the problem)
        searches: list[dict[str, Any]] = []
        problems: list[str] = []
        ignored = [{"call": prompts.echo(text), "reason": IGNORED_AFTER_OBSERVATION} for text in turn.ignored]
        answered: Action | None = None
        for index, call in enumerate(turn.calls):
            if answered is not None:
                ignored.append({"call": prompts.echo(turn.texts[index]), "reason": IGNORED_AFTER_ANSWER})
                continue
            problem = self._problem(call)
            if problem:
                problems.append(problem)
                results.append((INVALID, problem))
            elif call.kind == SEARCH:
                try:
                    text, retrieved = self._search(call.argument)
                except RetrieverError:
                    self._done = True  # the episode is void: an infrastructure error, not the agent's
                    raise
                searches.append({"query": call.argument, "retrieved_doc_ids": retrieved})
                results.append((SEARCH, text))
            else:
                answered = call
                results.append((ANSWER, ""))
        if problems:
            self.invalid_actions += 1  # one invalid action for the turn, whatever its number of bad calls
        extra: dict[str, Any] = {"calls": [call.kind for call in turn.calls[: len(results)]]}
        if searches:  # the last search's keys, as a one-call turn reports them
            extra.update(query=searches[-1]["query"], retrieved_doc_ids=searches[-1]["retrieved_doc_ids"])
        extra["searches"] = searches
        if problems:
            extra["error"] = problems[0]
        if ignored:
            extra["ignored_calls"] = ignored
        if answered is not None:
            return self._answer(answered.argument, answered.items or answered.argument, results, ignored, extra)
        out_of_invalid = bool(problems) and self.invalid_actions > self.max_invalid_actions
        text, each = self._turn_text(results, ignored, out_of_invalid)
        if out_of_invalid:
            self._done = True
            info = self._final_info(None, TERMINATION_INVALID, False, 0.0, action_type=INVALID, **extra)
            return self._observe_turn(text, each, info), REWARD_WRONG, True, False, info
        action_type = SEARCH if searches else INVALID
        if self.max_turns is not None and self.turns >= self.max_turns:
            self._done = True  # a limit from outside the task: truncated, not terminated
            limit = f"\nThe turn limit ({self.max_turns}) is reached: the episode is over."
            text, each = text + limit, [*each[:-1], each[-1] + limit]
            info = self._final_info(None, TERMINATION_MAX_TURNS, False, 0.0, action_type=action_type, **extra)
            return self._observe_turn(text, each, info), REWARD_WRONG, False, True, info
        info = self._info(action_type=action_type, **extra)
        return self._observe_turn(text, each, info), REWARD_WRONG, False, False, info

    def _problem(self, call: Action) -> str:
        """Why a call is invalid here ("" when it is valid)."""
        if call.kind == INVALID:
            return call.error
        if len(call.argument) > MAX_ACTION_LENGTH:
            # Bounds the cost of one call: a megabyte query would take seconds of BM25 scoring.
            return (
                f"the {call.kind} is {len(call.argument)} characters long; the limit is "
                f"{MAX_ACTION_LENGTH} (the action space's length)"
            )
        if call.kind != SEARCH:
            return ""
        if self.tool_calls_used >= self.budget:
            if self.budget == 0:
                return "searching is not available in this episode; give your answer"
            return "no searches left (the budget is used up); give your answer"
        if not tokenize(call.argument):
            return "the query has no searchable words"
        return ""

    def _search(self, query: str) -> tuple[str, list[str]]:
        """Run one search: its observation text and the ids of the documents it returned."""
        documents = self._retrieve(query)
        self.tool_calls_used += 1
        self.queries.append(query)
        left = self.budget - self.tool_calls_used
        text = prompts.search_result(query, documents, left, self.show_budget)
        return text, [document.doc_id for document in documents]

    def _answer(
        self,
        answer: str,
        prediction: str | tuple[str, ...],
        results: list[tuple[str, str]],
        ignored: list[dict[str, str]],
        extra: dict[str, Any],
    ) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """End the episode on ``answer`` (as recorded); ``prediction`` is what is scored (a JSON list's items)."""
        assert self.task is not None
        correct = answer_is_correct(prediction, self.task)
        f1 = answer_f1(prediction, self.task)
        reward = {
            REWARD_EM: REWARD_CORRECT if correct else REWARD_WRONG,
            REWARD_F1: f1,
            REWARD_COVER_EM: REWARD_CORRECT if answer_covers(prediction, self.task) else REWARD_WRONG,
        }[self.reward]
        self._done = True
        verdict = f"Episode over: your answer was {'correct' if correct else 'wrong'}."
        text, each = self._turn_text(
            [(kind, verdict if kind == ANSWER else part) for kind, part in results], ignored, False
        )
        info = self._final_info(answer, TERMINATION_ANSWERED, correct, f1, action_type=ANSWER, **extra)
        return self._observe_turn(text, each, info), reward, True, False, info

    def _turn_text(
        self, results: list[tuple[str, str]], ignored: list[dict[str, str]], final: bool
    ) -> tuple[str, list[str]]:
        """The observation of a turn, each call's result in order (a one-call turn reads as before),
        and each call's own part of it (the turn's closing lines go with the last call)."""
        each = [
            part if kind != INVALID else f"Invalid action: {part}." if final else prompts.invalid_call(part)
            for kind, part in results
        ]
        shown: list[str] = []
        invalid = 0
        for (kind, _), line in zip(results, each):
            invalid += kind == INVALID
            if kind != INVALID or invalid <= MAX_REPORTED_INVALID:
                shown.append(line)
        hidden = invalid - MAX_REPORTED_INVALID
        if hidden > 0:
            shown.append(f"{hidden} more invalid call{'s' if hidden != 1 else ''} in this reply.")
        tail = ""
        if final:
            tail += " Too many invalid actions: the episode is over."
        elif invalid and not any(kind == ANSWER for kind, _ in results):
            left = self.max_invalid_actions - self.invalid_actions
            tail += "\n" + prompts.invalid_tail(self.dialect, self.budget > 0, left)
        for reason in (IGNORED_AFTER_ANSWER, IGNORED_AFTER_OBSERVATION):
            count = sum(1 for item in ignored if item["reason"] == reason)
            if count:
                tail += "\n" + prompts.ignored_calls(count, reason)
        return "\n\n".join(shown) + tail, [*each[:-1], each[-1] + tail]

    # -- helpers -----------------------------------------------------------------------------

    def _retrieve(self, query: str) -> list[Document]:
        if self._remote is not None:
            return [self._document(hit) for hit in self._remote.search(query, self.top_k)]
        if self._disk is not None:
            return [self._disk.document(i) for i, _ in self._disk.search(query, self.top_k)]
        hits = self._index().search(query, self.top_k)
        if self.scope == "world":
            own = self.corpus.documents_of(self.split)  # a synthetic split searches its own world
            return [own[i] for i, _ in hits]
        assert self.task is not None
        return [self.corpus.doc(self.task.context_doc_ids[i]) for i, _ in hits]

    def _document(self, hit: RemoteHit) -> Document:
        """A remote hit as the corpus's own document (same id), or, in the open scope, as sent."""
        position = None if hit.anonymous else self.corpus.position.get(hit.doc_id)
        start, stop = self.corpus.split_documents.get(self.split, (0, len(self.corpus.documents)))
        if position is not None and (self.scope == SCOPE_OPEN or start <= position < stop):
            return self.corpus.documents[position]
        if self.scope == SCOPE_OPEN:
            return Document.from_contents(hit.doc_id, hit.contents)
        assert self._remote is not None
        raise RetrieverError(
            f"retriever {self._remote.url} returned document {hit.doc_id!r}, which split {self.split!r} of "
            f"corpus {self.corpus.name!r} does not hold: it serves another index; serve this one, or pass "
            "scope='open' to search a foreign index"
        )

    def _index(self) -> BM25Index:
        if self.scope == "world":
            return self.corpus.index(self.split)
        task = self.task
        assert task is not None
        # Built from the task's own documents (same scores as a subset of the world index) so a
        # large dataset never needs its whole-file index for per-question retrieval.
        texts = [index_text(self.corpus.doc(d)) for d in task.context_doc_ids]
        key = f"context:{self.corpus.content_hash}:{task.task_id}"
        return get_index(key, lambda: BM25Index.from_texts(texts))

    def _context_documents(self) -> list[Document]:
        assert self.task is not None
        return [self.corpus.doc(d) for d in self.task.context_doc_ids]

    def _observe_turn(self, text: str, each: list[str], info: dict[str, Any]) -> str:
        """Show a turn's observation; ``info["call_observations"]`` gets each call's part of it
        (what a native tool path returns per call), so a one-call turn's part is the observation."""
        observation = self._observe(text)
        info["call_observations"] = [observation] if len(each) == 1 else [fit(part, self._charset) for part in each]
        return observation

    def _observe(self, text: str) -> str:
        self._last_observation = fit(text, self._charset)
        if self.render_mode == "human":
            print(self._last_observation)
        return self._last_observation

    def _info(self, **extra: Any) -> dict[str, Any]:
        assert self.task is not None
        return {
            "task_id": self.task.task_id,
            "family": self.task.family,
            "hops": self.task.hops,
            "max_tool_calls": self.budget,
            "tool_calls_used": self.tool_calls_used,
            "tool_calls_left": self.budget - self.tool_calls_used,
            "invalid_actions": self.invalid_actions,
            "turns": self.turns,
            "max_turns": self.max_turns,
            "reward_kind": self.reward,
            "corpus_hash": self.corpus.content_hash,
            "retriever": self.retriever_identity,
            **extra,
        }

    def _final_info(
        self, answer: str | None, termination: str, correct: bool, f1: float, **extra: Any
    ) -> dict[str, Any]:
        assert self.task is not None
        return self._info(
            answer=answer,
            gold_answer=self.task.answer,
            em=float(correct),
            f1=f1,
            success=correct,
            termination=termination,
            queries=list(self.queries),
            supporting_doc_ids=list(self.task.supporting_doc_ids),
            **extra,
        )

    def close(self) -> None:
        """Close the remote retriever's connection, if any (a later search opens another)."""
        if self._remote is not None:
            self._remote.close()
        super().close()

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._last_observation
        return None


def _check_budget(family: str, budget: int) -> None:
    if not 0 <= budget <= MAX_TOOL_CALLS:
        raise ConfigError(f"max_tool_calls must be >= 0 and at most {MAX_TOOL_CALLS}, got {budget}")
    if family == FAMILY_STATIC and budget != 0:
        raise ConfigError("the static family is closed-book: max_tool_calls must be 0")


_CHARSETS: weakref.WeakKeyDictionary[Corpus, frozenset[str]] = weakref.WeakKeyDictionary()
"""Keyed by the corpus object, not its content hash: the hash covers the documents only, and two
task files over the same documents ask questions with different characters."""


def _corpus_charset(corpus: Corpus) -> frozenset[str]:
    """Characters of every document, question and prompt of a corpus (cached per corpus)."""
    if corpus not in _CHARSETS:
        texts = [d.title + d.text for d in corpus.documents]
        texts += [t.question for tasks in corpus.splits.values() for t in tasks]
        texts += ["".join(s) for s in prompts.SYNTAX.values()]
        texts += list(prompts.SET_ANSWER_HINTS.values())
        _CHARSETS[corpus] = charset_for(texts)
    return _CHARSETS[corpus]
