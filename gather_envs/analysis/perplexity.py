"""Query perplexity: how surprising an agent's search queries are to a reference model, next to its reasoning.

The paper reads a rise in query perplexity under the base model, with reasoning perplexity flat,
as RL teaching *what to search for* rather than how to think. For each turn of a recorded
trajectory the reference model scores ``observation + "\\n" + action`` (the observation the
agent answered, then its reply); each token of the reply is put in the *query* span (the
argument of a ``search`` call) or the *reasoning* span (the text before the call), and its
negative log-likelihood (nats) is kept. Averages are per token, pooled over a run, and split by
family and by outcome; intervals resample episodes (percentile bootstrap). Needs records with
trajectories (``gather-envs eval ... --trajectories``).

Scorers: :class:`CompletionsScorer` asks an OpenAI-compatible ``/v1/completions`` endpoint for the
prompt's own logprobs (``echo=true, logprobs=1, max_tokens=1``: llama.cpp's ``llama_cpp.server``
and vLLM both answer it); :class:`EmbeddedScorer` runs a GGUF model in-process with llama-cpp-python,
loaded with the project's guard against the AMX weight-repacking crash.
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gather_envs.envs.actions import SEARCH, parse_action
from gather_envs.errors import BackendError, ConfigError, GatherError, RecordsError
from gather_envs.metrics.bootstrap import DEFAULT_BOOTSTRAP, DEFAULT_CONFIDENCE, DEFAULT_SEED
from gather_envs.parameters import Parameter, parse_parameters
from gather_envs.records import EpisodeRecord

QUERY = "query"
REASONING = "reasoning"
SPANS = (QUERY, REASONING)
HTTP_TIMEOUT_S = 120.0
API_KEY_ENV = "GATHER_API_KEY"
_CALL_OPENER = re.compile(r"\b(?:search|answer|finish)\s*\[|<(?:search|answer)>|\{\s*\"name\"", re.IGNORECASE)
"""Where an action call starts in a reply (ReAct brackets, tags, JSON); the text before is reasoning."""


class Scorer(Protocol):
    """A reference model: per-token logprobs of a text, each with the character offset it starts at."""

    def token_logprobs(self, text: str) -> list[tuple[int, float]]:
        """(offset, logprob) of every token of ``text`` but the first (which has no context)."""
        ...


def spans_of(action: str) -> dict[str, tuple[int, int]]:
    """Character spans of the query (a search's argument) and of the reasoning before the call.

    >>> spans_of("Thought: find Ada. search[Ada Lovelace]")
    {'reasoning': (0, 18), 'query': (26, 38)}
    >>> spans_of("answer[1815]")
    {}
    """
    opener = _CALL_OPENER.search(action)
    spans: dict[str, tuple[int, int]] = {}
    call = len(action) if opener is None else opener.start()
    reasoning = action[:call]
    if reasoning.strip():
        start = len(reasoning) - len(reasoning.lstrip())
        spans[REASONING] = (start, len(reasoning.rstrip()))
    parsed = parse_action(action)
    if parsed.kind == SEARCH and parsed.argument:
        at = action.find(parsed.argument, call)
        if at >= 0:
            spans[QUERY] = (at, at + len(parsed.argument))
    return spans


@dataclass(frozen=True)
class EpisodeNll:
    """Summed negative log-likelihood (nats) and token counts of one episode's spans."""

    task_id: str
    family: str
    success: bool
    nll: dict[str, float]
    tokens: dict[str, int]


def require_trajectories(records: Iterable[EpisodeRecord]) -> None:
    """RecordsError, saying how to fix it, unless every played record holds its trajectory."""
    for record in records:
        if record.trajectory is None and not record.is_infra_error:
            raise RecordsError(
                f"record of task {record.task_id!r} has no trajectory; rerun the eval with --trajectories"
            )


def score_episode(record: EpisodeRecord, scorer: Scorer) -> EpisodeNll:
    """The span NLLs of one record's trajectory under ``scorer``."""
    require_trajectories([record])
    assert record.trajectory is not None
    nll: dict[str, float] = dict.fromkeys(SPANS, 0.0)
    tokens: dict[str, int] = dict.fromkeys(SPANS, 0)
    steps = list(record.trajectory)
    for before, step in zip(steps, steps[1:], strict=False):
        action = step.get("action")
        if not isinstance(action, str):
            continue
        spans = spans_of(action)
        if not spans:
            continue
        prefix = f"{before.get('observation', '')}\n"
        for offset, logprob in scorer.token_logprobs(prefix + action):
            at = offset - len(prefix)
            for name, (start, end) in spans.items():
                if start <= at < end:
                    nll[name] -= logprob
                    tokens[name] += 1
    return EpisodeNll(record.task_id, record.family, record.success, nll, tokens)


@dataclass(frozen=True)
class SpanMean:
    """Per-token mean NLL of one span over a group of episodes, with a bootstrap interval."""

    nll: float | None
    low: float | None
    high: float | None
    tokens: int
    episodes: int

    @property
    def perplexity(self) -> float | None:
        return None if self.nll is None else math.exp(self.nll)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "perplexity": self.perplexity}


