"""Re-key artefacts written under the ``-v1`` env ids to the ``-v0`` ids (a one-time migration).

Before any release the synthetic ids were ``Gather-*-v1`` (with ``-v0`` refused as retired). The
first release names that same instrument ``-v0``: same corpus, tasks and rules, so no episode
changes and no rerun is needed. What changes, and nothing else:

- every ``Gather-Static-v1``, ``Gather-SingleHop-v1``, ``Gather-Compare-v1``, ``Gather-MultiHop-v1``
  and ``Gather-v1`` in a records, results, submission, report or settings file becomes its ``-v0``
  id (values, keys and file paths inside the text alike);
- a results file's ``"env_version": 1`` becomes ``0`` (it is read off the id);
- a file or folder whose name holds such an id is renamed.

The episode seeds do not depend on the env id, so re-keyed records still verify. Run it as
``python -m gather_envs.records.migrate PATH ...`` (files or folders; safe to run twice).

>>> rekey_text('{"env_id": "Gather-MultiHop-v1", "env_version": 1}')
'{"env_id": "Gather-MultiHop-v0", "env_version": 0}'
>>> rekey_text("Gather-HotpotQA-v1 is left alone")
'Gather-HotpotQA-v1 is left alone'
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gather_envs.files import atomic_file

OLD_TO_NEW = {
    f"Gather-{name}v1": f"Gather-{name}v0" for name in ("Static-", "SingleHop-", "Compare-", "MultiHop-", "")
}
_OLD_ID = re.compile(r"(?<![\w-])(" + "|".join(re.escape(old) for old in OLD_TO_NEW) + r")(?![\w-])")
_ENV_VERSION_ONE = re.compile(r'"env_version": 1(?!\d)')
TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".csv", ".txt")


def rekey_text(text: str) -> str:
    """The text with every old id replaced; ``env_version`` 1 becomes 0 only where an id changed."""
    new, count = _OLD_ID.subn(lambda m: OLD_TO_NEW[m.group(1)], text)
    return _ENV_VERSION_ONE.sub('"env_version": 0', new) if count else text


def migrate_file(path: Path) -> Path:
    """Re-key one file's text in place (if it is a text artefact) and rename it; returns its new path."""
    if path.suffix in TEXT_SUFFIXES:
        text = path.read_text(encoding="utf-8")
        new_text = rekey_text(text)
        if new_text != text:
            with atomic_file(path) as handle:
                handle.write(new_text.encode("utf-8"))
    new_name = rekey_text(path.name)
    if new_name == path.name:
        return path
    target = path.with_name(new_name)
    path.rename(target)
    return target


def migrate(path: Path) -> Path:
    """Re-key a file, or every file under a folder (symlinks skipped, folders renamed too)."""
    if path.is_file():
        return migrate_file(path)
    for child in sorted(path.iterdir()):
        if not child.is_symlink():
            migrate(child)
    new_name = rekey_text(path.name)
    if new_name == path.name:
        return path
    target = path.with_name(new_name)
    path.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Re-key every path given on the command line."""
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m gather_envs.records.migrate PATH [PATH ...]", file=sys.stderr)
        return 2
    for path in paths:
        if not path.exists():
            print(f"{path}: no such file or folder", file=sys.stderr)
            return 2
    for path in paths:
        migrate(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
