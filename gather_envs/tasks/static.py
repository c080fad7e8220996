"""The static family: a bridge or comparison task with every document given, and no tools."""

from __future__ import annotations

from dataclasses import replace

from gather_envs.records.tasks import FAMILY_STATIC, Task

STATIC_SOURCE_FAMILIES = ("bridge", "comparison")


def make_static(task: Task) -> Task:
    """The same question, answer and documents as ``task``, posed closed-book with its context.

    The gold path becomes empty (no search is needed or allowed); ``meta["source_family"]`` and
    ``meta["source_task_id"]`` keep the link to the sequential or parallel twin.
    """
    return replace(
        task,
        task_id=f"static-{task.task_id}",
        family=FAMILY_STATIC,
        gold_path=(),
        meta={**task.meta, "source_family": task.family, "source_task_id": task.task_id},
    )
