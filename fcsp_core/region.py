"""The region manager: libfcsp's node region and policy table, seen from Python.

A thin layer over the C API (fcsp_api.h, through cffi in ABI mode): the C library owns the file formats, the
locking and the parsers; this module turns its structs into pydantic models and its error codes into typed
exceptions that carry the C message."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from fcsp_core import _native, c_constants
from fcsp_core._native import (
    FcspBusyError,
    FcspError,
    FcspFullError,
    FcspInvalidError,
    FcspIOError,
    FcspNotFoundError,
    FcspPermissionError,
    FcspStaleError,
)
from fcsp_core.config import MAX_GPUS, MemLimit, PolicyEntry, PolicyGpuLimit, parse_mem_limit, parse_sm_limit

__all__ = [
    "FcspBusyError",
    "FcspError",
    "FcspFullError",
    "FcspIOError",
    "FcspInvalidError",
    "FcspNotFoundError",
    "FcspPermissionError",
    "FcspStaleError",
    "GpuInfo",
    "MemLimit",
    "Process",
    "Region",
    "RegionFile",
    "Snapshot",
    "Tenant",
    "TenantGpuUsage",
    "default_region_dir",
    "fcsp_version",
    "parse_mem_limit",
    "parse_sm_limit",
    "policy_list",
    "policy_put",
    "policy_remove",
    "read_snapshot",
    "region_file_path",
]

_PATH_MAX = 4096
_C = c_constants.constants()
_PROC_STATES = {
    _C.FCSP_PROC_INFO_FREE: "free",
    _C.FCSP_PROC_INFO_CLAIMING: "claiming",
    _C.FCSP_PROC_INFO_LIVE: "live",
    _C.FCSP_PROC_INFO_REAPING: "reaping",
}
_FILE_STATES = {_C.FCSP_FILE_MAPPED: "mapped", _C.FCSP_FILE_REFUSED: "refused", _C.FCSP_FILE_ABSENT: "absent"}


# --------------------------------------------------------------------------------------------------
# Snapshot models
# --------------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GpuInfo(_Model):
    """A physical GPU known to the region."""

    index: int
    uuid: str
    sm_count: int
    total_bytes: int
    used_bytes: int  # sum over tenants


class TenantGpuUsage(_Model):
    """A tenant's accounting on one GPU. limit_bytes / sm_limit_pct: 0 = no cap."""

    gpu: int
    used_bytes: int
    limit_bytes: int
    peak_bytes: int
    refused_total: int
    sm_limit_pct: int
    sm_granted_ns_total: int = 0  # GPU time charged to admitted launches
    sm_throttled_ns_total: int = 0  # time launches waited for the tenant's tokens
    launches_total: int = 0


class Tenant(_Model):
    """A set of processes sharing one cap per GPU; it belongs to one uid (names are unique per uid)."""

    index: int
    name: str
    uid: int
    nprocs: int
    closing: bool  # being torn down
    ephemeral: bool  # removed by its last process (env-configured)
    from_policy: bool  # limits come from the policy table
    created_ns: int
    gpus: list[TenantGpuUsage]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def used_bytes(self) -> int:
        return sum(g.used_bytes for g in self.gpus)


class Process(_Model):
    """A process attached to a tenant (uid: the owner of the accounting file its slot is in)."""

    index: int
    pid: int
    uid: int
    tenant: str
    tenant_index: int
    state: str  # claiming, live or reaping
    start_time: int
    heartbeat_age_ms: int | None  # None before the first heartbeat
    gpu_used_bytes: list[int]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def used_bytes(self) -> int:
        return sum(self.gpu_used_bytes)


class Snapshot(_Model):
    """A copy of the accounting files the caller may read (root: every uid's; a user: their own), each
    consistent. exists=False: no region yet, lists empty, `note` says why. GPUs are merged by UUID across
    the files."""

    region_dir: str
    region_file: str  # the caller's own accounting file
    exists: bool
    note: str | None = None
    topology_seq: int = 0
    now_ms: int = 0
    files: int = 0  # accounting files read
    truncated: int = 0  # tenants and processes left out (more than a snapshot holds)
    gpus: list[GpuInfo] = []
    tenants: list[Tenant] = []
    processes: list[Process] = []

    def tenant(self, name: str, uid: int | None = None) -> Tenant | None:
        """The tenant `name` (of `uid`, when given; names are unique per uid)."""
        return next((t for t in self.tenants if t.name == name and uid in (None, t.uid)), None)


