"""The micro-batcher: concurrent ``chat`` calls become ``chat_batch`` calls, each caller gets its own answer.

A scripted BatchChatBackend (no model) answers each prompt with a reply derived from its text, so
a result delivered to the wrong caller, or an error raised in the wrong one, shows.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import pytest

from gather_envs.agents.backends import BatchChatBackend, ChatResult, Message, Sampling
from gather_envs.agents.backends.base import estimate_tokens
from gather_envs.agents.backends.batching import MicroBatcher, chat_alone, micro_batched
from gather_envs.agents.llm import STYLES, LLMAgent
from gather_envs.errors import BackendError
from gather_envs.evaluation import evaluate

SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_tokens=16, seed=1)
PATIENT_S = 30.0  # a wait the tests never reach: batches go when full or when every live caller waits
MODEL_S = 0.02  # how long the scripted model takes per batch (callers arriving meanwhile wait for the next)


class ScriptedBatchBackend:
    """Answers every prompt with ``search[<digest of the prompt>]``; fails the prompts that contain ``fail``."""

    supports_tools = False
    context_tokens = 4096

    def __init__(self, fail: str | None = None, explode: bool = False) -> None:
        self.fail = fail
        self.explode = explode
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def reply(self, messages: Sequence[Message]) -> str:
        text = "".join(str(m.get("content")) for m in messages)
        return f"search[{hashlib.sha256(text.encode()).hexdigest()[:8]}]"

    def chat(self, messages: Sequence[Message], sampling: Sampling) -> ChatResult:
        return chat_alone(self, messages, sampling)

    def chat_batch(
        self, requests: Sequence[tuple[Sequence[Message], Sampling]]
    ) -> list[ChatResult | BackendError]:
        with self._lock:
            self.batches.append(len(requests))
        time.sleep(MODEL_S)
        if self.explode:
            raise BackendError("the whole batch failed")
        out: list[ChatResult | BackendError] = []
        for messages, _ in requests:
            if self.fail is not None and any(self.fail in str(m.get("content")) for m in messages):
                out.append(BackendError(f"injected failure for {self.fail!r}"))
            else:
                out.append(
                    ChatResult(
                        self.reply(messages), {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
                    )
                )
        return out

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return estimate_tokens(messages)

    def settings(self) -> dict[str, Any]:
        return {"backend": "scripted-batch"}


def call_from_threads(batcher: MicroBatcher, prompts: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Thread i sends prompts[i] one after the other; every answer or error, keyed by prompt."""
    answers: dict[str, Any] = {}
    lock = threading.Lock()
    start = threading.Barrier(len(prompts))

    def worker(texts: Sequence[str]) -> None:
        start.wait()
        for text in texts:
            try:
                answer: Any = batcher.chat([{"role": "user", "content": text}], SAMPLING).text
            except BackendError as error:
                answer = error
            with lock:
                answers[text] = answer

    threads = [threading.Thread(target=worker, args=(texts,)) for texts in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=PATIENT_S)
    assert not any(thread.is_alive() for thread in threads), "a caller never got its answer"
    return answers


def test_concurrent_calls_share_batches_and_each_caller_gets_its_own_reply() -> None:
    backend = ScriptedBatchBackend()
    batcher = MicroBatcher(backend, max_batch=8, max_wait_s=PATIENT_S)
    prompts = [[f"episode {i} turn {t}" for t in range(4)] for i in range(8)]
    answers = call_from_threads(batcher, prompts)
    for texts in prompts:
        for text in texts:
            assert answers[text] == backend.reply([{"role": "user", "content": text}])
    assert backend.batches == batcher.batch_sizes == [8, 8, 8, 8]  # lockstep: one call of each caller


def test_a_failed_request_raises_in_its_own_caller_only() -> None:
    backend = ScriptedBatchBackend(fail="episode 3")
    batcher = MicroBatcher(backend, max_batch=6, max_wait_s=PATIENT_S)
    prompts = [[f"episode {i} turn {t}" for t in range(3)] for i in range(6)]
    answers = call_from_threads(batcher, prompts)
    for i, texts in enumerate(prompts):
        for text in texts:
            if i == 3:
                assert isinstance(answers[text], BackendError) and "injected failure" in str(answers[text])
            else:
                assert answers[text] == backend.reply([{"role": "user", "content": text}])
    assert backend.batches == [6, 6, 6]  # the failing request shared every batch with the others


