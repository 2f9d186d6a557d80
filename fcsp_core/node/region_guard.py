"""Opening the node's accounting files for the daemon, and what to do with one that cannot be trusted.

There is one file per uid (<dir>/users/<uid>.region); the daemon's handle maps root's own and every other
uid's trusted file (the library removes files another user put in a uid's place). A file of another magic,
version or size (truncated, corrupt, left by another fcsp version), or one whose slots hold values no fcsp
process writes, is never used. It is rebuilt only when no process maps it: a process that maps it may be
attached and accounting in it. Root's own file is rebuilt here (removed and created afresh, with the library's
own create path and modes); another uid's is removed, and that uid's next process creates it afresh. Otherwise
the daemon says which processes hold it and tries again later."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fcsp_core import region_node
from fcsp_core.region import FcspError, FcspStaleError, Region, RegionFile, region_file_path

log = logging.getLogger("fcsp.node")
SQUAT_PREFIX = ".squat-"  # FCSP_SQUAT_PREFIX: directories another user put in users/, moved aside by libfcsp


@dataclass(frozen=True)
class Refused:
    """Why the region is not in use now."""

    path: Path
    reason: str  # the library's message
    holders: tuple[int, ...]  # PIDs that map the refused file (it is rebuilt once there are none)

    def describe(self) -> str:
        if not self.holders:
            return f"region {self.path} refused: {self.reason}"
        shown = ", ".join(str(p) for p in self.holders[:8])
        more = f" and {len(self.holders) - 8} more" if len(self.holders) > 8 else ""
        return (
            f"region {self.path} refused and NOT rebuilt: {self.reason}; processes map it "
            f"(PID {shown}{more}), so it is kept until they exit"
        )


def mapping_pids(path: Path, proc: Path = Path("/proc")) -> list[int]:
    """PIDs of the processes that map the file at path (by device and inode, from /proc/<pid>/maps), this
    process excluded. Processes whose maps cannot be read (gone, another user's when not root) are skipped."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return []
    want_dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    want_ino = str(st.st_ino)
    me = os.getpid()
    pids = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(os.path.join(entry.path, "maps"), encoding="ascii", errors="replace") as fh:
                for line in fh:
                    fields = line.split(maxsplit=5)
                    if len(fields) >= 5 and fields[4] == want_ino and fields[3] == want_dev:
                        pids.append(int(entry.name))
                        break
        except OSError:
            continue
    return sorted(pids)


def open_region(directory: Path) -> Region | Refused:
    """The node region in directory, created if missing and checked; a refused one is rebuilt when no process
    maps it. Returns the open Region, or Refused when it must be left alone for now (the caller reports
    it)."""
    path = region_file_path(directory)
    try:
        reg = Region.open(directory, create=True)
    except FcspStaleError as exc:
        return _rebuild_or_refuse(directory, path, exc.message)
    try:
        region_node.check(reg)
    except FcspStaleError as exc:
        reg.close()  # unmap it first: this process must not count as a holder
        return _rebuild_or_refuse(directory, path, exc.message)
    except FcspError:
        reg.close()
        raise
    return reg


def _rebuild_or_refuse(directory: Path, path: Path, reason: str) -> Region | Refused:
    holders = mapping_pids(path)
    if holders:
        return Refused(path=path, reason=reason, holders=tuple(holders))
    log.warning("region %s refused: %s; no process maps it: rebuilding it", path, reason)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    reg = Region.open(directory, create=True)
    region_node.check(reg)
    log.warning("region %s rebuilt (layout version %d)", path, region_node.layout_version())
    return reg


class OtherFiles:
    """Other uids' refused files: removed once no process maps them (the uid's next process makes a new
    one)."""

    def __init__(self) -> None:
        self._reported: set[tuple[str, str]] = set()

    def tend(self, files: list[RegionFile]) -> list[Path]:
        """Remove the refused files (of a handle's region.files(), after a rescan) nobody maps; returns the
        paths removed."""
        removed = []
        refused = set()
        for f in files[1:]:
            if f.state != "refused":
                continue
            path = Path(f.path)
            holders = mapping_pids(path)
            if holders:
                refused.add((f.path, f.reason))
                if (f.path, f.reason) not in self._reported:
                    log.warning("%s", Refused(path=path, reason=f.reason, holders=tuple(holders)).describe())
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            log.warning("region %s of uid %d refused: %s; no process maps it: removed", path, f.uid, f.reason)
            removed.append(path)
        self._reported = refused
        return removed

    def sweep(self, directory: Path) -> None:
        """Delete the directories libfcsp moved out of users/ (another user's squats): without following
        links (shutil.rmtree resists symlink attacks where the platform allows, as on Linux)."""
        try:
            entries = [e for e in os.scandir(directory) if e.name.startswith(SQUAT_PREFIX)]
        except OSError:
            return
        for entry in entries:
            shutil.rmtree(entry.path, ignore_errors=True)
