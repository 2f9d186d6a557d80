"""`fcsp demo`: three tenants with different caps share one GPU at the same time.

Each tenant's processes are fcsp-probe runs started with `fcsp run` semantics (launch.tenant_env: libfcsp.so
preloaded, FCSP_TENANT / FCSP_MEM_LIMIT set). Each probe allocates, reports what the driver (through libfcsp)
said, then holds its memory until its stdin closes, so the demo can show the region while all of it is held.
Without an NVIDIA GPU the demo runs on the simulated driver, and says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from fcsp_core import launch, paths, region, views
from fcsp_core.config import SimSettings, TenantLimits, parse_mem_limit, parse_size_bytes, read_sim_env
from fcsp_core.fmt import format_bytes, format_ms, table

READY_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 30.0
OOM = "CUDA_ERROR_OUT_OF_MEMORY"


# ------------------------------------------------------------------------------------------------------
# The probe's output
# ------------------------------------------------------------------------------------------------------

PROBE_COMMANDS = frozenset({"init", "alloc", "meminfo", "free", "hold"})


class ProbeLine(BaseModel):
    """One result line of fcsp-probe: `<command> [ok|fail] key=value ...`."""

    model_config = ConfigDict(frozen=True)

    command: str
    ok: bool | None  # None for lines without ok/fail (meminfo)
    fields: dict[str, str]

    def int_field(self, name: str) -> int:
        return int(self.fields[name])


def parse_probe_line(line: str) -> ProbeLine | None:
    """The result line, or None for anything else (e.g. a log line)."""
    words = line.split()
    if not words or words[0] not in PROBE_COMMANDS:
        return None
    ok: bool | None = None
    rest = words[1:]
    if rest and rest[0] in ("ok", "fail"):
        ok = rest[0] == "ok"
        rest = rest[1:]
    fields = dict(w.split("=", 1) for w in rest if "=" in w)
    return ProbeLine(command=words[0], ok=ok, fields=fields)


# ------------------------------------------------------------------------------------------------------
# The plan
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantPlan:
    name: str
    mem: str  # the cap, as given to `fcsp run --mem`
    procs: int
    allocs: tuple[str, ...]  # what each process allocates, in order
    refused: tuple[str, ...]  # the allocations (of all its processes) the cap must refuse
    story: str

    def script(self) -> list[str]:
        args = ["init"]
        for size in self.allocs:
            args += ["alloc", size]
        return [*args, "meminfo", "hold", "free", "all"]

    @property
    def results_before_hold(self) -> int:
        return 2 + len(self.allocs)  # init, the allocs, meminfo


PLANS = (
    TenantPlan("train", "6G", 1, ("1G", "1G", "1G", "1G"), (), "4 x 1 GiB under a 6 GiB cap: all granted"),
    TenantPlan(
        "infer", "2G", 2, ("768M",), (), "two processes share one 2 GiB cap: 2 x 768 MiB, both granted"
    ),
    TenantPlan(
        "greedy", "1G", 1, ("512M", "1G"), ("1G",), "512 MiB, then 1 GiB more past its 1 GiB cap: refused"
    ),
)


# ------------------------------------------------------------------------------------------------------
# Running probes
# ------------------------------------------------------------------------------------------------------


@dataclass
class ProbeRun:
    tenant: str
    proc: subprocess.Popen[str]
    expected_before_hold: int
    results: list[ProbeLine] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start_readers(self) -> None:
        self.threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parsed = parse_probe_line(line)
            if parsed is not None and parsed.command != "hold":
                self.results.append(parsed)
                if len(self.results) >= self.expected_before_hold:
                    self.ready.set()
        self.ready.set()  # EOF: it ended (early, if something failed)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def release(self) -> None:
        """Close stdin: the probe's `hold` returns, it frees its memory and exits."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass  # it had already exited

    def finish(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for t in self.threads:
            t.join(timeout=5)
        return code


def start_probe(probe: Path, plan: TenantPlan, env: Mapping[str, str]) -> ProbeRun:
    proc = subprocess.Popen(
        [str(probe), *plan.script()],
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    run = ProbeRun(tenant=plan.name, proc=proc, expected_before_hold=plan.results_before_hold)
    run.start_readers()
    return run


# ------------------------------------------------------------------------------------------------------
# The GPU, real or simulated
# ------------------------------------------------------------------------------------------------------


def real_gpu_available(probe: Path, env: Mapping[str, str]) -> tuple[bool, str]:
    """Whether the real driver works here: /dev/nvidiactl exists and the probe's cuInit succeeds."""
    if not Path("/dev/nvidiactl").exists():
        return False, "no /dev/nvidiactl"
    try:
        out = subprocess.run(
            [str(probe), "init"], env=dict(env), capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        return False, "cuInit did not return within 60 s"
    lines = [p for p in map(parse_probe_line, out.stdout.splitlines()) if p is not None]
    if lines and lines[0].command == "init" and lines[0].ok:
        return True, ""
    reason = (out.stdout + out.stderr).strip().splitlines()
    return False, reason[-1] if reason else f"the probe exited with {out.returncode}"


@contextmanager
def gpu_environment(force_sim: bool, base: Mapping[str, str], probe: Path) -> Iterator[dict[str, str]]:
    """The environment to run the tenants in: the real driver, or a simulated node (saying so)."""
    if base.get("FCSP_SIM_DIR"):
        print(f"fcsp demo: running under the simulated driver (FCSP_SIM_DIR={base['FCSP_SIM_DIR']})")
        yield dict(base)
        return
    if not force_sim:
        available, reason = real_gpu_available(probe, base)
        if available:
            print("fcsp demo: using the NVIDIA GPU 0 of this machine")
            yield dict(base)
            return
        print(f"fcsp demo: no NVIDIA GPU found: using the simulated driver ({reason})")
    else:
        print("fcsp demo: --sim: using the simulated driver")
    inherited = read_sim_env(base)
    settings = SimSettings(gpus=1, mem_bytes=inherited.mem_bytes, sms=inherited.sms)
    with launch.sim_node(base, settings, paths.sim_dir()) as node:
        print(
            f"fcsp demo: simulated driver, {node.gpus} GPU x {format_bytes(node.mem_bytes)}, "
            f"{node.sms} SMs (state in {node.state_dir})"
        )
        yield node.env


# ------------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------------


@dataclass
class TenantResult:
    plan: TenantPlan
    asked: list[int] = field(default_factory=list)
    granted: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (size, error)
    totals: set[int] = field(default_factory=set)
    init_failures: list[str] = field(default_factory=list)


def collect(plan: TenantPlan, runs: Sequence[ProbeRun]) -> TenantResult:
    result = TenantResult(plan)
    for run in runs:
        for line in run.results:
            if line.command == "init" and not line.ok:
                result.init_failures.append(" ".join(f"{k}={v}" for k, v in line.fields.items()))
            elif line.command == "alloc":
                size = line.int_field("size")
                result.asked.append(size)
                if line.ok:
                    result.granted.append(size)
                else:
                    result.refused.append((size, line.fields.get("err", "?")))
            elif line.command == "meminfo" and "total_bytes" in line.fields:
                result.totals.add(line.int_field("total_bytes"))
    return result


def _sizes(sizes: Sequence[int]) -> str:
    if not sizes:
        return "none"
    if len(set(sizes)) == 1:
        each = format_bytes(sizes[0])
        return each if len(sizes) == 1 else f"{format_bytes(sum(sizes))} ({len(sizes)} x {each})"
    return f"{format_bytes(sum(sizes))} ({' + '.join(format_bytes(s) for s in sizes)})"


def check(result: TenantResult) -> list[str]:
    """What went differently from the plan (empty: the cap held as it should)."""
    plan = result.plan
    problems = [f"{plan.name}: cuInit failed: {f}" for f in result.init_failures]
    cap = parse_size_bytes(plan.mem)
    want_refused = sorted(parse_size_bytes(s) for s in plan.refused)
    want_asked = sorted(parse_size_bytes(s) for s in plan.allocs * plan.procs)
    if sorted(result.asked) != want_asked:
        problems.append(f"{plan.name}: {len(result.asked)} of {len(want_asked)} allocations reported")
    if sorted(s for s, _ in result.refused) != want_refused:
        problems.append(
            f"{plan.name}: refused {_sizes([s for s, _ in result.refused])}, expected {_sizes(want_refused)}"
        )
    for size, err in result.refused:
        if err != OOM:
            problems.append(f"{plan.name}: the {format_bytes(size)} allocation failed with {err}, not {OOM}")
    if result.totals != {cap}:
        seen = ", ".join(format_bytes(t) for t in sorted(result.totals)) or "nothing"
        problems.append(f"{plan.name}: saw {seen} as total memory, expected its cap {format_bytes(cap)}")
    return problems


def results_table(results: Sequence[TenantResult]) -> str:
    rows = []
    for r in results:
        refused = ", ".join(f"{format_bytes(s)} ({e})" for s, e in r.refused) or "none"
        rows.append(
            [
                r.plan.name,
                format_bytes(parse_size_bytes(r.plan.mem)),
                str(r.plan.procs),
                _sizes(r.asked),
                format_bytes(sum(r.granted)),
                refused,
                ", ".join(format_bytes(t) for t in sorted(r.totals)) or "?",
            ]
        )
    return table(["TENANT", "CAP", "PROCS", "ASKED", "GOT", "REFUSED", "SEES TOTAL (cuMemGetInfo)"], rows)


# ------------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------------


def main(force_sim: bool = False) -> int:
    probe = paths.probe_path()
    lib = paths.libfcsp_path()
    start = time.monotonic()
    # A private region: the demo's tenants never mix with the node's.
    with tempfile.TemporaryDirectory(prefix="fcsp-demo-", ignore_cleanup_errors=True) as private:
        region_dir = Path(private) / "region"
        base = {**os.environ, "FCSP_REGION_DIR": str(region_dir)}
        with gpu_environment(force_sim, base, probe) as env:
            return _run(env, region_dir, probe, lib, start)


def _run(env: Mapping[str, str], region_dir: Path, probe: Path, lib: Path, start: float) -> int:
    """Start the tenants, show the region while they hold memory, then their results."""
    print(f"fcsp demo: {len(PLANS)} tenants share one GPU, each under its own cap:")
    for plan in PLANS:
        print(f"  {plan.name:<7} --mem {plan.mem:<3} {plan.procs} process(es): {plan.story}")
    print(flush=True)

    runs: dict[str, list[ProbeRun]] = {}
    try:
        for plan in PLANS:
            limits = TenantLimits(tenant=plan.name, mem_limit=parse_mem_limit(plan.mem))
            tenant_env = launch.tenant_env(env, limits, lib)
            runs[plan.name] = [start_probe(probe, plan, tenant_env) for _ in range(plan.procs)]
        all_runs = [r for rs in runs.values() for r in rs]
        deadline = time.monotonic() + READY_TIMEOUT_S
        for run in all_runs:
            run.ready.wait(timeout=max(0.0, deadline - time.monotonic()))
        stalled = [r for r in all_runs if not r.ready.is_set()]

        print("While every process holds its memory, `fcsp status` shows:")
        print(views.status_text(region.read_snapshot(region_dir)))
        print(flush=True)
    finally:
        for run in (r for rs in runs.values() for r in rs):
            run.release()
        codes = {id(r): r.finish(EXIT_TIMEOUT_S) for rs in runs.values() for r in rs}

    results = [collect(plan, runs[plan.name]) for plan in PLANS]
    print("What each tenant asked for, got, and saw as its GPU's total memory:")
    print(results_table(results))
    print()

    problems = [p for r in results for p in check(r)]
    problems += [f"{r.tenant}: pid {r.proc.pid} never reached `hold`" for r in stalled]
    for plan in PLANS:
        for r in runs[plan.name]:  # a refused allocation is a result: fcsp-probe still exits 0
            if codes[id(r)] != 0:
                problems.append(f"{plan.name}: fcsp-probe pid {r.proc.pid} exited with {codes[id(r)]}")
    if problems:
        print("fcsp demo: UNEXPECTED:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        for r in (r for rs in runs.values() for r in rs if r.stderr):
            print(f"  {r.tenant} pid {r.proc.pid} stderr: " + " | ".join(r.stderr[-5:]), file=sys.stderr)
        return 1
    print(
        "Every cap held: train and infer got all they asked; greedy's allocation past its cap was refused "
        f"with {OOM}; each tenant saw its cap as the GPU's total memory. "
        f"({format_ms(int((time.monotonic() - start) * 1000))})"
    )
    return 0
