"""A verify problem (``file:line: rule: message``) and the collector that groups repeats per file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One reason a submission is invalid, printed as ``file:line: rule: message``."""

    file: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message}"


class Problems:
    """Collects problems, one line per (file, rule): the first place, then how many more."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self._grouped: dict[tuple[str, str], list[Any]] = {}

    def add(self, file: str | Path, line: int, rule: str, message: str) -> None:
        self.items.append(Problem(str(file), line, rule, message))

    def group(self, file: str | Path, line: int, rule: str, message: str) -> None:
        """A problem that may repeat on many lines of one file: reported once, with a count."""
        key = (str(file), rule)
        if key in self._grouped:
            self._grouped[key][1] += 1
            return
        problem = [Problem(str(file), line, rule, message), 0]
        self._grouped[key] = problem
        self.items.append(problem[0])

    def result(self) -> tuple[Problem, ...]:
        out = []
        for problem in self.items:
            extra = self._grouped.get((problem.file, problem.rule))
            if extra is not None and extra[0] is problem and extra[1]:
                problem = Problem(
                    problem.file, problem.line, problem.rule, f"{problem.message} (and {extra[1]} more lines)"
                )
            out.append(problem)
        return tuple(out)