def _resampled_ratio(
    nll: np.ndarray, tokens: np.ndarray, bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """Pooled per-token means of ``bootstrap`` resamples of the episodes (NaN where no tokens)."""
    draws = rng.integers(0, len(nll), size=(bootstrap, len(nll)))
    totals = tokens[draws].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, nll[draws].sum(axis=1) / np.maximum(totals, 1), np.nan)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    samples = samples[~np.isnan(samples)]
    if not len(samples):
        return None, None
    tail = (1 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return float(low), float(high)


def span_mean(
    episodes: Sequence[EpisodeNll], span: str, bootstrap: int, rng: np.random.Generator, confidence: float
) -> SpanMean:
    """The pooled per-token NLL of ``span`` over ``episodes`` with its episode-bootstrap interval."""
    nll = np.array([e.nll[span] for e in episodes], dtype=np.float64)
    tokens = np.array([e.tokens[span] for e in episodes], dtype=np.int64)
    total = int(tokens.sum())
    mean = float(nll.sum() / total) if total else None
    low = high = None
    if bootstrap and total:
        low, high = _interval(_resampled_ratio(nll, tokens, bootstrap, rng), confidence)
    return SpanMean(mean, low, high, total, len(episodes))


@dataclass(frozen=True)
class RunPerplexity:
    """One run's span NLLs: overall, per family and per outcome (``"success"``/``"failure"``)."""

    agent_id: str
    episodes: tuple[EpisodeNll, ...]
    groups: dict[str, dict[str, SpanMean]]
    """Group name (``all``, ``family <name>``, ``success``, ``failure``) -> span -> mean."""

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "groups": {g: {s: m.to_json() for s, m in spans.items()} for g, spans in self.groups.items()},
        }


