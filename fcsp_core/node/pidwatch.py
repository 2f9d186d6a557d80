"""pidfds of the processes in the region's slots: the kernel makes a pidfd readable the moment its process
exits, so the daemon reaps at once instead of at its next periodic pass.

A pidfd names one process for good (no PID reuse), but pidfd_open takes a PID: the slot's start time is
checked after opening, so a PID already reused by another process counts as an exit. Slots whose pidfd cannot
be opened (another PID namespace, no pidfd support, out of descriptors) are left to the periodic pass. Only
the kernel says a process is gone (pidfd_open's ESRCH, a readable start time that differs); a /proc entry that
cannot be read (out of descriptors, hidepid) means nothing, and whether a slot is reclaimed is decided in C
anyway."""

from __future__ import annotations

import os
import select
from collections.abc import Iterable

SlotKey = tuple[int, int, int]  # (slot index, pid, start time)


UNREADABLE = -1  # proc_start_time: the entry exists (or may) but cannot be read


def proc_start_time(pid: int, proc: str = "/proc") -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot); None if the process is gone, UNREADABLE if its
    entry cannot be read (out of descriptors, hidepid, permissions: not a sign of exit)."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return UNREADABLE
    # fields 3.. (the name, field 2, may hold spaces and parentheses)
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return UNREADABLE


class PidWatcher:
    """Keeps one pidfd per watched slot; wait() says whether one of them exited."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._fds: dict[SlotKey, int] = {}
        self._keys: dict[int, SlotKey] = {}  # fd -> slot
        self._wake_fds: set[int] = set()
        self.unwatched = 0  # slots without a pidfd (left to the periodic pass)

    def add_wake_fd(self, fd: int) -> None:
        """Also return from wait() when fd becomes readable (the daemon's stop pipe)."""
        self._poll.register(fd, select.POLLIN)
        self._wake_fds.add(fd)

    def sync(self, slots: Iterable[SlotKey]) -> bool:
        """Watch exactly these slots. True if one of them is already gone (reap now)."""
        wanted = set(slots)
        for key in [k for k in self._fds if k not in wanted]:
            self._close(key)
        gone = False
        unwatched = 0
        for key in wanted - self._fds.keys():
            _, pid, start_time = key
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                gone = True
                continue
            except OSError:
                unwatched += 1
                continue
            started = proc_start_time(pid)
            if started is None or started not in (start_time, UNREADABLE):  # exited, or the PID is reused
                os.close(fd)
                gone = True
                continue
            self._fds[key] = fd
            self._keys[fd] = key
            self._poll.register(fd, select.POLLIN)
        self.unwatched = unwatched
        return gone

    def wait(self, timeout_ms: int) -> tuple[list[SlotKey], bool]:
        """Block up to timeout_ms. Returns (the watched slots whose process exited, a wake fd is readable)."""
        try:
            ready = self._poll.poll(timeout_ms)
        except InterruptedError:
            return [], False
        exited: list[SlotKey] = []
        woken = False
        for fd, _ in ready:
            if fd in self._wake_fds:
                woken = True
            else:
                exited.append(self._keys[fd])
                # Its slot goes with the reap; until then (a deferred reap) the periodic pass retries it.
                self._poll.unregister(fd)
        return exited, woken

    def close(self) -> None:
        for key in list(self._fds):
            self._close(key)

    def _close(self, key: SlotKey) -> None:
        fd = self._fds.pop(key)
        del self._keys[fd]
        try:
            self._poll.unregister(fd)
        except KeyError:
            pass  # already unregistered when it became readable
        os.close(fd)

    def __len__(self) -> int:
        return len(self._fds)
