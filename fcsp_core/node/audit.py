"""The driver-truth audit: every interval, compare each GPU process's memory as the driver reports it (NVML's
per-process figures, which no tenant can forge) with what fcsp has charged, and act on escapes.

An escape is
- `unattached`: a process holding device memory inside a fenced scheduler job (a Slurm step or Ray worker
  that fcsp has a tenant or policy entry for; audit_jobs.py says how membership is recognised) without a live
  fcsp process slot: it dropped LD_PRELOAD, or attached to a private region (FCSP_REGION_DIR). It must hold
  more than the context allowance on a GPU: libfcsp attaches at the process's first hooked call (its first
  allocation, typically), so a process that made its context and has not allocated yet holds only context
  memory without a slot, and is not an escape;
- `wrong_tenant`: such a process attached to a tenant that is not its job's (another FCSP_TENANT);
- `over_cap`: a process whose tenant holds more on a GPU per NVML than its cap plus the context allowance
  per process, and that holds more than fcsp charged it plus the allowance (memory fcsp never saw:
  dlmopen or RTLD_DEEPBIND of libcuda, a forged slot).
Each escape is logged once (pid, uid, job, tenant, bytes), counted (fcsp_escapes_total), and killed
(SIGKILL through a pidfd, after checking the pid still names the same process) or only reported, per the
action: `auto` kills escapes in scheduler jobs and tenants and reports the others, `kill` kills all,
`report` none. Root's processes are never killed (root is trusted): they are reported.

The audit runs on its own thread: NVML calls can take milliseconds per GPU on a real driver (and block on a
GPU that fell off the bus); on this thread they delay only the audit, never the reaper, whose loop runs on
the main thread (pynvml's ctypes calls release the GIL). It only reads: snapshots through the holder (like a
scrape), NVML, /proc; it writes nothing shared. A pass is bounded: at most MAX_PIDS processes, MAX_DEPTH
ancestors each (job membership is cached per process); a pass longer than the interval is logged.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fcsp_core._native import c_string
from fcsp_core.fmt import format_bytes
from fcsp_core.node.audit_jobs import Job, ProcInfo, job_of, proc_info, real_uid
from fcsp_core.node.config import AuditConfig
from fcsp_core.node.labels import LabelCache, scheduler_and_job
from fcsp_core.node.nvml import NvmlView
from fcsp_core.region_node import PROC_LIVE, TENANT_POLICY, RawSnapshot

log = logging.getLogger("fcsp.node")

PROC_CLAIMING = 1  # FCSP_PROC_CLAIMING: a slot being filled in by its (live) owner counts as attached
MAX_PIDS = 4096  # GPU processes looked at per pass (a GPU has far fewer)
NEGATIVE_JOB_TTL = 2.0  # seconds a "not in a job" answer is reused (root may move a process into a step)
POLICY_REFRESH = 1.0  # seconds between readings of the policy table's tenant names
SCHEDULERS = ("slurm", "ray", "none")
REASONS = ("unattached", "wrong_tenant", "over_cap")
ACTIONS = ("killed", "reported")


@dataclass(frozen=True)
class Escape:
    pid: int
    start_time: int
    uid: int
    reason: str
    scheduler: str  # slurm, ray or none
    job: str  # "" outside a job
    tenant: str  # "" when not attached
    gpu: str  # NVML UUID
    nvml_bytes: int  # what the driver says the process holds there
    charged_bytes: int  # what fcsp charged it there
    limit_bytes: int  # its tenant's cap there (0: none known)

    def describe(self, user: str) -> str:
        where = f"{self.scheduler} job {self.job}" if self.job else "no scheduler job"
        what = {
            "unattached": "not attached to fcsp",
            "wrong_tenant": f"attached to tenant {self.tenant}, not its job's",
            "over_cap": (
                f"tenant {self.tenant} over its cap of {format_bytes(self.limit_bytes)}, this process "
                f"charged {format_bytes(self.charged_bytes)}"
            ),
        }[self.reason]
        return (
            f"escape ({self.reason}): pid={self.pid} user={user} {where}: {format_bytes(self.nvml_bytes)} "
            f"({self.nvml_bytes} bytes) on {self.gpu} per the driver, {what}"
        )


@dataclass
class AuditStats:
    """What the metrics show of the audit; version moves whenever a value does (the exporter memoises)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    up: bool = False
    escapes: dict[tuple[str, str, str], int] = field(default_factory=dict)
    unfenced: dict[str, int] = field(default_factory=dict)
    pass_seconds: float = 0.0  # the last pass's duration (logged when over the interval; not exported)
    version: int = 0

    def families(self, host: str) -> list[Metric]:
        with self.lock:
            up = GaugeMetricFamily(
                "fcsp_audit_up", "1 while the driver-truth audit reads NVML's per-process memory",
                labels=["hostname"],
            )  # fmt: skip
            up.add_metric([host], 1 if self.up else 0)
            escapes = CounterMetricFamily(
                "fcsp_escapes_total",
                "GPU processes caught escaping fcsp (reason: unattached, wrong_tenant, over_cap; action: "
                "killed or reported)",
                labels=["hostname", "scheduler", "reason", "action"],
            )
            for (scheduler, reason, action), n in sorted(self.escapes.items()):
                escapes.add_metric([host, scheduler, reason, action], n)
            unfenced = GaugeMetricFamily(
                "fcsp_unfenced_processes",
                "Processes holding device memory without a live fcsp slot (scheduler: the job they are in)",
                labels=["hostname", "scheduler"],
            )
            for scheduler in SCHEDULERS:
                unfenced.add_metric([host, scheduler], self.unfenced.get(scheduler, 0))
            return [up, escapes, unfenced]

    def key(self) -> bytes:
        """Changes whenever families() would (the exporter's ExtraFamilies)."""
        with self.lock:
            return b"audit%d" % self.version


