"""The records store: where a run's episode records live, and how they are written, read and locked.

It sits just above :mod:`gather_envs.records` (the schemas): one writer with tail repair
(:class:`RecordWriter`), one reader with locations (:func:`iter_records_with_locations`, and
:func:`load_run`, which reads and checks a run once for every command), the atomic rewrite, the
run lock keyed on the file itself (:class:`RunLock`), run identity and the one cell key.
"""

from gather_envs.runs.cells import Cell, cell_of, check_unique_cells
from gather_envs.runs.identity import RunIdentity, canonical_json
from gather_envs.runs.load import Run, load_run
from gather_envs.runs.lock import RunLock
from gather_envs.runs.store import (
    CORRUPT_SUFFIX,
    RecordLocation,
    RecordWriter,
    append_records,
    corrupt_sidecar,
    iter_records,
    iter_records_with_locations,
    read_for_append,
    read_records,
    read_records_with_locations,
    rewrite_records,
)

__all__ = [
    "CORRUPT_SUFFIX",
    "Cell",
    "RecordLocation",
    "RecordWriter",
    "Run",
    "RunIdentity",
    "RunLock",
    "append_records",
    "canonical_json",
    "cell_of",
    "check_unique_cells",
    "corrupt_sidecar",
    "iter_records",
    "iter_records_with_locations",
    "load_run",
    "read_for_append",
    "read_records",
    "read_records_with_locations",
    "rewrite_records",
]
