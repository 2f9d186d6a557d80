"""The region manager's node-daemon side: reaping dead processes, checking a region for corruption, preparing
the region directory and the policy table, and a raw snapshot view for the exporter's per-scrape path.

Like region.py, a thin layer over the C API (fcsp_api.h): reclaiming, locking and the checks live in C.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fcsp_core import _native, c_constants
from fcsp_core.config import MAX_GPUS
from fcsp_core.region import Region

_C = c_constants.constants()  # fcsp_api.h's #defines
REAP_RECOMPUTED: int = _C.FCSP_REAP_RECOMPUTED
REAP_PENDING: int = _C.FCSP_REAP_PENDING
REAP_DEFERRED: int = _C.FCSP_REAP_DEFERRED
PROC_LIVE: int = _C.FCSP_PROC_INFO_LIVE
TENANT_EPHEMERAL: int = _C.FCSP_TENANT_INFO_EPHEMERAL
TENANT_POLICY: int = _C.FCSP_TENANT_INFO_POLICY
TENANT_CLOSING: int = _C.FCSP_TENANT_INFO_CLOSING


@dataclass(frozen=True)
class ReapEvent:
    """One reclaim of a dead process's slot (fcsp_reap_event)."""

    pid: int
    uid: int  # whose accounting file
    start_time: int
    tenant: str
    tenant_index: int
    proc_index: int
    released_bytes: int
    released_gpu_bytes: dict[int, int]  # region GPU index -> bytes, GPUs with bytes only
    recomputed: bool  # it died inside an accounting window: its tenant was recomputed from the live slots
    pending: bool  # a reaper died halfway through it (or deferred it) and this one finished it
    deferred: bool  # the tenant could not be quiesced in time: retried on the next pass


def layout_version() -> int:
    """The node region layout version libfcsp speaks (FCSP_REGION_VERSION)."""
    return int(_native.native().lib.fcsp_region_layout_version())


def prepare_dir(directory: str | os.PathLike[str]) -> None:
    """Create the region directory if missing (root: 0755, a user: 0700) and check its owner and mode."""
    nat = _native.native()
    err = _native.err_buffer()
    rc = nat.lib.fcsp_region_dir_prepare(os.fsencode(directory), err, _native.ERR_LEN)
    _native.check(rc, err, f"preparing the region directory {directory}")


def policy_init(directory: str | os.PathLike[str]) -> None:
    """Create the policy table if missing (empty, 0644) and check it (FcspStaleError for another layout)."""
    nat = _native.native()
    err = _native.err_buffer()
    rc = nat.lib.fcsp_policy_init(os.fsencode(directory), err, _native.ERR_LEN)
    _native.check(rc, err, f"preparing the policy table in {directory}")


def topology_seq(region: Region) -> int:
    """A number that moves whenever a GPU, tenant or process slot of a mapped file changes state, or the set
    of mapped files changes (one load per file, no copy)."""
    return int(_native.native().lib.fcsp_region_topology_seq(region.handle))


def check(region: Region) -> None:
    """FcspStaleError naming the first value no fcsp process writes in the caller's own file (a corrupt
    region), else nothing. Another uid's corrupt file is unmapped and listed as refused in region.files()."""
    nat = _native.native()
    err = _native.err_buffer()
    rc = nat.lib.fcsp_region_check(region.handle, err, _native.ERR_LEN)
    _native.check(rc, err, f"checking the region {region.file}")


class Reaper:
    """Reclaims dead processes' slots of one open region (its event buffer is reused between passes)."""

    def __init__(self, region: Region, max_events: int = 256) -> None:
        self.region = region
        self._max = max_events
        self._events: Any = _native.native().ffi.new(f"struct fcsp_reap_event[{max_events}]")

    def reap(self, min_heartbeat_age_ms: int = 0) -> list[ReapEvent]:
        """One pass (fcsp_region_reap) over every slot whose process is dead.

        A live slot is checked against the kernel only when its heartbeat is at least min_heartbeat_age_ms old
        (0: all). FcspBusyError if the region lock stays taken."""
        nat = _native.native()
        rc = nat.lib.fcsp_region_reap(self.region.handle, min_heartbeat_age_ms, self._events, self._max)
        count = _native.check(rc, None, "reaping the region")
        return [_event(self._events[i]) for i in range(count)]


def _event(e: Any) -> ReapEvent:
    flags = int(e.flags)
    return ReapEvent(
        pid=int(e.pid),
        uid=int(e.uid),
        start_time=int(e.start_time),
        tenant=_native.c_string(e.tenant),
        tenant_index=int(e.tenant_index),
        proc_index=int(e.proc_index),
        released_bytes=int(e.released_bytes),
        released_gpu_bytes={
            g: int(e.released_gpu_bytes[g]) for g in range(MAX_GPUS) if e.released_gpu_bytes[g]
        },
        recomputed=bool(flags & REAP_RECOMPUTED),
        pending=bool(flags & REAP_PENDING),
        deferred=bool(flags & REAP_DEFERRED),
    )


class RawSnapshot:
    """A region snapshot kept as the C struct (struct fcsp_snapshot), read field by field.

    For paths that run often (every scrape, every reaper pass) and need a few fields of many records: building
    region.Snapshot models costs milliseconds. The records are cffi structs: fields as in fcsp_api.h.
    """

    def __init__(self) -> None:
        self.c: Any = _native.native().ffi.new("struct fcsp_snapshot *")

    def take(self, region: Region) -> RawSnapshot:
        """Fill this snapshot from region (fcsp_region_snapshot); returns self."""
        rc = _native.native().lib.fcsp_region_snapshot(region.handle, self.c)
        _native.check(rc, None, "region snapshot")
        return self

    @property
    def topology_seq(self) -> int:
        return int(self.c.topology_seq)

    @property
    def now_ms(self) -> int:
        return int(self.c.now_ms)

    @property
    def reaped_total(self) -> int:
        return int(self.c.reaped_total)

    def gpus(self) -> Iterator[Any]:
        """struct fcsp_gpu_info records of the GPUs the region knows."""
        c = self.c
        return (c.gpus[i] for i in range(min(int(c.ngpus), MAX_GPUS)))

    def tenants(self) -> Iterator[Any]:
        """struct fcsp_tenant_info records of the active tenants of every file read (gpu[] indexed by the
        snapshot's GPU index; uid: the file's owner)."""
        c = self.c
        return (c.tenants[i] for i in range(int(c.ntenants)))

    def digest(self) -> bytes:
        """A digest of the GPU and tenant records and the node counters: equal digests, equal metrics."""
        ffi = _native.native().ffi
        c = self.c
        h = hashlib.blake2b(digest_size=16)
        h.update(struct.pack("<IIQ", int(c.ngpus), int(c.ntenants), int(c.reaped_total)))
        h.update(ffi.buffer(c.gpus, min(int(c.ngpus), MAX_GPUS) * ffi.sizeof("struct fcsp_gpu_info")))
        h.update(ffi.buffer(c.tenants, int(c.ntenants) * ffi.sizeof("struct fcsp_tenant_info")))
        return h.digest()

    def procs(self) -> Iterator[Any]:
        """struct fcsp_proc_info records of the live (and being reaped) process slots."""
        c = self.c
        return (c.procs[i] for i in range(int(c.nprocs)))


def snapshot_struct_fields(struct: str) -> frozenset[str]:
    """Field names of a C API struct ("struct fcsp_tenant_gpu_info") in this libfcsp's header."""
    return frozenset(name for name, _ in _native.native().ffi.typeof(struct).fields)
