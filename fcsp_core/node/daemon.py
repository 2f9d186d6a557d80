"""The node daemon's main loop: take the node, own the region, reap, remove idle tenants, keep the job map and
the SM-time windows, and serve metrics until SIGTERM/SIGINT.

Threads: this loop does every region change (reaps, tenant removals, checks: the region lock is a flock,
shared by every thread of the process, so they stay on one thread); the HTTP server's threads and the audit's
(audit.py) only take snapshots, through RegionHolder, which swaps and closes the region only while no snapshot
reads it."""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from fcsp_core import __version__, region_node
from fcsp_core.node.audit import Auditor, AuditThread
from fcsp_core.node.config import NodeConfig
from fcsp_core.node.exporter import BuildInfo, ExtraFamilies, FcspCollector
from fcsp_core.node.instance_lock import NodeLock
from fcsp_core.node.jobmap import DcgmJobMap
from fcsp_core.node.labels import LabelCache
from fcsp_core.node.metrics_http import MetricsServer, serve
from fcsp_core.node.mps import MpsManager, policy_shares
from fcsp_core.node.nvml import NvmlView
from fcsp_core.node.pidwatch import PidWatcher
from fcsp_core.node.rates import SmTimeRates
from fcsp_core.node.reaper import ReapLoop
from fcsp_core.node.region_guard import OtherFiles, Refused, open_region
from fcsp_core.node.tenant_gc import TenantGC
from fcsp_core.region import (
    FcspBusyError,
    FcspError,
    FcspStaleError,
    Region,
    RegionFile,
    fcsp_version,
    policy_list,
    policy_put,
    region_file_path,
)
from fcsp_core.region_node import RawSnapshot

log = logging.getLogger("fcsp.node")
HOUSEKEEPING_SECONDS = 1.0
# How often the loop looks for new slots to watch (one load): a process that dies sooner after attaching than
# this is reaped when it is seen, so this bounds the reap latency of very short-lived processes.
WATCH_POLL_MS = 10
REFUSAL_REPEAT_SECONDS = 60.0


class RegionHolder:
    """The open region, shared between the loop and the scrapes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.region: Region | None = None

    def snapshot_into(self, raw: RawSnapshot) -> bool:
        """Fill raw from the region; False while there is no trusted region."""
        with self._lock:
            if self.region is None:
                return False
            for _ in range(3):
                try:
                    raw.take(self.region)
                    return True
                except FcspBusyError:
                    continue  # slots changed hands all through the copy: try again
            raise FcspBusyError(-7, "the region's slots kept changing during the snapshot")

    def rescan(self) -> list[RegionFile]:
        """Map new uids' files (under the lock: it changes what snapshots read); returns the files."""
        with self._lock:
            if self.region is None:
                return []
            self.region.rescan()
            return self.region.files()

    def check(self) -> None:
        """region_node.check (under the lock: it unmaps another uid's corrupt file)."""
        with self._lock:
            if self.region is not None:
                region_node.check(self.region)

    def replace(self, region: Region | None) -> None:
        with self._lock:
            old, self.region = self.region, region
        if old is not None and old is not region:
            old.close()


