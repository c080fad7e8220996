"""File mechanisms every layer shares: advisory locks, directory fsync and atomic replacement.

One place for each, so that a fix (a platform without ``fcntl``, an fsync that was missing) lands
everywhere at once.
"""

from __future__ import annotations

import os
from pathlib import Path

try:  # POSIX only; elsewhere locks are no-ops and appends rely on O_APPEND alone.
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None

PathLike = str | os.PathLike[str]
"""What every public function of the package accepts as a path."""

HAVE_FLOCK = fcntl is not None


def lock_fd(fd: int, *, blocking: bool = True) -> bool:
    """Take an exclusive ``flock`` on ``fd``; False if ``blocking`` is off and another holds it."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock_fd(fd: int) -> None:
    """Release the ``flock`` taken by :func:`lock_fd`."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def fsync_directory(directory: PathLike) -> None:
    """Make a rename or a new file in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - directories cannot be opened on some platforms
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: PathLike, data: bytes) -> None:
    """Replace the file ``path`` names by ``data`` in one rename: readers see the old or the new bytes.

    The temporary file sits beside the target (same file system) and is removed if writing fails.
    """
    path = Path(os.path.realpath(path))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