class RegionFile(_Model):
    """One uid's accounting file behind a Region (state: mapped, refused or absent; reason: why refused)."""

    uid: int
    state: str
    path: str
    reason: str


# --------------------------------------------------------------------------------------------------
# Region
# --------------------------------------------------------------------------------------------------


def region_file_path(directory: str | os.PathLike[str], uid: int | None = None) -> Path:
    """uid's (default: the caller's) accounting file in a region directory: <dir>/users/<uid>.region."""
    nat = _native.native()
    buf = nat.ffi.new(f"char[{_PATH_MAX}]")
    owner = os.geteuid() if uid is None else uid
    rc = nat.lib.fcsp_region_path(os.fsencode(directory), owner, buf, _PATH_MAX)
    _native.check(rc, None, "region path")
    return Path(_native.c_string(buf))


def fcsp_version() -> str:
    """libfcsp's version string."""
    return _native.c_string(_native.native().lib.fcsp_version())


def default_region_dir() -> Path:
    """$FCSP_REGION_DIR, else /run/fcsp (root, or if it exists), else $XDG_RUNTIME_DIR/fcsp (C decides)."""
    nat = _native.native()
    buf = nat.ffi.new(f"char[{_PATH_MAX}]")
    err = _native.err_buffer()
    _native.check(nat.lib.fcsp_region_dir_default(buf, _PATH_MAX, err, _native.ERR_LEN), err, "region dir")
    return Path(_native.c_string(buf))


def _dir_arg(directory: str | os.PathLike[str] | None) -> Path:
    return Path(directory) if directory is not None else default_region_dir()


class Region:
    """An open node region. Use as a context manager, or call close()."""

    def __init__(self, directory: Path, handle: Any) -> None:
        self.dir = directory
        self._handle: Any = handle

    @classmethod
    def open(cls, directory: str | os.PathLike[str] | None = None, create: bool = False) -> Region:
        """Open the region in `directory` (default: default_region_dir()).

        FcspNotFoundError if it does not exist and create is false.
        """
        path = _dir_arg(directory)
        nat = _native.native()
        out = nat.ffi.new("fcsp_region_handle **")
        err = _native.err_buffer()
        rc = nat.lib.fcsp_region_open(os.fsencode(path), 1 if create else 0, out, err, _native.ERR_LEN)
        _native.check(rc, err, f"opening the region in {path}")
        return cls(path, nat.ffi.gc(out[0], nat.lib.fcsp_region_close))

    def _h(self) -> Any:
        if self._handle is None:
            raise ValueError("the region is closed")
        return self._handle

    @property
    def handle(self) -> Any:
        """The C handle (fcsp_region_handle *), for the other bindings of the C API (region_node.py)."""
        return self._h()

    @property
    def file(self) -> str:
        """The caller's own accounting file's path (<dir>/users/<euid>.region)."""
        return _native.c_string(_native.native().lib.fcsp_region_file(self._h()))

    def rescan(self) -> int:
        """Root: map the accounting files of uids that appeared since, and remove files another user put in a
        uid's place (logged on stderr). Returns how many files are mapped."""
        return int(_native.native().lib.fcsp_region_rescan(self._h()))

    def trust_gpu(self, uuid: str) -> None:
        """Vouch for a GPU of this node (the daemon, from NVML): snapshots always keep room for it, whatever
        GPU entries other uids wrote into their own files."""
        rc = _native.native().lib.fcsp_region_trust_gpu(self._h(), uuid.encode("ascii"))
        _native.check(rc, None, f"trusting GPU {uuid}")

    def files(self) -> list[RegionFile]:
        """The accounting files behind this handle (the caller's own first)."""
        nat = _native.native()
        cap = 64
        while True:
            out = nat.ffi.new(f"struct fcsp_region_file_info[{cap}]")
            n = int(nat.lib.fcsp_region_files(self._h(), out, cap))
            if n < cap:
                return [
                    RegionFile(
                        uid=int(f.uid),
                        state=_FILE_STATES.get(int(f.state), str(int(f.state))),
                        path=_native.c_string(f.path),
                        reason=_native.c_string(f.reason),
                    )
                    for f in (out[i] for i in range(n))
                ]
            cap *= 2

    def close(self) -> None:
        if self._handle is not None:
            _native.native().ffi.release(self._handle)
            self._handle = None

    def __enter__(self) -> Region:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def snapshot(self) -> Snapshot:
        """A consistent copy of GPUs, tenants and processes."""
        nat = _native.native()
        snap = nat.ffi.new("struct fcsp_snapshot *")
        _native.check(nat.lib.fcsp_region_snapshot(self._h(), snap), None, "region snapshot")
        return _snapshot_model(snap, str(self.dir), self.file)

    def remove_tenant(self, name: str, uid: int | None = None) -> None:
        """Remove uid's (default: the caller's) tenant with no process (FcspBusyError if it has some,
        FcspNotFoundError if absent)."""
        owner = os.geteuid() if uid is None else uid
        rc = _native.native().lib.fcsp_region_tenant_remove(self._h(), owner, name.encode("utf-8"))
        _native.check(rc, None, f"removing tenant {name!r}")


