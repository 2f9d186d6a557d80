"""Which scheduler job a process belongs to, from what the process cannot forge.

A process can set any environment variable, rename itself (prctl, argv) and pick any tenant name, so none of
those says which job it is in. What it cannot change:

- **Its cgroup** (Slurm's cgroup plugins put every step in `.../job_<J>/step_<S>/...`, under cgroup v1
  `/slurm/uid_<U>/job_<J>/step_<S>` and v2 `/system.slice/slurmstepd.scope/job_<J>/step_<S>`). Leaving it
  takes write access to another cgroup's `cgroup.procs`, which a job does not have.
- **Its ancestors' identity as the kernel reports it**: a process whose chain of parents reaches a
  `slurmstepd` owned by root (real uid 0, which a user cannot fake: only root starts root processes), whose
  command line `slurmstepd: [<J>.<S>]` root wrote. This is how a node without cgroup tracking
  (proctrack/linuxproc) is covered.
- **A Ray worker tree**: a process below a `raylet` whose worker (the raylet's child on the chain, pid W) is
  fenced by fcsp (its tenant is `ray-<W>`: fcsp_ray names each worker's tenant by its pid). Ray runs as the
  user, so a process can leave this tree by double-forking to be re-parented to init; the README says so.

Each reading is bounded: at most MAX_DEPTH ancestors, at most READ_MAX bytes per /proc file. An unreadable
entry (gone, hidepid) is "not known to be in a job", never an error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

MAX_DEPTH = 64  # ancestors followed (pid_max chains are short in practice; this bounds a pass)
READ_MAX = 4096
_SLURM_CGROUP = re.compile(r"/job_(\d+)/step_([A-Za-z0-9_]+)(?:/|$)")
_SLURM_STEPD = re.compile(r"^slurmstepd: \[(\d+)\.([A-Za-z0-9_]+)\]")


@dataclass(frozen=True)
class ProcInfo:
    """What /proc says about one process (field names as in proc(5))."""

    pid: int
    ppid: int
    comm: str
    start_time: int  # field 22 of stat, clock ticks since boot


@dataclass(frozen=True)
class Job:
    """A scheduler job a process belongs to: scheduler is `slurm` or `ray`; tenants are the fcsp tenant names
    that fence it (any of them counts as attached to the job)."""

    scheduler: str
    job: str  # Slurm: `<jobid>.<step>`; Ray: the worker's pid
    how: str  # `cgroup` or `ancestry`
    tenants: tuple[str, ...]  # the step's tenant first, then the job's


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        return os.read(fd, READ_MAX)
    except OSError:
        return None
    finally:
        os.close(fd)


def proc_info(pid: int) -> ProcInfo | None:
    """pid's parent, name and start time (one read of /proc/<pid>/stat); None when /proc cannot say (gone,
    hidden)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    open_paren, close_paren = stat.find(b"("), stat.rfind(b")")  # the name may hold spaces and parentheses
    if open_paren < 0 or close_paren < open_paren:
        return None
    fields = stat[close_paren + 2 :].split()
    if len(fields) < 20:
        return None
    try:
        return ProcInfo(
            pid=pid,
            ppid=int(fields[1]),
            comm=stat[open_paren + 1 : close_paren].decode(errors="replace"),
            start_time=int(fields[19]),
        )
    except ValueError:
        return None


def real_uid(pid: int) -> int | None:
    """pid's real uid (/proc/<pid>/status; not the owner of /proc/<pid>, which a process that makes itself
    non-dumpable turns into root); None when /proc cannot say."""
    status = _read(f"/proc/{pid}/status")
    for line in (status or b"").splitlines():
        if line.startswith(b"Uid:"):
            parts = line.split()
            return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return None


def _slurm_job(job: str, step: str, how: str) -> Job:
    tenants = (f"slurm-{job}.{step}", f"slurm-{job}")
    return Job(scheduler="slurm", job=f"{job}.{step}", how=how, tenants=tenants)


def slurm_job_by_cgroup(pid: int) -> Job | None:
    """The Slurm step of pid's cgroup (any hierarchy), if it is in one."""
    text = _read(f"/proc/{pid}/cgroup")
    if text is None:
        return None
    for line in text.decode(errors="replace").splitlines():
        path = line.split(":", 2)[-1]
        m = _SLURM_CGROUP.search(path)
        if m:
            return _slurm_job(m.group(1), m.group(2), "cgroup")
    return None


def job_of(pid: int, info: ProcInfo | None = None) -> Job | None:
    """The scheduler job pid belongs to (None: none known). The cgroup wins; else the ancestry.

    A Ray tree is reported whether or not the worker is fenced; the caller checks the tenants."""
    job = slurm_job_by_cgroup(pid)
    if job is not None:
        return job
    child = info or proc_info(pid)
    if child is None:
        return None
    current = child
    for _ in range(MAX_DEPTH):
        if current.ppid <= 1:
            return None
        parent = proc_info(current.ppid)
        if parent is None:
            return None
        if parent.comm == "slurmstepd" and real_uid(parent.pid) == 0:
            cmdline = _read(f"/proc/{parent.pid}/cmdline") or b""
            m = _SLURM_STEPD.match(cmdline.split(b"\0", 1)[0].decode(errors="replace"))
            if m:
                return _slurm_job(m.group(1), m.group(2), "ancestry")
        if parent.comm == "raylet":
            worker = current.pid
            return Job(scheduler="ray", job=str(worker), how="ancestry", tenants=(f"ray-{worker}",))
        current = parent
    return None


__all__ = ["Job", "ProcInfo", "job_of", "proc_info", "real_uid", "slurm_job_by_cgroup"]
