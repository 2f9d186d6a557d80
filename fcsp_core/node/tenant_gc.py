"""Removing tenants whose processes are all gone, after a grace period.

An environment-configured tenant leaves with its last process on its own; a tenant under the policy table
stays (a scheduler's job may start its next step in it), and is removed once it has had no process for the
grace period and the scheduler no longer holds it (its policy entry is gone). The grace also covers a job
between two steps, and keeps its counters (peak, refused allocations) readable for a while after it ends."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fcsp_core._native import c_string
from fcsp_core.region import FcspBusyError, FcspError, FcspNotFoundError, Region
from fcsp_core.region_node import TENANT_POLICY, RawSnapshot

log = logging.getLogger("fcsp.node")
Key = tuple[int, int]  # (tenant index, created_ns): one incarnation of a tenant slot


class TenantGC:
    def __init__(self, grace_seconds: float, policy_tenants: Callable[[], set[str] | None]) -> None:
        """policy_tenants(): the tenants of the policy table, None when it cannot be read (then every policy
        tenant is kept)."""
        self.grace = grace_seconds
        self._policy_tenants = policy_tenants
        self._idle_since: dict[Key, float] = {}  # only tenants idle now: bounded by the region's 256

    def run(self, region: Region, snap: RawSnapshot, now: float) -> list[str]:
        """One pass over a fresh snapshot; returns the tenants removed."""
        idle: dict[Key, tuple[str, int, int]] = {}
        for t in snap.tenants():
            if int(t.nprocs) == 0:
                idle[(int(t.index), int(t.created_ns))] = (c_string(t.name), int(t.flags), int(t.uid))
        for key in [k for k in self._idle_since if k not in idle]:
            del self._idle_since[key]
        due = []
        for key, (name, flags, uid) in idle.items():
            since = self._idle_since.setdefault(key, now)
            if now - since >= self.grace:
                due.append((name, flags, uid))
        if not due:
            return []
        held = self._policy_tenants() if any(flags & TENANT_POLICY for _, flags, _ in due) else set()
        removed = []
        for name, flags, uid in due:
            if flags & TENANT_POLICY and (held is None or name in held):
                continue  # the scheduler still holds it (or we cannot tell)
            try:
                region.remove_tenant(name, uid)
            except (FcspBusyError, FcspNotFoundError):
                continue  # a process joined meanwhile, it went by itself, or its owner holds the file's lock
            except FcspError as exc:
                log.warning("cannot remove idle tenant %s: %s", name, exc.message)
                continue
            log.info("removed tenant %s: no process for %.0f s", name, self.grace)
            removed.append(name)
        return removed