def read_snapshot(directory: str | os.PathLike[str] | None = None) -> Snapshot:
    """A snapshot of the region in `directory` (default: the node's); an empty one if there is none."""
    try:
        path = _dir_arg(directory)
    except FcspNotFoundError as exc:  # no region directory applies here (not root, no XDG_RUNTIME_DIR)
        return Snapshot(region_dir="", region_file="", exists=False, note=exc.message)
    try:
        with Region.open(path, create=False) as reg:
            return reg.snapshot()
    except FcspNotFoundError as exc:
        return Snapshot(region_dir=str(path), region_file="", exists=False, note=exc.message)


def _snapshot_model(snap: Any, region_dir: str, region_file: str) -> Snapshot:
    ngpus = min(int(snap.ngpus), MAX_GPUS)
    gpus = [
        GpuInfo(
            index=int(g.index),
            uuid=_native.c_string(g.uuid),
            sm_count=int(g.sm_count),
            total_bytes=int(g.total_bytes),
            used_bytes=int(g.used_bytes),
        )
        for g in (snap.gpus[i] for i in range(ngpus))
    ]
    tenants: list[Tenant] = []
    names: dict[int, str] = {}
    for i in range(min(int(snap.ntenants), len(snap.tenants))):
        t = snap.tenants[i]
        name = _native.c_string(t.name)
        names[int(t.index)] = name
        nprocs = int(t.nprocs)
        tenants.append(
            Tenant(
                index=int(t.index),
                name=name,
                uid=int(t.uid),
                nprocs=0 if nprocs == _C.FCSP_TENANT_INFO_CLOSING else nprocs,
                closing=nprocs == _C.FCSP_TENANT_INFO_CLOSING,
                ephemeral=bool(t.flags & _C.FCSP_TENANT_INFO_EPHEMERAL),
                from_policy=bool(t.flags & _C.FCSP_TENANT_INFO_POLICY),
                created_ns=int(t.created_ns),
                gpus=[
                    TenantGpuUsage(
                        gpu=j,
                        used_bytes=int(u.used_bytes),
                        limit_bytes=int(u.limit_bytes),
                        peak_bytes=int(u.peak_bytes),
                        refused_total=int(u.refused_total),
                        sm_limit_pct=int(u.sm_limit_pct),
                        sm_granted_ns_total=int(u.sm_granted_ns_total),
                        sm_throttled_ns_total=int(u.sm_throttled_ns_total),
                        launches_total=int(u.launches_total),
                    )
                    for j, u in ((j, t.gpu[j]) for j in range(ngpus))
                ],
            )
        )
    now_ms = int(snap.now_ms)
    processes = []
    for i in range(min(int(snap.nprocs), len(snap.procs))):
        p = snap.procs[i]
        heartbeat = int(p.heartbeat_ms)
        processes.append(
            Process(
                index=int(p.index),
                pid=int(p.pid),
                uid=int(p.uid),
                tenant=names.get(int(p.tenant), f"#{int(p.tenant)}"),
                tenant_index=int(p.tenant),
                state=_PROC_STATES.get(int(p.state), str(int(p.state))),
                start_time=int(p.start_time),
                heartbeat_age_ms=max(0, now_ms - heartbeat) if heartbeat else None,
                gpu_used_bytes=[int(p.used_bytes[j]) for j in range(ngpus)],
            )
        )
    return Snapshot(
        region_dir=region_dir,
        region_file=region_file,
        exists=True,
        topology_seq=int(snap.topology_seq),
        now_ms=now_ms,
        files=int(snap.nfiles),
        truncated=int(snap.truncated),
        gpus=gpus,
        tenants=tenants,
        processes=processes,
    )


