"""The audit's decisions (node/audit.py) on hand-made readings: a snapshot filled field by field, an NVML that
says what the test wants, real processes (sleep) for the pids, and a recorded kill instead of SIGKILL."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

from fcsp_core.node.audit import Auditor, kill_process
from fcsp_core.node.audit_jobs import proc_info
from fcsp_core.node.config import AuditConfig
from fcsp_core.region_node import PROC_LIVE, RawSnapshot

MiB = 1 << 20
GiB = 1 << 30
UUID = "GPU-00000000-1111-2222-3333-444444444444"


class FakeNvml:
    def __init__(self) -> None:
        self.procs: list[tuple[int, int]] | None = []

    def uuids(self) -> list[str]:
        return [UUID]

    def processes_now(self, uuid: str) -> list[tuple[int, int]] | None:
        return self.procs


class Region:
    """A snapshot the test writes: tenants (name, uid, limit), attached processes (pid, tenant, charged)."""

    def __init__(self) -> None:
        self.tenants: list[tuple[str, int, int]] = []
        self.procs: list[tuple[int, int, int, int]] = []  # pid, start_time, tenant index, charged bytes

    def fill(self, raw: RawSnapshot) -> bool:
        c = raw.c
        c.ngpus = 1
        c.gpus[0].index = 0
        c.gpus[0].uuid = UUID.encode()
        c.ntenants = len(self.tenants)
        for i, (name, uid, limit) in enumerate(self.tenants):
            t = c.tenants[i]
            t.index, t.name, t.uid, t.flags = i, name.encode(), uid, 0
            t.gpu[0].limit_bytes = limit
        c.nprocs = len(self.procs)
        for i, (pid, start, tenant, charged) in enumerate(self.procs):
            p = c.procs[i]
            p.index, p.pid, p.start_time, p.tenant, p.state = i, pid, start, tenant, PROC_LIVE
            p.used_bytes[0] = charged
        return True


@pytest.fixture
def sleepers() -> Iterator[Callable[[], int]]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> int:
        p = subprocess.Popen(["sleep", "60"])
        started.append(p)
        return p.pid

    yield start
    for p in started:
        p.kill()
        p.wait()


def _start(pid: int) -> int:
    info = proc_info(pid)
    assert info is not None
    return info.start_time


def _auditor(region: Region, nvml: FakeNvml, action: str = "auto") -> tuple[Auditor, list[int]]:
    killed: list[int] = []

    def kill(pid: int, start: int) -> str | None:
        killed.append(pid)
        return None

    config = AuditConfig(action=action, context_allowance_bytes=512 * MiB)  # type: ignore[arg-type]
    return Auditor(config, nvml, region.fill, lambda: set(), kill=kill), killed  # type: ignore[arg-type]


def test_over_cap_names_the_process_holding_what_fcsp_never_charged(sleepers):
    honest, hiding = sleepers(), sleepers()
    region, nvml = Region(), FakeNvml()
    region.tenants = [("team", os.getuid(), 1 * GiB)]
    region.procs = [(honest, _start(honest), 0, 512 * MiB), (hiding, _start(hiding), 0, 256 * MiB)]
    nvml.procs = [(honest, 512 * MiB + 400 * MiB), (hiding, 256 * MiB + 3 * GiB)]
    auditor, killed = _auditor(region, nvml, action="kill")
    escapes = auditor.run_pass()
    assert [(e.pid, e.reason, e.tenant) for e in escapes] == [(hiding, "over_cap", "team")]
    if os.getuid() != 0:
        assert killed == [hiding]
    else:
        assert killed == [], "root's processes are reported, never killed"
    assert sum(auditor.stats.escapes.values()) == 1
    auditor.run_pass()
    assert sum(auditor.stats.escapes.values()) == 1, "counted once, not every pass"


def test_within_cap_plus_allowance_per_process_is_no_escape(sleepers):
    pids = [sleepers() for _ in range(3)]
    region, nvml = Region(), FakeNvml()
    region.tenants = [("team", 1000, 1 * GiB)]
    region.procs = [(p, _start(p), 0, 300 * MiB) for p in pids]
    nvml.procs = [(p, 300 * MiB + 500 * MiB) for p in pids]  # context memory, under the 512 MiB allowance
    auditor, killed = _auditor(region, nvml, action="kill")
    assert auditor.run_pass() == [] and killed == []
    assert auditor.stats.unfenced == {}


def test_a_stale_slot_does_not_make_a_process_attached(sleepers):
    pid = sleepers()
    region, nvml = Region(), FakeNvml()
    region.tenants = [("team", 1000, 1 * GiB)]
    region.procs = [(pid, _start(pid) + 1, 0, 0)]  # an earlier process with this pid
    nvml.procs = [(pid, 2 * GiB)]
    auditor, _ = _auditor(region, nvml)
    assert auditor.run_pass() == []  # not in a fenced job: allowed
    assert auditor.stats.unfenced == {"none": 1}


def test_report_mode_and_standalone_tenants_are_never_killed(sleepers):
    pid = sleepers()
    region, nvml = Region(), FakeNvml()
    region.tenants = [("solo", 1000, 1 * GiB)]
    region.procs = [(pid, _start(pid), 0, 0)]
    nvml.procs = [(pid, 4 * GiB)]
    for action in ("auto", "report"):
        auditor, killed = _auditor(region, nvml, action=action)
        assert [e.reason for e in auditor.run_pass()] == ["over_cap"] and killed == []
        assert auditor.stats.escapes == {("none", "over_cap", "reported"): 1}


def test_no_nvml_answer_means_audit_down(sleepers):
    region, nvml = Region(), FakeNvml()
    nvml.procs = None
    auditor, _ = _auditor(region, nvml)
    assert auditor.run_pass() == [] and auditor.stats.up is False
    nvml.procs = []
    auditor.run_pass()
    assert auditor.stats.up is True


def test_kill_checks_the_pid_still_names_the_process():
    p = subprocess.Popen(["sleep", "60"])
    try:
        start = _start(p.pid)
        assert kill_process(p.pid, start + 1) is not None, "another start time: not the process we judged"
        assert p.poll() is None
        assert kill_process(p.pid, start) is None
        assert p.wait(timeout=10) == -9
    finally:
        p.kill()
        p.wait()
    assert kill_process(p.pid, start) is not None  # gone


def test_unattached_context_memory_alone_is_not_an_escape(sleepers, tmp_path):
    """A process of a fenced Slurm step (its cgroup says so) that has made its context but not yet allocated
    (libfcsp attaches at the first hooked call) holds context memory without a slot: not an escape. Past the
    allowance it is one."""
    from pathlib import Path

    top = Path("/sys/fs/cgroup/pids") / f"fcsp-test-unit-{os.getpid()}"
    step = top / "slurm" / "uid_0" / "job_77" / "step_0"
    try:
        step.mkdir(parents=True)
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup here ({exc.strerror})")
    try:
        p = subprocess.Popen(["sleep", "60"])
        try:
            (step / "cgroup.procs").write_text(str(p.pid))
            region, nvml = Region(), FakeNvml()
            region.tenants = [("slurm-77.0", 1000, 1 * GiB)]
            nvml.procs = [(p.pid, 500 * MiB)]
            auditor, _ = _auditor(region, nvml)
            assert auditor.run_pass() == [] and auditor.stats.unfenced == {"slurm": 1}
            nvml.procs = [(p.pid, 600 * MiB)]
            escapes = auditor.run_pass()
            assert [(e.reason, e.scheduler, e.job) for e in escapes] == [("unattached", "slurm", "77.0")]
        finally:
            p.kill()
            p.wait()
    finally:
        for d in (step, step.parent, step.parent.parent, step.parent.parent.parent, top):
            d.rmdir()
