"""Reap passes: which slots to look at, when, and the log line of every reclaim.

A pass runs at once when a watched process exits (its pidfd turns readable) and otherwise every reap interval;
the periodic pass asks the kernel only about slots whose heartbeat went stale (they beat every 100 ms), so it
costs next to nothing while every process is alive. The C side (fcsp_region_reap) decides under the region
lock, with the start-time guard against PID reuse, and keeps the accounting exact (region_node.py, reclaim.c).
"""

from __future__ import annotations

import logging

from fcsp_core.node.pidwatch import PidWatcher, SlotKey
from fcsp_core.region import FcspBusyError, Region
from fcsp_core.region_node import PROC_LIVE, RawSnapshot, Reaper, ReapEvent, topology_seq

log = logging.getLogger("fcsp.node")


def describe(event: ReapEvent) -> str:
    """The log line of one reclaim: tenant, PID and bytes released (per GPU when there are several)."""
    if event.deferred:
        return (
            f"reap deferred pid={event.pid} tenant={event.tenant}: its processes stayed inside their "
            "accounting windows; retrying on the next pass"
        )
    line = f"reaped pid={event.pid} tenant={event.tenant} bytes={event.released_bytes}"
    if len(event.released_gpu_bytes) > 1:
        line += " gpus=" + ",".join(f"{g}:{b}" for g, b in sorted(event.released_gpu_bytes.items()))
    if event.pending:
        line += " (finished a reclaim left halfway)"
    elif event.recomputed:
        line += " (died inside an accounting window: tenant recomputed from its live processes)"
    return line


class ReapLoop:
    """The reaper of one open region: its pidfds, and the passes."""

    def __init__(self, region: Region, watcher: PidWatcher, heartbeat_stale_ms: int) -> None:
        self._reaper = Reaper(region)
        self._region = region
        self._watch = watcher
        self._stale_ms = heartbeat_stale_ms
        self._raw = RawSnapshot()
        self._seq: int | None = None
        self.reaped = 0

    def refresh_watch(self) -> bool:
        """Follow slot changes with pidfds (cheap when nothing changed: one load). True if a watched slot's
        process is already gone."""
        if topology_seq(self._region) == self._seq:
            return False
        try:
            snap = self._raw.take(self._region)
        except FcspBusyError:
            return False  # slots changing hands all the time: try on the next wake
        self._seq = snap.topology_seq
        slots = [
            (int(p.index), int(p.pid), int(p.start_time)) for p in snap.procs() if int(p.state) == PROC_LIVE
        ]
        return self._watch.sync(slots)

    def still_attached(self, slots: list[SlotKey]) -> bool:
        """Whether any of these slots still holds its (exited) process: one that exited normally has already
        left its slot, and needs no pass over every slot's /proc entry."""
        try:
            snap = self._raw.take(self._region)
        except FcspBusyError:
            return True
        live = {
            (int(p.index), int(p.pid), int(p.start_time)) for p in snap.procs() if int(p.state) == PROC_LIVE
        }
        return any(key in live for key in slots)

    def reap(self, urgent: bool) -> list[ReapEvent]:
        """One pass: urgent (a process exited) asks the kernel about every slot, else only stale ones."""
        try:
            events = self._reaper.reap(0 if urgent else self._stale_ms)
        except FcspBusyError:
            log.warning("reap pass skipped: the region lock stayed taken for 2 s")
            return []
        for event in events:
            if event.deferred:
                log.warning("%s", describe(event))
            else:
                self.reaped += 1
                log.info("%s", describe(event))
        return events
