"""The run lock: one evaluation at a time on a records file, whatever name reaches it.

Two runners resuming one file would both play its missing episodes; the second one fails fast
instead. The lock is a ``flock`` on two lock files, neither of them the records file (its appends
take their own ``flock`` on it):

* ``<file>.lock`` beside the file's real path (symlinks resolved). Resuming may rewrite the records
  file atomically, which gives the path a new inode; this lock follows the path.
* a lock file named by the records file's device and inode in a per-user folder of the system's
  temporary directory, so every name of the file (a hard link in another folder included) meets
  the same lock. A file that does not exist yet gets this lock as soon as it is created
  (:meth:`RunLock.cover_file`, called by the runner once its writer has opened the file).

The holder removes each lock file while still holding it; a process that locked a now-removed
lock file meanwhile sees that the path no longer names it and retries on the path's current file,
so there is never more than one holder. The kernel releases both if the process dies.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

from gather_envs.errors import ConfigError
from gather_envs.files import HAVE_FLOCK, PathLike, lock_fd

LOCK_SUFFIX = ".lock"


def inode_lock_dir() -> Path:
    """The per-user folder of the locks keyed on a records file's device and inode."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"gather-envs-locks-{uid}"


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (its holder may have removed it)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino)


def _lock_file(path: Path) -> int | None:
    """A descriptor of ``path`` holding its exclusive flock, or None if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not lock_fd(fd, blocking=False):
            os.close(fd)
            return None
        if _same_file(fd, path):
            return fd
        os.close(fd)  # its holder removed it on release: lock the file the path names now


class RunLock:
    """An exclusive lock on a run's records file, held for the whole evaluation (a context manager)."""

    def __init__(self, path: PathLike) -> None:
        self.records_path = Path(path)
        real = Path(os.path.realpath(path))
        self.path = real.with_name(real.name + LOCK_SUFFIX)
        self._held: list[tuple[Path, int]] = []
        self._covers_file = False

    def __enter__(self) -> RunLock:
        if HAVE_FLOCK:
            self._take(self.path)
            self.cover_file()
        return self

    def cover_file(self) -> None:
        """Take the lock keyed on the records file's device and inode, once the file exists."""
        if not HAVE_FLOCK or self._covers_file:
            return
        try:
            stat = os.stat(self.records_path)
        except FileNotFoundError:
            return
        self._take(inode_lock_dir() / f"{stat.st_dev}-{stat.st_ino}{LOCK_SUFFIX}")
        self._covers_file = True

    def _take(self, lock_path: Path) -> None:
        fd = _lock_file(lock_path)
        if fd is None:
            self._release()
            raise ConfigError(
                f"another evaluation is writing {self.records_path} (it holds {lock_path}; perhaps "
                "through another name of the same file); wait for it to finish or pass another --out"
            )
        self._held.append((lock_path, fd))

    def _release(self) -> None:
        while self._held:
            lock_path, fd = self._held.pop()
            try:
                lock_path.unlink(missing_ok=True)  # while held: see the module docstring
            finally:
                os.close(fd)  # releases the flock

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()