def test_a_whole_batch_failure_reaches_every_caller_of_that_batch() -> None:
    batcher = MicroBatcher(ScriptedBatchBackend(explode=True), max_batch=4, max_wait_s=PATIENT_S)
    answers = call_from_threads(batcher, [[f"episode {i}"] for i in range(4)])
    assert all(isinstance(answer, BackendError) for answer in answers.values()) and len(answers) == 4


def test_a_caller_whose_thread_ended_does_not_hold_the_next_batch_open() -> None:
    batcher = MicroBatcher(ScriptedBatchBackend(), max_batch=2, max_wait_s=PATIENT_S, idle_s=PATIENT_S)
    call_from_threads(batcher, [["first caller, then gone"], ["second caller, then gone"]])
    answers = call_from_threads(
        batcher, [["a later caller"]]
    )  # would wait PATIENT_S if the dead ones counted
    assert answers["a later caller"].startswith("search[") and batcher.batch_sizes == [2, 1]


def test_only_batch_backends_are_wrapped_and_settings_are_the_backends_own() -> None:
    backend = ScriptedBatchBackend()
    assert isinstance(backend, BatchChatBackend)
    wrapped = micro_batched(backend)
    assert isinstance(wrapped, MicroBatcher) and micro_batched(wrapped) is wrapped
    assert wrapped.settings() == backend.settings() and wrapped.context_tokens == backend.context_tokens
    messages = [{"role": "user", "content": "a question"}]
    assert wrapped.count_tokens(messages) == backend.count_tokens(messages)

    class PlainBackend(ScriptedBatchBackend):
        chat_batch = None  # type: ignore[assignment]

    plain = PlainBackend()
    assert micro_batched(plain) is plain


def run_act(backend: ScriptedBatchBackend, concurrency: int) -> list[dict[str, Any]]:
    env = gym.make("Gather-MultiHop-v0", top_k=1)
    agent = LLMAgent(env.unwrapped, STYLES["act"], chat_backend=backend, grammar=False, temperature=0.0)
    assert isinstance(agent.backend, MicroBatcher)  # the agent batches a backend that can
    records = evaluate(
        "Gather-MultiHop-v0",
        agent,
        n=2,
        budgets=(3,),
        tasks=6,
        concurrency=concurrency,
        env_kwargs={"top_k": 1},
        progress=False,
        record_trajectory=True,
        retries=0,
    )
    return [{**record.to_json(), "wall_time": None} for record in records]


def test_the_runner_gives_the_same_records_batched_and_one_at_a_time() -> None:
    batched_backend = ScriptedBatchBackend()
    batched = run_act(batched_backend, concurrency=8)
    alone_backend = ScriptedBatchBackend()
    alone = run_act(alone_backend, concurrency=1)
    assert batched == alone
    assert max(batched_backend.batches) > 1 and max(alone_backend.batches) == 1


def test_a_failed_sequence_in_a_batch_is_an_infrastructure_error_of_its_episode_only() -> None:
    clean = run_act(ScriptedBatchBackend(), concurrency=8)
    task_prompt = clean[0]["trajectory"][0]["observation"]  # the first observation names the task
    backend = ScriptedBatchBackend(fail=task_prompt)
    records = run_act(backend, concurrency=8)
    assert max(backend.batches) > 1
    failed = [r for r in records if r["infra_error"]]
    assert failed and all(r["task_id"] == clean[0]["task_id"] for r in failed)
    assert "injected failure" in failed[0]["infra_error"]
    assert [r for r in records if not r["infra_error"]] == [
        r for r in clean if r["task_id"] != clean[0]["task_id"]
    ]


@pytest.mark.parametrize("bad", [{"max_batch": 0}, {"max_wait_s": -1.0}])
def test_batcher_limits_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(ScriptedBatchBackend(), **bad)
