"""One daemon per node: an exclusive flock(2) on <region dir>/node.lock, which holds the owner's PID.

The kernel drops the lock when its holder dies (even by SIGKILL), so a restarted daemon takes over at once;
the file itself is never removed (removing it would let two daemons lock two different files). It is the
daemon's own, mode 0600: flock(2) works through a read-only descriptor, so a file other users could open would
let any of them take the node before the daemon restarts."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "node.lock"


class AlreadyRunningError(RuntimeError):
    """Another daemon holds the node."""

    def __init__(self, pid: int | None, path: Path) -> None:
        who = f"PID {pid}" if pid else "another process"
        super().__init__(f"fcsp node: already running as {who} (lock {path})")
        self.pid = pid
        self.path = path


class NodeLock:
    """The node's single-instance lock; acquire() or AlreadyRunningError, release() on the way out."""

    def __init__(self, region_dir: Path) -> None:
        self.path = region_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunningError(holder, self.path) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