class NodeDaemon:
    def __init__(self, config: NodeConfig, region_dir: Path) -> None:
        self.config = config
        self.region_dir = region_dir
        self.holder = RegionHolder()
        self.hostname = socket.gethostname()
        self.labels = LabelCache()
        self.rates = SmTimeRates(config.sm_time_window_seconds)
        self.nvml: NvmlView | None = None
        self.server: MetricsServer | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.gc = TenantGC(config.tenant_grace_seconds, self._policy_tenants)
        self.jobmap: DcgmJobMap | None = None
        self.audit: AuditThread | None = None
        self._watcher: PidWatcher | None = None
        self._reap: ReapLoop | None = None
        self._raw = RawSnapshot()
        self._stop = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._next_open = 0.0
        self._last_refusal: tuple[str, float] | None = None
        self.lock = NodeLock(region_dir)
        self.others = OtherFiles()
        self.mps = MpsManager(config.mps, region_dir, self._mps_shares) if config.mps.enabled else None

    # ---- setup ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the node (AlreadyRunningError if another daemon has it) and prepare everything but the
        loop."""
        region_node.prepare_dir(self.region_dir)
        self.lock.acquire()
        log.info(
            "fcsp node %s (libfcsp %s, region layout %d) on %s, region directory %s, PID %d",
            __version__, fcsp_version(), region_node.layout_version(), self.hostname, self.region_dir,
            os.getpid(),
        )  # fmt: skip
        self._prepare_policy()
        if self.config.dcgm.job_map_dir:
            self.jobmap = DcgmJobMap(self.config.dcgm.job_map_dir)
        self.nvml = NvmlView.open()
        if self.mps is not None:
            self.mps.start()
        auditor = self._auditor()
        extra: list[ExtraFamilies] = [
            x for x in (self.mps, auditor.stats if auditor else None) if x is not None
        ]
        build = BuildInfo(
            version=__version__, libfcsp=fcsp_version(), region_layout=region_node.layout_version()
        )
        self.collector = FcspCollector(
            self.holder.snapshot_into,
            self.hostname,
            build,
            labels=self.labels,
            nvml=self.nvml,
            rates=self.rates,
            extra=extra,
        )
        self.registry.register(self.collector)
        if auditor is not None:
            self.audit = AuditThread(auditor)

    def _auditor(self) -> Auditor | None:
        a = self.config.audit
        if not a.enabled:
            log.info("audit off ([audit] enabled = false)")
            return None
        if self.nvml is None:
            log.warning("audit off: NVML is unavailable, so no process's memory can be checked")
            return None
        log.info(
            "auditing every %d ms against NVML (action %s, context allowance %d bytes per process)",
            a.interval_ms, a.action, a.context_allowance_bytes,
        )  # fmt: skip
        return Auditor(a, self.nvml, self.holder.snapshot_into, self._policy_tenants, self.labels)

    def _prepare_policy(self) -> None:
        try:
            region_node.policy_init(self.region_dir)
        except FcspError as exc:
            log.error("policy table: %s (tenants fall back to their own limits)", exc.message)
            return
        for entry in self.config.policy:
            try:
                policy_put(entry.entry(), self.region_dir)
                log.info("policy: tenant %s written from the configuration", entry.tenant)
            except FcspError as exc:
                log.error("policy: cannot write tenant %s: %s", entry.tenant, exc.message)

    def _policy_tenants(self) -> set[str] | None:
        try:
            return {e.tenant for e in policy_list(self.region_dir)}
        except FcspError as exc:
            log.warning("policy table unreadable (%s): keeping every idle policy tenant", exc.message)
            return None

    def _mps_shares(self) -> dict[int, int]:
        try:
            return policy_shares(list(policy_list(self.region_dir)))
        except FcspError:
            return {}

    def serve_metrics(self) -> None:
        m = self.config.metrics
        if not m.enabled:
            return
        self.server = serve(
            m.address, m.port, self.collector.render, m.max_connections, m.idle_timeout_seconds
        )
        log.info("serving metrics on %s", self.server.url)

    def metrics_text(self) -> bytes:
        return generate_latest(self.registry)

    # ---- the region ----------------------------------------------------------------------------------------

    def open_region(self) -> bool:
        """Open (or rebuild) the region; True when it is in use."""
        try:
            result: Region | Refused = open_region(self.region_dir)
        except FcspError as exc:
            result = Refused(path=region_file_path(self.region_dir), reason=exc.message, holders=())
        if isinstance(result, Refused):
            self._next_open = time.monotonic() + self.config.rebuild_retry_seconds
            self._report_refusal(result.describe())
            return False
        self._last_refusal = None
        for uuid in self.nvml.uuids() if self.nvml is not None else []:
            result.trust_gpu(uuid)  # the node's real GPUs keep their place in snapshots
        self.holder.replace(result)
        if self._watcher is not None:
            self._watcher.close()
        self._watcher = PidWatcher()
        self._watcher.add_wake_fd(self._wake_r)
        self._reap = ReapLoop(result, self._watcher, self.config.heartbeat_stale_ms)
        self._reap.reap(urgent=True)  # processes that died while no daemon ran
        log.info(
            "reaping in %s (on exit through pidfds; every %d ms for heartbeats older than %d ms)",
            result.file, self.config.reap_interval_ms, self.config.heartbeat_stale_ms,
        )  # fmt: skip
        return True

    def _report_refusal(self, text: str) -> None:
        """Log a refusal when it is new or changed, and a repeat at most once a minute (retries are
        frequent)."""
        now = time.monotonic()
        last = self._last_refusal
        if last is not None and last[0] == text and now - last[1] < REFUSAL_REPEAT_SECONDS:
            return
        log.error(
            "%s%s; retrying every %g s",
            "still: " if last and last[0] == text else "",
            text,
            self.config.rebuild_retry_seconds,
        )
        self._last_refusal = (text, now)

    def _drop_region(self, why: str) -> None:
        log.error("%s: the region is no longer used (no reaping, no tenant metrics) until it is rebuilt", why)
        self.holder.replace(None)
        self._reap = None
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self._next_open = time.monotonic() + self.config.rebuild_retry_seconds

    # ---- the loop ------------------------------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self._stop = True
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # already woken

    def housekeeping(self, now: float) -> None:
        """Other uids' files (new, squatted, refused), tenant GC, the job map and the MPS daemon (every
        second)."""
        self.others.tend(self.holder.rescan())
        self.others.sweep(self.region_dir)
        if self.mps is not None:
            self.mps.poll()
        region = self.holder.region
        if region is None or not self.holder.snapshot_into(self._raw):
            return
        self.gc.run(region, self._raw, now)
        if self.jobmap is not None:
            self.jobmap.update(self._raw, self._gpu_name)

    def sample_rates(self, now: float) -> None:
        """A reading for the SM-time ratios (every sm_time_window_seconds)."""
        if self.holder.region is not None and self.holder.snapshot_into(self._raw):
            self.rates.update(self._raw, now)

    def _gpu_name(self, uuid: str, region_index: int) -> str:
        index = self.nvml.index(uuid) if self.nvml else None
        return str(index if index is not None else region_index)

    def run_loop(self) -> None:
        if self.audit is not None:
            self.audit.start()  # its own thread: never in this loop's way (audit.py says why)
        interval = self.config.reap_interval_ms / 1000.0
        next_periodic = next_house = 0.0
        next_check = time.monotonic() + self.config.check_interval_seconds
        while not self._stop:
            now = time.monotonic()
            if self._reap is None or self._watcher is None:
                if now < self._next_open or not self.open_region():
                    self._sleep(min(max(self._next_open - now, 0.05), 1.0))
                continue
            gone = self._reap.refresh_watch()
            timeout_ms = 0 if gone else min(WATCH_POLL_MS, int(max(0.0, next_periodic - now) * 1000))
            exited, woken = self._watcher.wait(timeout_ms)
            if woken:
                self._drain_wake()
                continue
            if gone or (exited and self._reap.still_attached(exited)):
                self._reap.reap(urgent=True)
            now = time.monotonic()
            if now >= next_periodic:
                self._reap.reap(urgent=False)
                next_periodic = now + interval
            if now >= next_house:
                self.housekeeping(now)
                next_house = now + HOUSEKEEPING_SECONDS
            if self.rates.due(now):
                self.sample_rates(now)
            if now >= next_check:
                next_check = now + self.config.check_interval_seconds
                self._check()

    def _check(self) -> None:
        try:
            self.holder.check()
        except FcspStaleError as exc:
            self._drop_region(exc.message)
        except FcspBusyError:
            pass

    def _sleep(self, seconds: float) -> None:
        ready, _, _ = select.select([self._wake_r], [], [], seconds)
        if ready:
            self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 64):
                pass
        except BlockingIOError:
            pass

    def shutdown(self) -> None:
        if self.audit is not None:
            self.audit.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self._watcher is not None:
            self._watcher.close()
        self.holder.replace(None)
        if self.nvml is not None:
            self.nvml.close()
        self.lock.release()
        os.close(self._wake_r)
        os.close(self._wake_w)


def install_signal_handlers(daemon: NodeDaemon) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, daemon.request_stop)
