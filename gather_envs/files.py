"""File mechanisms every layer shares: advisory locks, directory fsync, atomic files and folders.

One place for each, so that a fix (a platform without ``fcntl``, an fsync that was missing) lands
everywhere at once.

Atomic outputs: a file (:func:`atomic_file`, :func:`write_atomic`) or a whole folder
(:func:`atomic_directory`) is written beside its target, fsynced, and swapped in by one rename, so
a kill, a full disk or any error leaves the old output or the new one, never a mix. An existing
folder is swapped with ``renameat2(RENAME_EXCHANGE)`` where the kernel has it (Linux 3.15+), so its
path never stops naming a complete output; elsewhere the old folder is renamed aside first and a
kill between the two renames leaves it beside the path (``.<name>.<pid>.….gather-tmp``). A folder
writer never writes through a symbolic link it did not create: a link at the target is refused,
and files inside an old output (links included) are dropped with it, never opened. Every failure
is one :class:`~gather_envs.errors.OutputError` naming the path, with nothing partial left.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from gather_envs.errors import OutputError

try:  # POSIX only; elsewhere locks are no-ops and appends rely on O_APPEND alone.
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None

PathLike = str | os.PathLike[str]
"""What every public function of the package accepts as a path."""

CACHE_ENV = "GATHER_ENVS_CACHE"
DEFAULT_CACHE = Path("~/.cache/gather-envs")


def cache_root() -> Path:
    """Where converted models live: ``$GATHER_ENVS_CACHE`` or ``~/.cache/gather-envs``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()

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
    """Replace the file ``path`` names (through any symlink) by ``data`` in one rename: readers see the
    old or the new bytes (see :func:`atomic_file`)."""
    with atomic_file(Path(os.path.realpath(path))) as handle:
        handle.write(data)


FILE_MODE = 0o644
"""Permissions of a file written (mkstemp's own 0o600 would hide it from other users)."""
DIRECTORY_MODE = 0o755
"""Permissions of a folder written (mkdtemp's own 0o700 would hide it from other users)."""
TEMP_SUFFIX = ".gather-tmp"
"""The suffix of every staging file and folder, so a stale one (its writer was killed) is recognisable."""
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_NO_EXCHANGE = (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV)
"""renameat2 errors that mean "this kernel or filesystem cannot exchange": fall back to two renames."""


def _nothing(_name: str) -> bool:
    return False


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


@contextlib.contextmanager
def atomic_directory(target: Path, replaceable: Callable[[str], bool] = _nothing) -> Iterator[Path]:
    """A fresh folder beside ``target`` to write into; on success it becomes ``target`` in one rename.

    An existing ``target`` is replaced only when it is a real folder whose every entry is a plain
    file or link with a name ``replaceable`` accepts (by default: only an empty folder), so a
    mistaken path never deletes someone's files; stale files of the old output do not survive.
    Any OSError inside the block or while committing removes the new folder and is raised as one
    OutputError naming ``target``.
    """
    target = Path(target)
    _check_replaceable(target, replaceable)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale(parent, target.name)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=parent)
        )
    except OSError as exc:
        raise OutputError(f"{target}: cannot write beside it in {parent} ({_reason(exc)})") from None
    try:
        yield staging
        _fsync_tree(staging)
        os.chmod(staging, DIRECTORY_MODE)
        _check_replaceable(target, replaceable)  # again: it may have changed while we wrote
        _swap_in(staging, target)
    except OSError as exc:
        _remove_tree(staging)
        if isinstance(exc, OutputError):
            raise
        where = f" ({exc.filename})" if exc.filename and Path(exc.filename).name != target.name else ""
        raise OutputError(
            f"{target}: cannot write ({_reason(exc)}){where}; the previous contents, if any, are unchanged"
        ) from None
    except BaseException:
        _remove_tree(staging)
        raise


@contextlib.contextmanager
def atomic_file(target: Path, mode: int = FILE_MODE) -> Iterator[IO[bytes]]:
    """A temporary file beside ``target`` that replaces it (the link itself, if it is one) when the block succeeds.

    The data is fsynced before the rename and the folder after it. An OSError removes the
    temporary file and is raised as one OutputError naming ``target``.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent
        )
    except OSError as exc:
        raise OutputError(f"{target}: cannot write beside it ({_reason(exc)})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, mode)
        os.replace(name, target)
        fsync_directory(target.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(name)
        if isinstance(exc, OutputError):
            raise
        raise OutputError(
            f"{target}: cannot write ({_reason(exc)}); the previous contents, if any, are unchanged"
        ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def _check_replaceable(target: Path, replaceable: Callable[[str], bool]) -> None:
    """OutputError unless ``target`` is absent or a real folder holding only files ``replaceable`` names."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"{target}: cannot inspect it ({_reason(exc)})") from None
    if stat.S_ISLNK(info.st_mode):
        raise OutputError(
            f"{target}: is a symbolic link; outputs are never written through a link: "
            "give the folder it points to, or remove the link"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{target}: exists and is not a folder; give a new or empty folder")
    with os.scandir(target) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False) or not replaceable(entry.name):
                raise OutputError(
                    f"{target}: exists and holds {entry.name!r:.60}, which this output would not write; "
                    "give a new or empty folder, or remove that one"
                )


def _swap_in(staging: Path, target: Path) -> None:
    """Make ``staging`` the folder at ``target`` (exchanging with an old one), then drop the old one."""
    exchanged = _exchange(staging, target)
    if exchanged is None:  # no exchange here: move the old folder aside, then rename
        aside = None
        if target.exists():
            aside = Path(
                tempfile.mkdtemp(
                    prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent
                )
            )
            os.rename(target, aside / "old")
        os.rename(staging, target)
        if aside is not None:
            _remove_tree(aside)
    elif exchanged:
        _remove_tree(staging)  # it now holds the old output
    else:
        os.rename(staging, target)
    fsync_directory(target.parent)


def _exchange(staging: Path, target: Path) -> bool | None:
    """Swap the two folders atomically: True if done, False if ``target`` is absent, None if unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return None
    result = renameat2(_AT_FDCWD, os.fsencode(staging), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.ENOENT:
        return False
    if code in _NO_EXCHANGE:
        return None
    raise OSError(code, os.strerror(code), str(target))


def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2``, or None where there is none (not Linux, old glibc)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - no C library to load
        return None
    function = getattr(libc, "renameat2", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        function.restype = ctypes.c_int
    return function


def _sweep_stale(parent: Path, name: str) -> None:
    """Remove staging folders of ``name`` whose writer process is gone (it was killed mid-write)."""
    prefix = f".{name}."
    with os.scandir(parent) as entries:
        stale = [e for e in entries if e.name.startswith(prefix) and e.name.endswith(TEMP_SUFFIX)]
    for entry in stale:
        pid = entry.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and entry.is_dir(follow_symlinks=False):
            _remove_tree(Path(entry.path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (links are not followed)."""
    for folder, _, names in os.walk(root, followlinks=False):
        for name in names:
            path = os.path.join(folder, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_directory(Path(folder))


def _remove_tree(path: Path) -> None:
    """Remove a folder this module created (never following links inside it); errors are ignored."""
    shutil.rmtree(path, ignore_errors=True)
