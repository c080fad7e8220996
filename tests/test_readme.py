"""The README's quick start runs as printed: its code and the outputs its comments promise."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quick start") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README's Quick start has no python block"
    return match.group(1)


def test_the_quick_start_prints_what_its_comments_say() -> None:
    code = _quick_start()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    printed = out.getvalue().splitlines()
    promised = [m.group(1) for m in re.finditer(r"^print\(.*?\)\s+# (.*)$", code, flags=re.M)]
    assert len(promised) == 2 and len(printed) >= 2
    question = promised[0].strip('"').split(" ... ")[0]
    assert printed[0] == question
    assert printed[-1] == promised[1]