def run_perplexity(
    records: Iterable[EpisodeRecord],
    scorer: Scorer,
    *,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> RunPerplexity:
    """Score every record of one run (infrastructure errors left out) and average per group."""
    records = [r for r in records if not r.is_infra_error]
    if not records:
        raise RecordsError("no played episode to score (every record is an infrastructure error, or none)")
    agents = sorted({r.agent_id for r in records})
    if len(agents) != 1:
        raise RecordsError(f"one run per call, please: the records mix agents {agents}")
    episodes = tuple(score_episode(r, scorer) for r in records)
    selections: dict[str, list[EpisodeNll]] = defaultdict(list)
    for episode in episodes:
        selections["all"].append(episode)
        selections[f"family {episode.family}"].append(episode)
        selections["success" if episode.success else "failure"].append(episode)
    rng = np.random.default_rng(seed)
    order = ["all", *sorted(g for g in selections if g.startswith("family ")), "success", "failure"]
    groups = {
        name: {span: span_mean(selections[name], span, bootstrap, rng, confidence) for span in SPANS}
        for name in order
        if name in selections
    }
    return RunPerplexity(agents[0], episodes, groups)


@dataclass(frozen=True)
class PerplexityDifference:
    """B minus A in per-token NLL of one span over all episodes, with a bootstrap interval."""

    span: str
    diff: float | None
    low: float | None
    high: float | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compare_perplexity(
    a: RunPerplexity,
    b: RunPerplexity,
    *,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[PerplexityDifference]:
    """Per span, B's pooled NLL minus A's; the runs' episodes are resampled independently."""
    rng = np.random.default_rng(seed)
    out = []
    for span in SPANS:
        mean_a, mean_b = a.groups["all"][span].nll, b.groups["all"][span].nll
        if mean_a is None or mean_b is None:
            out.append(PerplexityDifference(span, None, None, None))
            continue
        low = high = None
        if bootstrap:
            samples = [
                _resampled_ratio(
                    np.array([e.nll[span] for e in run.episodes]),
                    np.array([e.tokens[span] for e in run.episodes]),
                    bootstrap,
                    rng,
                )
                for run in (a, b)
            ]
            low, high = _interval(samples[1] - samples[0], confidence)
        out.append(PerplexityDifference(span, mean_b - mean_a, low, high))
    return out


# --------------------------------------------------------------------------------------------
# Scorers


class CompletionsScorer:
    """Prompt logprobs from an OpenAI-compatible ``/v1/completions`` endpoint (``echo`` + ``logprobs``).

    ``bos_text`` is prepended to every text, as the model's beginning-of-sequence token. Give it for
    a model whose tokenizer adds none (SmolLM2: ``<|im_start|>``) when the server is
    llama-cpp-python's ``llama_cpp.server`` 0.3: without a leading BOS it pairs each echoed token
    with the distribution *after* it (one position late), and with one it strips it and pairs them
    right. Offsets come from the returned token strings, so a server that echoes the BOS text
    (vLLM) and one that strips it (llama_cpp.server) read alike.
    """

    def __init__(
        self, base_url: str, model: str = "", api_key: str | None = None, bos_text: str = ""
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"scorer base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.bos_text = bos_text
        self._api_key = api_key

    def token_logprobs(self, text: str) -> list[tuple[int, float]]:
        prompt = self.bos_text + text
        body: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": 1,
            "echo": True,
            "logprobs": 1,
            "temperature": 0,
        }
        if self.model:
            body["model"] = self.model
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            f"{self.base_url}/completions", json.dumps(body).encode("utf-8"), headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                data = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise BackendError(f"scorer {self.base_url}/completions failed: {error}") from error
        try:
            logprobs = data["choices"][0]["logprobs"]
            pairs = list(zip(logprobs["tokens"], logprobs["token_logprobs"], strict=True))
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise BackendError(
                f"scorer {self.base_url} returned no prompt logprobs ({error!r}); it must support "
                "echo=true with logprobs on /v1/completions (llama.cpp's llama_cpp.server and vLLM do)"
            ) from None
        joined = "".join(str(token) for token, _ in pairs)
        shift = len(self.bos_text) if self.bos_text and joined.startswith(self.bos_text) else 0
        out, offset = [], -shift
        for token, logprob in pairs:
            # The echoed prompt comes first; the one generated token starts at or after len(text).
            if logprob is not None and 0 < offset < len(text):
                out.append((offset, float(logprob)))
            offset += len(str(token))
        return out


class EmbeddedScorer:
    """Prompt logprobs from a GGUF model run in-process (default: the embedded SmolLM2).

    The text is scored after the model's BOS token, as :class:`CompletionsScorer` with ``bos_text``.
    """

    def __init__(
        self, model_path: str | Path | None = None, context_tokens: int = 2048, n_threads: int | None = None
    ) -> None:
        from gather_envs.agents.backends import llama_embedded as embedded

        try:
            import llama_cpp
        except ImportError as error:
            raise GatherError(
                f"the embedded scorer needs llama-cpp-python ({error}); {embedded.INSTALL_HINT}"
            ) from None
        path = Path(model_path) if model_path else embedded.smollm2_model_path()
        if not path.is_file():
            raise ConfigError(f"scorer model file {path} does not exist")
        threads = n_threads or embedded.DEFAULT_THREADS
        embedded.probe_model(path, context_tokens, threads)  # a native crash becomes a BackendError
        with embedded.no_weight_repacking(llama_cpp):
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=context_tokens,
                n_threads=threads,
                n_threads_batch=threads,
                logits_all=True,
                verbose=False,
            )
        self.model = path.name
        self.context_tokens = context_tokens

    def token_logprobs(self, text: str) -> list[tuple[int, float]]:
        llm = self._llm
        body = llm.tokenize(text.encode("utf-8"), add_bos=False)[-(self.context_tokens - 2) :]
        tokens = [llm.token_bos(), *body]
        llm.reset()
        llm.eval(tokens)
        scores = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
        top = scores.max(axis=1, keepdims=True)
        logsumexp = top[:, 0] + np.log(np.exp(scores - top).sum(axis=1))
        # Character offsets from the decoded prefix (a token may split a UTF-8 character); byte-level
        # BPE pieces concatenate to the text, so each prefix is the previous one plus one piece.
        prefix, starts = b"", []
        for token in body:
            starts.append(len(prefix.decode("utf-8", errors="ignore")))
            prefix += llm.detokenize([token])
        shift = len(text) - len(prefix.decode("utf-8", errors="ignore"))
        # Row i of the scores predicts token i + 1; body token j is token j + 1 after the BOS.
        return [
            (shift + starts[j], float(scores[j, body[j]] - logsumexp[j]))
            for j in range(len(body))
            if shift + starts[j] > 0
        ]


SCORER_OPTIONS = (
    Parameter(
        "base_url", str, None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1 (else embedded)"
    ),
    Parameter("model", str, None, help="model name sent to the server"),
    Parameter("api_key", str, None, help="bearer token for the server (default: GATHER_API_KEY)"),
    Parameter("bos_text", str, None, help="text of the model's BOS token, prepended (see CompletionsScorer)"),
    Parameter("model_path", str, None, help="GGUF file of the embedded scorer (default: SmolLM2)"),
)
"""What ``--scorer KEY=VALUE`` accepts."""


def make_scorer(options: dict[str, Any]) -> Scorer:
    """A completions-endpoint scorer given ``base_url``, else the embedded model."""
    parsed = parse_parameters("the scorer", SCORER_OPTIONS, options, defaults=True, noun="option")
    if parsed["base_url"]:
        if parsed["model_path"]:
            raise ConfigError("give the scorer base_url (a server) or model_path (embedded), not both")
        key = parsed["api_key"] or os.environ.get(API_KEY_ENV)
        return CompletionsScorer(parsed["base_url"], parsed["model"] or "", key, parsed["bos_text"] or "")
    return EmbeddedScorer(parsed["model_path"])
