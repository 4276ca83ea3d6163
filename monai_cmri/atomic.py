"""Files that appear whole or not at all, temporary names that say who owns them, folder locks.

Every output of the package is written under a temporary name in its final folder and renamed into
place when complete (``os.replace`` is atomic on one file system), so a killed run or a full disk
never leaves a half-written file under a final name. The temporary name records the host and the
process that writes it, ``.<name>.<host>.<pid>.tmp``: a later run removes only the temporaries whose
writer is gone (same host, process no longer alive), never those of a run still writing.

:class:`FolderLock` keeps two runs from writing the same outputs of a folder at once: the lock file
is created exclusively and names its holder (host, process, command, start time); a lock whose
holder died on this host is stale and taken over with a warning.

Python's ``tempfile`` gives unique names but not the owner, and MONAI has no folder lock; both are
written here for that reason.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DiskFullError",
    "FolderLockedError",
    "FolderLock",
    "temporary_path",
    "owner_of",
    "is_stale",
    "remove_stale_temporaries",
    "atomic_write",
    "write_text",
    "write_json",
    "is_disk_full",
    "disk_full_error",
    "free_bytes",
    "file_sha256",
]

_HOST = socket.gethostname().replace(".", "_") or "host"


class DiskFullError(OSError):
    """An output could not be written for lack of space; says where and how much was needed."""

    def __init__(self, path: str | os.PathLike[str], needed: int | None = None, detail: str = "") -> None:
        self.path = Path(path)
        self.needed = needed
        free = free_bytes(self.path)
        parts = [f"{self.path}: no space left on the device"]
        if needed is not None:
            parts.append(f"about {_mb(needed)} needed")
        if free is not None:
            parts.append(f"{_mb(free)} free in {_existing(self.path)}")
        message = ", ".join(parts) + "; free some space and run the command again (finished files are kept)"
        if detail:
            message += f" ({detail})"
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class FolderLockedError(RuntimeError):
    """Another live run holds the lock of a folder."""


def temporary_path(path: str | os.PathLike[str]) -> Path:
    """The temporary name of ``path`` for this process: ``.<name>.<host>.<pid>.tmp`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.tmp")


def owner_of(temporary: str | os.PathLike[str]) -> tuple[str, int] | None:
    """``(host, pid)`` of a temporary name made by :func:`temporary_path`, None for other names."""
    name = Path(temporary).name
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    parts = name[1:-4].rsplit(".", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def is_stale(host: str, pid: int) -> bool:
    """Whether the process ``pid`` on ``host`` is gone (only decidable on this host)."""
    return host == _HOST and pid != os.getpid() and not _alive(pid)


def remove_stale_temporaries(folder: str | os.PathLike[str], pattern: str = ".*.tmp") -> list[Path]:
    """Delete the temporaries (files or staging folders) in ``folder`` whose writer died on this host.

    Temporaries of live processes, of other hosts and names not made by :func:`temporary_path` are
    left alone.

    Returns:
        The paths removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for candidate in sorted(folder.glob(pattern)):
        owner = owner_of(candidate)
        if owner is not None and is_stale(*owner):
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def is_disk_full(error: BaseException) -> bool:
    """Whether an exception (OSError, or the RuntimeError h5py raises) reports a full disk."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full_error(error: BaseException, path: str | os.PathLike[str], needed: int | None = None) -> DiskFullError:
    """The :class:`DiskFullError` for ``path`` that replaces a low-level ``error``."""
    if isinstance(error, DiskFullError):
        return error
    return DiskFullError(path, needed, detail=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read 1 MiB at a time.

    Raises:
        FileNotFoundError: naming the file, if there is none.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Free bytes on the file system of ``path`` (or of its nearest existing parent)."""
    try:
        return shutil.disk_usage(_existing(Path(path))).free
    except OSError:
        return None


@contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "w", needed: int | None = None, **kwargs: Any
) -> Iterator[IO[Any]]:
    """Open the temporary name of ``path`` for writing; rename it to ``path`` when the block ends.

    On any error the temporary file is removed and ``path`` is left as it was; a full disk raises
    :class:`DiskFullError` naming ``path``.

    Args:
        path: the final file.
        mode: ``"w"`` or ``"wb"``.
        needed: expected size, bytes, for the message of a full disk.
        kwargs: passed to ``open``.
    """
    path = Path(path)
    temporary = temporary_path(path)
    try:
        with open(temporary, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if is_disk_full(error):
            raise disk_full_error(error, path, needed) from None
        raise


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return ``path``."""
    with atomic_write(path, "w", encoding="utf-8", needed=len(text.encode("utf-8"))) as handle:
        handle.write(text)
    return Path(path)


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented, key-sorted JSON to ``path`` atomically; return ``path``."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


class FolderLock:
    """An exclusive lock on a folder's outputs, held by one run at a time.

    The lock is the file ``folder/.<name>.lock`` created with ``O_EXCL``; it holds the holder's host,
    pid, command line and start time as JSON. Taking a lock held by a live process raises
    :class:`FolderLockedError` naming the holder; a lock left by a process that died on this host is
    stale, and is taken over with a warning. Use as a context manager.

    Args:
        folder: the folder to lock (created if missing).
        name: which outputs the lock protects, e.g. ``"preprocess"`` or ``"shard-0-of-2"``.
        conflicts: other lock names in the folder that must not be held at the same time; a
            callable gets the name of every live lock and returns whether it conflicts.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        name: str = "run",
        conflicts: Callable[[str], bool] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.name = name
        self.path = self.folder / f".{name}.lock"
        self.conflicts = conflicts
        self._held = False

    def holder(self, path: Path | None = None) -> dict[str, Any] | None:
        """The holder recorded in a lock file (this one by default), None if there is none."""
        try:
            return json.loads((path or self.path).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def acquire(self) -> FolderLock:
        """Take the lock.

        Raises:
            FolderLockedError: naming the live holder of this lock or of a conflicting one.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        for other in sorted(self.folder.glob(".*.lock")):
            other_name = other.name[1:-5]
            if other_name != self.name and self.conflicts is not None and self.conflicts(other_name):
                holder = self.holder(other)
                if holder is not None and not _stale(holder):
                    raise FolderLockedError(f"{self.folder}: {_describe(holder, other)}; wait for it to finish")
        record = {
            "host": _HOST,
            "pid": os.getpid(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        for _ in range(3):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is None:
                    continue  # released meanwhile
                if not _stale(holder):
                    raise FolderLockedError(
                        f"{self.folder}: {_describe(holder, self.path)}; wait for it to finish, or give "
                        "each run its own output folder"
                    ) from None
                warnings.warn(
                    f"{self.path}: taking over a stale lock; its holder, {_holder(holder)}, is gone", stacklevel=2
                )
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as handle:
                json.dump(record, handle)
            self._held = True
            return self
        raise FolderLockedError(f"{self.path}: could not take the lock")

    def release(self) -> None:
        """Give the lock back (only if this process holds it)."""
        if self._held:
            holder = self.holder()
            if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == _HOST:
                self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _stale(holder: dict[str, Any]) -> bool:
    try:
        return is_stale(str(holder["host"]), int(holder["pid"]))
    except (KeyError, TypeError, ValueError):
        return False  # unreadable: treat as held rather than delete another run's lock


def _describe(holder: dict[str, Any], path: Path) -> str:
    if not holder:
        return f"locked by an unreadable lock file {path} (remove it if no run is using the folder)"
    return f"in use by {_holder(holder)}; lock file {path}"


def _holder(holder: dict[str, Any]) -> str:
    return f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} ({holder.get('command')})"


def _existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"