# --------------------------------------------------------------------------------------------------
# Policy table
# --------------------------------------------------------------------------------------------------


def _policy_struct(entry: PolicyEntry) -> Any:
    nat = _native.native()
    s: Any = nat.ffi.new("struct fcsp_policy_in *")
    s.tenant = entry.tenant.encode("utf-8")
    s.uid = -1 if entry.uid is None else entry.uid
    s.mem_limit_bytes = entry.mem_limit_bytes
    s.sm_limit_pct = entry.sm_limit_pct
    s.sm_mode = nat.lib.FCSP_POLICY_SM_SPATIAL if entry.sm_mode == "spatial" else nat.lib.FCSP_POLICY_SM_TIME
    s.ngpus = len(entry.gpus)
    for i, gpu in enumerate(entry.gpus):
        s.gpu[i].uuid = gpu.uuid.encode("ascii")
        s.gpu[i].mem_limit_bytes = gpu.mem_limit_bytes
        s.gpu[i].sm_limit_pct = gpu.sm_limit_pct
    return s


def _policy_model(s: Any) -> PolicyEntry:
    uid = int(s.uid)
    return PolicyEntry(
        tenant=_native.c_string(s.tenant),
        uid=None if uid < 0 else uid,
        mem_limit_bytes=int(s.mem_limit_bytes),
        sm_limit_pct=int(s.sm_limit_pct),
        sm_mode="spatial" if int(s.sm_mode) == _native.native().lib.FCSP_POLICY_SM_SPATIAL else "time",
        gpus=[
            PolicyGpuLimit(
                uuid=_native.c_string(g.uuid),
                mem_limit_bytes=int(g.mem_limit_bytes),
                sm_limit_pct=int(g.sm_limit_pct),
            )
            for g in (s.gpu[i] for i in range(min(int(s.ngpus), MAX_GPUS)))
        ],
    )


def policy_put(entry: PolicyEntry, directory: str | os.PathLike[str] | None = None) -> None:
    """Add or replace a tenant's limits in the policy table (only the directory's owner may)."""
    path = _dir_arg(directory)
    nat = _native.native()
    err = _native.err_buffer()
    rc = nat.lib.fcsp_policy_put(os.fsencode(path), _policy_struct(entry), err, _native.ERR_LEN)
    _native.check(rc, err, f"putting the policy of {entry.tenant!r}")


def policy_remove(tenant: str, directory: str | os.PathLike[str] | None = None) -> None:
    """Remove a tenant's entry from the policy table."""
    path = _dir_arg(directory)
    nat = _native.native()
    err = _native.err_buffer()
    rc = nat.lib.fcsp_policy_remove(os.fsencode(path), tenant.encode("utf-8"), err, _native.ERR_LEN)
    _native.check(rc, err, f"removing the policy of {tenant!r}")


def policy_list(directory: str | os.PathLike[str] | None = None) -> list[PolicyEntry]:
    """All entries of the policy table."""
    path = _dir_arg(directory)
    nat = _native.native()
    max_entries = 256  # FCSP_MAX_TENANTS
    out = nat.ffi.new(f"struct fcsp_policy_in[{max_entries}]")
    err = _native.err_buffer()
    rc = nat.lib.fcsp_policy_list(os.fsencode(path), out, max_entries, err, _native.ERR_LEN)
    count = _native.check(rc, err, "policy list")
    return [_policy_model(out[i]) for i in range(count)]
