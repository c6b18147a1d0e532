"""Atomic file writes: a reader never sees a half-written file.

Every file the project writes for later reading (data caches, checkpoints, results) goes through
these helpers. They write to a temporary file in the same folder, flush and fsync it, then
`os.replace` it over the target, which is atomic on POSIX and Windows file systems.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# mkstemp creates files readable by their owner only; results and caches get the permissions an
# ordinary open() would give them (0666 less the process umask).
_UMASK = os.umask(0)
os.umask(_UMASK)

# Errors that mean the disk (or the user's quota on it) is full.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left where a file was to be written; the message names the file and its folder."""


def free_bytes(folder: str | os.PathLike) -> float:
    """Bytes free on the disk that holds (or would hold) `folder`; inf where that cannot be told."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return float(shutil.disk_usage(folder).free)
    except OSError:
        return float("inf")


def disk_full(path: str | os.PathLike) -> DiskFullError:
    """The error for a write of the file `path` that ran out of space: one line naming the file,
    its folder and the space left there."""
    path = Path(path)
    err = DiskFullError(
        f"the disk holding {path.parent} is full ({free_bytes(path.parent) / 2**20:.1f} MiB "
        f"free): could not write {path.name}; free space there (or choose another --out) and "
        "rerun the same command"
    )
    err.errno = errno.ENOSPC
    return err


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; move it over `path` only on success."""
    if "w" not in mode:
        raise ValueError(f"atomic_open writes only; got mode={mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if e.errno in DISK_FULL:
            raise disk_full(path) from None
        raise
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in DISK_FULL and not isinstance(e, DiskFullError):
            raise disk_full(path) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write strict JSON (NaN/inf are refused: encode them as null before calling)."""
    text = json.dumps(obj, indent=1, allow_nan=False)
    with atomic_open(path, "w") as f:
        f.write(text + "\n")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)
