"""Storage mechanisms every writer and reader shares: atomic files and directories, bounded JSON.

One place for each: :mod:`~gather_envs.storage.atomic` (a file or a whole directory replaced in
one rename, so a kill or a full disk leaves the old output or the new one) and
:mod:`~gather_envs.storage.json_files` (JSON and JSON lines read with depth and size limits, lines
split on ``\\n`` only, every refusal one line naming file and line).
"""

from gather_envs.storage.atomic import atomic_directory, atomic_file
from gather_envs.storage.json_files import (
    MAX_JSON_DEPTH,
    JsonLimits,
    NotJson,
    iter_json_lines,
    loads_bounded,
    read_json,
)

__all__ = [
    "MAX_JSON_DEPTH",
    "JsonLimits",
    "NotJson",
    "atomic_directory",
    "atomic_file",
    "iter_json_lines",
    "loads_bounded",
    "read_json",
]