@dataclass
class _Attached:
    start_time: int
    tenant: int
    record: Any  # its struct fcsp_proc_info in the snapshot (used_bytes[g]: charged per region GPU index)

    def used(self, g: int) -> int:
        return int(self.record.used_bytes[g])


@dataclass
class _Tenant:
    name: str
    uid: int
    from_policy: bool
    limits: list[int]  # per region GPU index, 0: none


def _uid(pid: int) -> int:
    """pid's real uid; 0 (trusted: reported, never killed) if /proc no longer says (the process is gone)."""
    uid = real_uid(pid)
    return 0 if uid is None else uid


def kill_process(pid: int, start_time: int) -> str | None:
    """SIGKILL pid if it is still the process that started at start_time; None when killed, else why not."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return "it is gone"
    except OSError as exc:
        return f"pidfd_open: {exc.strerror}"
    try:
        info = proc_info(pid)
        if info is None or info.start_time != start_time:
            return "it is gone (its pid now names another process)"
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return None
    except ProcessLookupError:
        return "it is gone"
    except OSError as exc:
        return f"pidfd_send_signal: {exc.strerror}"
    finally:
        os.close(fd)


class Auditor:
    """One pass at a time (run_pass); the thread below calls it every interval."""

    def __init__(
        self,
        config: AuditConfig,
        nvml: NvmlView,
        snapshot_into: Callable[[RawSnapshot], bool],
        policy_tenants: Callable[[], set[str] | None],
        labels: LabelCache | None = None,
        kill: Callable[[int, int], str | None] = kill_process,
    ) -> None:
        self.config = config
        self.stats = AuditStats()
        self._nvml = nvml
        self._snapshot_into = snapshot_into
        self._policy_tenants = policy_tenants
        self._labels = labels or LabelCache()
        self._kill = kill
        self._raw = RawSnapshot()
        self._jobs: dict[tuple[int, int], tuple[Job | None, float]] = {}
        self._seen: dict[tuple[int, int, str], bool] = {}  # escapes counted: -> killed
        self._noted: set[tuple[int, int]] = set()  # unfenced processes outside jobs, logged once
        # Attached processes whose slot's start time matched /proc once: while the slot stays (same pid, same
        # start time) /proc is not read again. A slot outlives its process only until the reaper's next pass
        # (milliseconds: pidfds), which bounds how long a new process reusing the pid could pass as attached.
        self._attached_info: dict[int, ProcInfo] = {}
        self._policy: set[str] = set()
        self._policy_at = -POLICY_REFRESH

    # ---- readings --------------------------------------------------------------------------------------

    def _nvml_reading(self) -> dict[int, dict[str, int]] | None:
        """pid -> {GPU UUID: bytes} of every compute process NVML lists; None when NVML says nothing."""
        uuids = self._nvml.uuids()
        if not uuids:
            return None
        out: dict[int, dict[str, int]] = {}
        answered = False
        for uuid in uuids:
            procs = self._nvml.processes_now(uuid)
            if procs is None:
                continue
            answered = True
            for pid, used in procs:
                if pid > 0 and (pid in out or len(out) < MAX_PIDS):
                    out.setdefault(pid, {})[uuid] = used
        return out if answered else None

    def _job(self, pid: int, info: ProcInfo, now: float) -> Job | None:
        key = (pid, info.start_time)
        cached = self._jobs.get(key)
        if cached is not None and (cached[0] is not None or now - cached[1] < NEGATIVE_JOB_TTL):
            return cached[0]
        job = job_of(pid, info)
        self._jobs[key] = (job, now)
        return job

    def _policy_names(self, now: float) -> set[str]:
        if now - self._policy_at >= POLICY_REFRESH:
            names = self._policy_tenants()
            if names is not None:
                self._policy = names
            self._policy_at = now
        return self._policy

    # ---- one pass ---------------------------------------------------------------------------------------

    def run_pass(self, now: float | None = None) -> list[Escape]:
        """Read, compare, act; returns the escapes found this pass (new or not)."""
        started = time.monotonic()
        now = started if now is None else now
        reading = self._nvml_reading()
        if reading is None or not self._snapshot_into(self._raw):
            self._publish(up=False, unfenced={}, new=[], seconds=time.monotonic() - started)
            return []
        snap = self._raw
        uuid_index = {c_string(g.uuid): int(g.index) for g in snap.gpus()}
        tenants = {
            int(t.index): _Tenant(
                name=c_string(t.name),
                uid=int(t.uid),
                from_policy=bool(int(t.flags) & TENANT_POLICY),
                limits=[int(t.gpu[i].limit_bytes) for i in range(len(t.gpu))],
            )
            for t in snap.tenants()
        }
        attached = {
            int(p.pid): _Attached(int(p.start_time), int(p.tenant), p)
            for p in snap.procs()
            if int(p.state) in (PROC_LIVE, PROC_CLAIMING)
        }
        fenced_names = {t.name for t in tenants.values()} | self._policy_names(now)

        escapes: list[Escape] = []
        unfenced: dict[str, int] = {}
        infos: dict[int, ProcInfo] = {}
        jobs: dict[int, Job | None] = {}
        for pid, per_gpu in reading.items():
            slot = attached.get(pid)
            known = self._attached_info.get(pid)
            if slot is not None and known is not None and known.start_time == slot.start_time:
                info: ProcInfo | None = known  # checked on an earlier pass, its slot unchanged since
            else:
                info = proc_info(pid)
            if info is None:
                continue  # gone since NVML listed it (or hidden from us: nothing to act on)
            infos[pid] = info
            if slot is not None and slot.start_time == info.start_time:
                self._attached_info[pid] = info
            job = jobs[pid] = self._job(pid, info, now)
            if slot is not None and slot.start_time != info.start_time:
                slot = None  # a stale slot of an earlier process with this pid
            scheduler = job.scheduler if job else "none"
            fenced_job = job is not None and any(name in fenced_names for name in job.tenants)
            if slot is None:
                unfenced[scheduler] = unfenced.get(scheduler, 0) + 1
                if fenced_job and max(per_gpu.values()) > self.config.context_allowance_bytes:
                    assert job is not None
                    escapes += self._per_gpu(pid, info, "unattached", job, "", per_gpu, uuid_index, None, {})
                elif not fenced_job:
                    self._note_unfenced(pid, info, job, per_gpu)
                continue
            tenant = tenants.get(slot.tenant)
            if fenced_job and tenant is not None and job is not None and tenant.name not in job.tenants:
                escapes += self._per_gpu(
                    pid, info, "wrong_tenant", job, tenant.name, per_gpu, uuid_index, slot, {}
                )
        escapes += self._over_cap(reading, attached, tenants, uuid_index, infos, jobs)
        new = self._act(escapes)
        self._prune(reading)
        self._publish(up=True, unfenced=unfenced, new=new, seconds=time.monotonic() - started)
        return escapes

    def _per_gpu(
        self,
        pid: int,
        info: ProcInfo,
        reason: str,
        job: Job | None,
        tenant: str,
        per_gpu: dict[str, int],
        uuid_index: dict[str, int],
        slot: _Attached | None,
        limits: dict[int, int],
    ) -> list[Escape]:
        """One escape for the GPU where pid holds the most (one process, one action)."""
        uuid, used = max(per_gpu.items(), key=lambda kv: kv[1])
        g = uuid_index.get(uuid)
        charged = slot.used(g) if slot is not None and g is not None else 0
        return [
            Escape(
                pid=pid, start_time=info.start_time, uid=_uid(pid), reason=reason,
                scheduler=job.scheduler if job else "none", job=job.job if job else "", tenant=tenant,
                gpu=uuid, nvml_bytes=used, charged_bytes=charged,
                limit_bytes=limits.get(g, 0) if g is not None else 0,
            )
        ]  # fmt: skip

    def _over_cap(
        self,
        reading: dict[int, dict[str, int]],
        attached: dict[int, _Attached],
        tenants: dict[int, _Tenant],
        uuid_index: dict[str, int],
        infos: dict[int, ProcInfo],
        jobs: dict[int, Job | None],
    ) -> list[Escape]:
        allowance = self.config.context_allowance_bytes
        # (tenant index, region GPU) -> [(pid, NVML bytes, charged bytes)]
        groups: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        for pid, per_gpu in reading.items():
            slot = attached.get(pid)
            info = infos.get(pid)
            if slot is None or info is None or slot.start_time != info.start_time:
                continue
            for uuid, used in per_gpu.items():
                g = uuid_index.get(uuid)
                if g is not None:
                    groups.setdefault((slot.tenant, g), []).append((pid, used, slot.used(g)))
        out: list[Escape] = []
        for (ti, g), members in groups.items():
            tenant = tenants.get(ti)
            if tenant is None or g >= len(tenant.limits) or tenant.limits[g] == 0:
                continue
            limit = tenant.limits[g]
            if sum(used for _, used, _ in members) <= limit + allowance * len(members):
                continue
            uuid = next(u for u, i in uuid_index.items() if i == g)
            culprits = [(pid, used, charged) for pid, used, charged in members if used > charged + allowance]
            if not culprits:
                log.warning(
                    "tenant %s holds %s on %s per the driver, over its cap of %s, but no process holds more "
                    "than fcsp charged it plus the allowance", tenant.name,
                    format_bytes(sum(u for _, u, _ in members)), uuid, format_bytes(limit),
                )  # fmt: skip
            for pid, used, charged in culprits:
                job = jobs.get(pid)
                scheduler = job.scheduler if job else "none"
                if job is None and tenant.from_policy:
                    scheduler = scheduler_and_job(tenant.name)[0] or "none"
                    scheduler = scheduler if scheduler in SCHEDULERS else "none"
                info = infos[pid]
                out.append(
                    Escape(
                        pid=pid, start_time=info.start_time, uid=_uid(pid), reason="over_cap",
                        scheduler=scheduler, job=job.job if job else "", tenant=tenant.name, gpu=uuid,
                        nvml_bytes=used, charged_bytes=charged, limit_bytes=limit,
                    )
                )  # fmt: skip
        return out

    # ---- acting ------------------------------------------------------------------------------------------

    def _should_kill(self, e: Escape) -> bool:
        if e.uid == 0:
            return False  # root is trusted: reported only
        action = self.config.action
        return action == "kill" or (action == "auto" and e.scheduler != "none")

    def _act(self, escapes: list[Escape]) -> list[tuple[str, str, str]]:
        """Kill or report each escape; returns the counter keys of the ones new this pass."""
        new: list[tuple[str, str, str]] = []
        for e in escapes:
            key = (e.pid, e.start_time, e.reason)
            first = key not in self._seen
            if not first and not self._seen[key]:
                continue  # reported before; a killed one still listed is killed again below
            kill = self._should_kill(e)
            outcome = "reported"
            suffix = f"; reported (audit action {self.config.action})"
            if e.uid == 0 and self.config.action != "report":
                suffix = "; reported (root's processes are not killed)"
            if kill:
                why_not = self._kill(e.pid, e.start_time)
                if why_not is None:
                    outcome, suffix = "killed", "; killed (SIGKILL)"
                else:
                    suffix = f"; not killed: {why_not}"
            if first:
                self._seen[key] = kill
                new.append((e.scheduler, e.reason, outcome))
                log.error("%s%s", e.describe(self._labels.user(e.uid)), suffix)
        return new

    def _note_unfenced(self, pid: int, info: ProcInfo, job: Job | None, per_gpu: dict[str, int]) -> None:
        key = (pid, info.start_time)
        if key in self._noted:
            return
        self._noted.add(key)
        where = f"{job.scheduler} job {job.job} (not fenced by fcsp)" if job else "no scheduler job"
        log.info(
            "unfenced: pid=%d user=%s holds %s on the GPUs without fcsp, %s: allowed",
            pid, self._labels.user(_uid(pid)), format_bytes(sum(per_gpu.values())), where,
        )  # fmt: skip

    def _prune(self, reading: dict[int, dict[str, int]]) -> None:
        """Forget processes NVML no longer lists (bounds every table by the GPU process count)."""
        live = reading.keys()
        self._seen = {k: v for k, v in self._seen.items() if k[0] in live}
        self._noted = {k for k in self._noted if k[0] in live}
        self._jobs = {k: v for k, v in self._jobs.items() if k[0] in live}
        self._attached_info = {k: v for k, v in self._attached_info.items() if k in live}

    def _publish(
        self, up: bool, unfenced: dict[str, int], new: list[tuple[str, str, str]], seconds: float
    ) -> None:
        s = self.stats
        with s.lock:
            changed = up != s.up or unfenced != s.unfenced or bool(new)
            s.up, s.unfenced, s.pass_seconds = up, unfenced, seconds
            for key in new:
                s.escapes[key] = s.escapes.get(key, 0) + 1
            if changed:
                s.version += 1


class AuditThread:
    """Runs the auditor every config.interval_ms on a thread of its own until stop()."""

    def __init__(self, auditor: Auditor) -> None:
        self.auditor = auditor
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fcsp-audit", daemon=True)
        self._slow_logged = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        interval = self.auditor.config.interval_ms / 1000.0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.auditor.run_pass(started)
            except Exception:  # noqa: BLE001 - the audit must go on; the loop never depends on it
                log.exception("audit pass failed")
            took = time.monotonic() - started
            if took > interval and started - self._slow_logged > 60:
                self._slow_logged = started
                log.warning("an audit pass took %.0f ms, more than its %.0f ms interval", took * 1e3,
                            interval * 1e3)  # fmt: skip
            self._stop.wait(max(0.0, interval - took))
