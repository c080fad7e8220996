"""Print a command of the README's "Two commands" section, so CI runs exactly what the README says.

Usage: python .ci/readme_commands.py main-job|tests
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Two commands"
WHICH = {"main-job": 0, "tests": 1}


def two_commands(text: str) -> list[str]:
    """The bash blocks of the README's Two commands section, in order."""
    section = text[text.index(SECTION) :]
    section = section[: section.find("\n## ", len(SECTION))]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


if __name__ == "__main__":
    print(two_commands(README.read_text(encoding="utf-8"))[WHICH[sys.argv[1]]])
