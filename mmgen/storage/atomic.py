"""Atomic writes: a temporary file in the same folder, fsynced, then renamed over the target.

A write that fails (a full disk, a missing folder) removes its temporary file, leaves the target
as it was, and raises the OSError with the target's path as its ``filename``.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space(exc: OSError) -> bool:
    """The disk (or the user's quota) is full."""
    return exc.errno in NO_SPACE


def _stage(path: Path, payload: bytes) -> Path:
    """``payload`` in a fsynced temporary file beside ``path``; nothing is left behind when that fails."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)  # mkstemp makes 0600 files; a run directory should be shareable
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_many(payloads: dict[Path, bytes]) -> None:
    """All or nothing: every payload goes to its temporary file first, then each is renamed over its
    target, in order. A failure while writing them changes no target and leaves no temporary file."""
    staged: list[tuple[Path, Path]] = []
    target = None
    try:
        for target, payload in payloads.items():
            target = Path(target)
            staged.append((_stage(target, payload), target))
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and target is not None:
            exc.filename, exc.filename2 = str(target), None  # name the file the user knows, not the temporary
        raise


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    atomic_write_many({Path(path): payload})


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
