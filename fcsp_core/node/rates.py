"""fcsp_tenant_sm_time_ratio: the share of a GPU's time granted to a tenant's kernel launches over the last
window (0..1), from the SM limiter's counter of granted GPU time (fcsp_tenant_gpu_info.sm_granted_ns_total).

A ratio needs two readings of a counter; the daemon's loop takes them every `window_seconds`, so every scraper
sees the same value however often it scrapes. The counter itself is exported too
(fcsp_tenant_sm_time_seconds_total), for rate() over any window. Without that field in this libfcsp (no SM
limiter) this does nothing.
"""

from __future__ import annotations

import threading

from fcsp_core.region_node import RawSnapshot, snapshot_struct_fields

GRANTED_FIELD = "sm_granted_ns_total"
Key = tuple[int, int, int]  # (tenant index, tenant created_ns, region GPU index): a reused slot is a new key


class SmTimeRates:
    def __init__(self, window_seconds: float = 5.0) -> None:
        self.window = window_seconds
        self.available = GRANTED_FIELD in snapshot_struct_fields("struct fcsp_tenant_gpu_info")
        self._lock = threading.Lock()
        self._last_at: float | None = None
        self._last: dict[Key, int] = {}
        self._ratios: dict[Key, float] = {}
        self.version = 0  # moves with every reading (part of the exporter's rendering key)

    def due(self, now: float) -> bool:
        return self.available and (self._last_at is None or now - self._last_at >= self.window)

    def update(self, snap: RawSnapshot, now: float) -> None:
        """Take a reading (call when due()); ratios cover the time since the previous one."""
        if not self.available:
            return
        gpus = [int(g.index) for g in snap.gpus()]
        reading: dict[Key, int] = {}
        for t in snap.tenants():
            for g in gpus:
                reading[(int(t.index), int(t.created_ns), g)] = int(getattr(t.gpu[g], GRANTED_FIELD))
        ratios: dict[Key, float] = {}
        if self._last_at is not None and now > self._last_at:
            elapsed_ns = (now - self._last_at) * 1e9
            for key, granted in reading.items():
                before = self._last.get(key)
                if before is not None and granted >= before:
                    ratios[key] = min(1.0, (granted - before) / elapsed_ns)
        with self._lock:
            self._ratios = ratios  # only current tenants: series of ended tenants go
            self.version += 1
        self._last, self._last_at = reading, now

    def ratio(self, key: Key) -> float | None:
        with self._lock:
            return self._ratios.get(key)
