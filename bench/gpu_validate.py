#!/usr/bin/env python3
"""Validate libfcsp.so on a real NVIDIA GPU with PyTorch, CuPy and NVML.

    python3 bench/gpu_validate.py --lib /path/to/libfcsp.so [--json OUT] [--cap-gib 8]

Needs python3 with torch, cupy and nvidia-ml-py (pynvml) and one visible GPU with at least ~20 GiB free. This
script imports none of them itself: every measurement runs in a subprocess of its own (so a crash or a hang
is one FAIL, and the library is preloaded only where a check asks for it), and every subprocess has a
timeout. Each check prints PASS, FAIL or SKIP with its numbers; the exit status is 1 if any check failed.

Checks:
  a  PyTorch, one process, for each allocator config (default, expandable_segments:True, cudaMallocAsync):
     mem_get_info total == cap; 512 MiB tensors until torch.OutOfMemoryError, which must come with
     6 GiB <= allocated <= cap; after freeing, 4 GiB again and a matmul (the process keeps working)
  b  PyTorch, 8 processes of one tenant, 900 MiB each, then (all at once, after a file barrier) 900 MiB more:
     exactly as many second allocations succeed as fit under the cap (8 x 900 MiB = 7200 MiB held leaves
     992 MiB of an 8 GiB cap: one), and the sum of memory_reserved() stays <= cap; NVML per-process memory
     gives each process's context overhead
  c  CuPy: (a) and (b) with cupy.empty and the default memory pool
  d  context memory per process (no preload): NVML device used memory before and after CUDA initialises,
     and the process's own usedGpuMemory; then the same process figure with the preload (fcsp must add none)
  e  start-up overhead: process start to the first torch.empty(1, device="cuda"), with and without preload
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GIB = 1 << 30
MIB = 1 << 20
CHILD_TIMEOUT_S = 180.0
GROUP_PROCS = 8
GROUP_CHUNK = 900 * MIB
FILL_CHUNK = 512 * MIB
AGAIN_BYTES = 4 * GIB
STARTUP_RUNS = 3
# Start-up bound: far below HAMi-core's 170-290 ms, far above the run-to-run noise of CUDA initialisation.
# run_bench.py measures fcsp's own init cost in microseconds.
STARTUP_MAX_ADDED_MS = 50.0
CONTEXT_MAX_ADDED_MIB = 16.0

# ----------------------------------------------------------------------------------------------------
# child programs (run with this interpreter; they print one line "RESULT <json>")

CHILD_COMMON = r"""
import json, os, sys, time
T_START = time.monotonic()

def result(d):
    print("RESULT " + json.dumps(d), flush=True)

def barrier(directory, name, rank, n, timeout=120.0):
    open(os.path.join(directory, f"{name}.{rank}"), "w").close()
    deadline = time.monotonic() + timeout
    while True:
        count = sum(1 for f in os.listdir(directory) if f.startswith(name + "."))
        if count >= n:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)

def nvml_self_used():
    # This process's usedGpuMemory per NVML (None where NVML does not say: another PID namespace, no rights).
    try:
        import pynvml
        pynvml.nvmlInit()
        me = os.getpid()
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                if p.pid == me and p.usedGpuMemory is not None:
                    return int(p.usedGpuMemory)
    except Exception as e:
        return None
    return None
"""

TORCH_FILL = r"""
import torch
step, again = int(sys.argv[1]), int(sys.argv[2])
res = {"torch": torch.__version__, "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")}
t0 = time.monotonic()
free, total = torch.cuda.mem_get_info()
res.update(total=total, free=free, init_s=time.monotonic() - t0)
chunks = []
oom = False
t_fill = time.monotonic()
t_try = t_fill
while len(chunks) < 1024:
    t_try = time.monotonic()
    try:
        chunks.append(torch.empty(step, dtype=torch.uint8, device="cuda"))
    except torch.OutOfMemoryError as e:
        oom = True
        res["oom_message"] = str(e).strip().splitlines()[0][:240]
        break
t_oom = time.monotonic()
res.update(oom=oom, allocated_before_oom=len(chunks) * step, reserved_at_oom=torch.cuda.memory_reserved(),
           fill_s=t_try - t_fill, oom_raise_ms=(t_oom - t_try) * 1e3 if oom else None)
del chunks
torch.cuda.empty_cache()
torch.cuda.synchronize()
res["free_after_release"] = torch.cuda.mem_get_info()[0]
try:
    t1 = time.monotonic()
    big = torch.empty(again, dtype=torch.uint8, device="cuda")
    big.fill_(1)
    a = torch.randn(2048, 2048, device="cuda")
    c = a @ a
    torch.cuda.synchronize()
    res["again_ok"] = bool(torch.isfinite(c).all().item()) and int(big[:4096].sum().item()) == 4096
    res["again_ms"] = (time.monotonic() - t1) * 1e3
except Exception as e:
    res["again_ok"] = False
    res["again_error"] = repr(e)[:300]
result(res)
"""

CUPY_FILL = r"""
import cupy
step, again = int(sys.argv[1]), int(sys.argv[2])
res = {"cupy": cupy.__version__}
t0 = time.monotonic()
free, total = cupy.cuda.runtime.memGetInfo()
res.update(total=total, free=free, init_s=time.monotonic() - t0)
pool = cupy.get_default_memory_pool()
chunks = []
oom = False
t_fill = time.monotonic()
t_try = t_fill
while len(chunks) < 1024:
    t_try = time.monotonic()
    try:
        chunks.append(cupy.empty(step, dtype=cupy.uint8))
    except cupy.cuda.memory.OutOfMemoryError as e:
        oom = True
        res["oom_message"] = str(e).strip().splitlines()[0][:240]
        break
t_oom = time.monotonic()
res.update(oom=oom, allocated_before_oom=len(chunks) * step, reserved_at_oom=pool.total_bytes(),
           fill_s=t_try - t_fill, oom_raise_ms=(t_oom - t_try) * 1e3 if oom else None)
del chunks
pool.free_all_blocks()
cupy.cuda.runtime.deviceSynchronize()
res["free_after_release"] = cupy.cuda.runtime.memGetInfo()[0]
try:
    t1 = time.monotonic()
    big = cupy.empty(again, dtype=cupy.uint8)
    big.fill(1)
    a = cupy.random.standard_normal((2048, 2048), dtype=cupy.float32)
    c = a @ a
    cupy.cuda.runtime.deviceSynchronize()
    res["again_ok"] = bool(cupy.isfinite(c).all().item()) and int(big[:4096].sum().item()) == 4096
    res["again_ms"] = (time.monotonic() - t1) * 1e3
except Exception as e:
    res["again_ok"] = False
    res["again_error"] = repr(e)[:300]
result(res)
"""

# argv: framework rank nprocs chunk barrier_dir
GROUP = r"""
fw, rank, n, chunk, bdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
res = {"rank": rank, "pid": os.getpid()}
if fw == "torch":
    import torch
    OOM = torch.OutOfMemoryError
    alloc = lambda: torch.empty(chunk, dtype=torch.uint8, device="cuda")
    reserved = torch.cuda.memory_reserved
    sync = torch.cuda.synchronize
    res["total"] = torch.cuda.mem_get_info()[1]
else:
    import cupy
    OOM = cupy.cuda.memory.OutOfMemoryError
    alloc = lambda: cupy.empty(chunk, dtype=cupy.uint8)
    reserved = cupy.get_default_memory_pool().total_bytes
    sync = cupy.cuda.runtime.deviceSynchronize
    res["total"] = cupy.cuda.runtime.memGetInfo()[1]
held = []
try:
    held.append(alloc())
    sync()
    res["first_ok"] = True
except OOM as e:
    res["first_ok"] = False
    res["first_error"] = str(e)[:200]
res["reserved_before"] = reserved()
print("READY", rank, flush=True)
res["barrier_ready"] = barrier(bdir, "ready", rank, n)
t0 = time.monotonic()
try:
    held.append(alloc())
    sync()
    res["second_ok"] = True
except OOM as e:
    res["second_ok"] = False
    res["second_error"] = str(e).strip().splitlines()[0][:200]
res["second_ms"] = (time.monotonic() - t0) * 1e3
res["reserved_after"] = reserved()
res["barrier_done"] = barrier(bdir, "done", rank, n)
res["nvml_used"] = nvml_self_used()
res["barrier_measured"] = barrier(bdir, "measured", rank, n)
result(res)
"""

CONTEXT = r"""
import pynvml
pynvml.nvmlInit()
def norm(u):
    u = u.decode() if isinstance(u, bytes) else str(u)
    return u.lower().removeprefix("gpu-")
handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
before = {norm(pynvml.nvmlDeviceGetUUID(h)): pynvml.nvmlDeviceGetMemoryInfo(h).used for h in handles}
import torch
torch.cuda.init()
x = torch.empty(1, device="cuda")
torch.cuda.synchronize()
time.sleep(0.5)
uuid = norm(torch.cuda.get_device_properties(0).uuid)
res = {"uuid": uuid, "preloaded": bool(os.environ.get("LD_PRELOAD"))}
for h in handles:
    if norm(pynvml.nvmlDeviceGetUUID(h)) == uuid:
        res["device_used_before"] = before[uuid]
        res["device_used_after"] = pynvml.nvmlDeviceGetMemoryInfo(h).used
res["self_used"] = nvml_self_used()
res["torch_reserved"] = torch.cuda.memory_reserved()
result(res)
"""

STARTUP = r"""
import torch
t_import = time.monotonic()
x = torch.empty(1, device="cuda")
torch.cuda.synchronize()
t_cuda = time.monotonic()
result({"t_start": T_START, "t_import": t_import, "t_cuda": t_cuda})
"""

# ----------------------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    status: str  # PASS, FAIL, SKIP
    summary: str
    data: dict[str, Any] = field(default_factory=dict)


class Validator:
    def __init__(self, lib: Path, cap_gib: int, workdir: Path) -> None:
        self.lib = lib
        self.cap = cap_gib * GIB
        self.cap_text = f"{cap_gib}G"
        self.workdir = workdir
        self.checks: list[Check] = []
        self.scripts: dict[str, Path] = {}
        self._serial = 0

    # ---- plumbing ----

    def script(self, name: str, body: str) -> Path:
        if name not in self.scripts:
            path = self.workdir / f"child_{name}.py"
            path.write_text(CHILD_COMMON + body)
            self.scripts[name] = path
        return self.scripts[name]

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FCSP_") and k != "LD_PRELOAD"}
        env.pop("PYTORCH_CUDA_ALLOC_CONF", None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def fcsp_env(self, tag: str, region: Path | None = None) -> tuple[dict[str, str], Path]:
        self._serial += 1
        if region is None:
            region = Path(tempfile.mkdtemp(prefix="region-", dir=self.workdir))
        env = self.base_env()
        env["LD_PRELOAD"] = str(self.lib)
        env["FCSP_MEM_LIMIT"] = self.cap_text
        env["FCSP_TENANT"] = f"val-{tag}-{os.getpid()}-{self._serial}"
        env["FCSP_REGION_DIR"] = str(region)
        return env, region

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        print(f"{check.status} {check.name}: {check.summary}", flush=True)
        if check.status == "FAIL" and check.data.get("stderr_tail"):
            print("    stderr (last lines):", flush=True)
            for line in str(check.data["stderr_tail"]).splitlines():
                print(f"      {line}", flush=True)
        return check

    @staticmethod
    def parse(out: str) -> dict[str, Any] | None:
        for line in reversed(out.splitlines()):
            if line.startswith("RESULT "):
                parsed: dict[str, Any] = json.loads(line[len("RESULT ") :])
                return parsed
        return None

    @staticmethod
    def tail(text: str, lines: int = 15) -> str:
        return "\n".join(text.strip().splitlines()[-lines:])

    def run_child(
        self, script: Path, args: Sequence[str], env: Mapping[str, str], timeout: float = CHILD_TIMEOUT_S
    ) -> tuple[dict[str, Any] | None, str]:
        """Runs one child; returns (its RESULT or None, an error text)."""
        try:
            proc = subprocess.run(
                [sys.executable, str(script), *args],
                env=dict(env),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            return None, f"timed out after {timeout:.0f} s\n{self.tail(err)}"
        res = self.parse(proc.stdout)
        if proc.returncode != 0 or res is None:
            return None, f"exit {proc.returncode}\n{self.tail(proc.stdout + proc.stderr)}"
        res["_stderr"] = self.tail(proc.stderr, 5)
        return res, ""

    def run_group(self, fw: str, tag: str) -> tuple[list[dict[str, Any]], list[str]]:
        """GROUP_PROCS children of one tenant at once; returns their results and the failures."""
        script = self.script("group", GROUP)
        env, _ = self.fcsp_env(tag)
        bdir = Path(tempfile.mkdtemp(prefix=f"barrier-{fw}-", dir=self.workdir))
        procs = []
        for rank in range(GROUP_PROCS):
            args = [fw, str(rank), str(GROUP_PROCS), str(GROUP_CHUNK), str(bdir)]
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(script), *args],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        results: list[dict[str, Any]] = []
        failures: list[str] = []
        for rank, p in enumerate(procs):
            try:
                out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                failures.append(f"rank {rank}: timed out after {CHILD_TIMEOUT_S:.0f} s\n{self.tail(err)}")
                continue
            res = self.parse(out)
            if p.returncode != 0 or res is None:
                failures.append(f"rank {rank}: exit {p.returncode}\n{self.tail(out + err)}")
                continue
            results.append(res)
        shutil.rmtree(bdir, ignore_errors=True)
        return results, failures

    # ---- checks ----

    def check_fill(self, fw: str, label: str, alloc_conf: str | None) -> None:
        name = f"{fw} fill to OOM [{label}]"
        script = self.script(f"{fw}_fill", TORCH_FILL if fw == "torch" else CUPY_FILL)
        env, _ = self.fcsp_env(f"{fw[:2]}{len(self.checks)}")
        if alloc_conf:
            env["PYTORCH_CUDA_ALLOC_CONF"] = alloc_conf
        t0 = time.monotonic()
        res, err = self.run_child(script, [str(FILL_CHUNK), str(AGAIN_BYTES)], env)
        wall = time.monotonic() - t0
        if res is None:
            self.add(Check(name, "FAIL", f"the child failed: {err.splitlines()[0]}", {"stderr_tail": err}))
            return
        res["wall_s"] = wall
        problems = []
        if res["total"] != self.cap:
            problems.append(f"total {res['total']} != cap {self.cap}")
        if not res["oom"]:
            problems.append("no OutOfMemoryError")
        got = res["allocated_before_oom"]
        if not (6 * GIB <= got <= self.cap):
            problems.append(
                f"allocated {got / GIB:.2f} GiB before OOM, outside [6, {self.cap / GIB:.0f}] GiB"
            )
        if not res.get("again_ok"):
            problems.append(f"4 GiB + matmul after release failed: {res.get('again_error', '?')}")
        summary = (
            f"total {res['total'] / GIB:.3f} GiB, free {res['free'] / GIB:.3f} GiB; "
            f"{got / GIB:.2f} GiB ({got // FILL_CHUNK} x 512 MiB) before OOM, "
            f"reserved {res['reserved_at_oom'] / GIB:.2f} GiB; fill {res['fill_s'] * 1e3:.0f} ms, "
            f"OOM raised in {res['oom_raise_ms'] or 0:.2f} ms; "
            f"after release free {res['free_after_release'] / GIB:.2f} GiB, 4 GiB + matmul "
            f"{'ok' if res.get('again_ok') else 'FAILED'} ({res.get('again_ms', 0):.0f} ms); "
            f"process {wall:.1f} s"
        )
        if problems:
            summary = "; ".join(problems) + " | " + summary
        res["stderr_tail"] = res.pop("_stderr", "")
        self.add(Check(name, "FAIL" if problems else "PASS", summary, res))

    def check_group(self, fw: str) -> None:
        name = f"{fw} {GROUP_PROCS} procs x {GROUP_CHUNK // MIB} MiB, one tenant"
        t0 = time.monotonic()
        results, failures = self.run_group(fw, f"g{fw[:2]}")
        wall = time.monotonic() - t0
        data: dict[str, Any] = {"results": results, "failures": failures, "wall_s": wall}
        if failures or len(results) != GROUP_PROCS:
            data["stderr_tail"] = "\n".join(failures)
            self.add(Check(name, "FAIL", f"{len(results)}/{GROUP_PROCS} processes completed", data))
            return
        problems = []
        firsts = sum(1 for r in results if r["first_ok"])
        seconds = sum(1 for r in results if r["second_ok"])
        held_before = sum(int(r["reserved_before"]) for r in results)
        held_after = sum(int(r["reserved_after"]) for r in results)
        expected = max(0, min(GROUP_PROCS, (self.cap - held_before) // GROUP_CHUNK))
        if firsts != GROUP_PROCS:
            problems.append(f"only {firsts}/{GROUP_PROCS} first allocations succeeded")
        if not all(r["barrier_ready"] and r["barrier_done"] and r["barrier_measured"] for r in results):
            problems.append("a barrier timed out")
        if any(r["total"] != self.cap for r in results):
            problems.append(
                f"a process saw a total other than {self.cap}: {sorted({r['total'] for r in results})}"
            )
        if seconds != expected:
            problems.append(
                f"{seconds} second allocations succeeded, expected exactly {expected} "
                f"(cap {self.cap // MIB} MiB - {held_before // MIB} MiB held = "
                f"{(self.cap - held_before) // MIB} MiB free)"
            )
        if held_after > self.cap:
            problems.append(f"sum of reserved {held_after / GIB:.3f} GiB > cap")
        overheads = [int(r["nvml_used"]) - int(r["reserved_after"]) for r in results if r.get("nvml_used")]
        ctx = (
            f"{statistics.median(overheads) / MIB:.0f} MiB (median of {len(overheads)})"
            if overheads
            else "n/a"
        )
        data.update(
            firsts=firsts,
            seconds=seconds,
            expected_seconds=expected,
            held_before=held_before,
            held_after=held_after,
            context_overhead_bytes=overheads,
        )
        second_ms = sorted(r["second_ms"] for r in results)
        summary = (
            f"{firsts}/{GROUP_PROCS} first ok; {seconds} second ok (expected {expected}); reserved "
            f"{held_before / MIB:.0f} -> {held_after / MIB:.0f} MiB (cap {self.cap / MIB:.0f}); "
            f"second attempt {second_ms[0]:.1f}..{second_ms[-1]:.1f} ms; "
            f"context overhead per process (NVML used - reserved) {ctx}; {wall:.1f} s"
        )
        if problems:
            summary = "; ".join(problems) + " | " + summary
        self.add(Check(name, "FAIL" if problems else "PASS", summary, data))

    def check_context(self) -> None:
        script = self.script("context", CONTEXT)
        plain, err = self.run_child(script, [], self.base_env())
        if plain is None:
            self.add(
                Check(
                    "context memory (no preload)",
                    "FAIL",
                    f"the child failed: {err.splitlines()[0]}",
                    {"stderr_tail": err},
                )
            )
            return
        dev = None
        if "device_used_after" in plain:
            dev = plain["device_used_after"] - plain["device_used_before"]
        self_used = plain.get("self_used")
        ok = (dev is not None and dev > 0) or bool(self_used)
        parts = [f"device used +{dev / MIB:.0f} MiB" if dev is not None else "device used n/a"]
        parts.append(
            f"the process's usedGpuMemory {self_used / MIB:.0f} MiB"
            if self_used
            else "per-process usedGpuMemory n/a"
        )
        parts.append(f"torch reserved {plain['torch_reserved'] / MIB:.0f} MiB")
        summary = "; ".join(parts) + ": CUDA context memory, which fcsp does not charge to the tenant's cap"
        self.add(Check("context memory (no preload)", "PASS" if ok else "FAIL", summary, plain))

        env, _ = self.fcsp_env("ctx")
        pre, err = self.run_child(script, [], env)
        name = "fcsp adds no device memory"
        if pre is None:
            self.add(Check(name, "FAIL", f"the child failed: {err.splitlines()[0]}", {"stderr_tail": err}))
            return
        if not self_used or not pre.get("self_used"):
            self.add(Check(name, "SKIP", "NVML gives no per-process usedGpuMemory here", pre))
            return
        added = (pre["self_used"] - self_used) / MIB
        status = "PASS" if abs(added) <= CONTEXT_MAX_ADDED_MIB else "FAIL"
        self.add(
            Check(
                name,
                status,
                f"process usedGpuMemory {pre['self_used'] / MIB:.0f} MiB with preload vs "
                f"{self_used / MIB:.0f} MiB without: {added:+.0f} MiB (bound {CONTEXT_MAX_ADDED_MIB:.0f})",
                {"with": pre, "without": plain},
            )
        )

    def check_startup(self) -> None:
        name = "start-up: process start to first torch.empty(1, device='cuda')"
        script = self.script("startup", STARTUP)
        times: dict[str, list[tuple[float, float]]] = {"base": [], "fcsp": []}
        envs = {"base": self.base_env(), "fcsp": self.fcsp_env("st")[0]}  # one region, as on a node
        # one unmeasured run of each first (page cache, the region's creation), then alternating measured runs
        for i in range(STARTUP_RUNS + 1):
            for which in ("base", "fcsp"):
                env = envs[which]
                t0 = time.monotonic()
                res, err = self.run_child(script, [], env)
                if res is None:
                    self.add(
                        Check(
                            name,
                            "FAIL",
                            f"the child failed ({which}): {err.splitlines()[0]}",
                            {"stderr_tail": err},
                        )
                    )
                    return
                if i > 0:
                    times[which].append((res["t_cuda"] - t0, res["t_cuda"] - res["t_import"]))
        med = {
            w: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
            for w, v in times.items()
        }
        added_total = (med["fcsp"][0] - med["base"][0]) * 1e3
        added_cuda = (med["fcsp"][1] - med["base"][1]) * 1e3
        status = "PASS" if added_cuda <= STARTUP_MAX_ADDED_MS else "FAIL"
        summary = (
            f"median of {STARTUP_RUNS}: {med['base'][0] * 1e3:.0f} ms without, "
            f"{med['fcsp'][0] * 1e3:.0f} ms with preload ({added_total:+.0f} ms); "
            f"CUDA init + first tensor alone {med['base'][1] * 1e3:.0f} -> "
            f"{med['fcsp'][1] * 1e3:.0f} ms ({added_cuda:+.0f} ms, bound +{STARTUP_MAX_ADDED_MS:.0f} ms; "
            "HAMi-core: +170..290 ms)"
        )
        self.add(
            Check(
                name,
                status,
                summary,
                {"runs_s": times, "added_total_ms": added_total, "added_cuda_ms": added_cuda},
            )
        )


def gpu_info() -> str:
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,memory.used",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"nvidia-smi failed: {e}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, help="the libfcsp.so to preload")
    ap.add_argument("--json", metavar="OUT", help="write every check's figures as JSON to OUT")
    ap.add_argument("--cap-gib", type=int, default=8, help="the tenant cap in GiB (default 8)")
    ap.add_argument("--only", metavar="LIST", help="comma-separated subset of: a,b,c,d,e")
    args = ap.parse_args(argv)

    lib = Path(args.lib).resolve()
    if not lib.is_file():
        print(f"gpu_validate: {lib}: no such file", file=sys.stderr)
        return 2
    parts = set((args.only or "a,b,c,d,e").split(","))
    started = time.monotonic()
    print(f"gpu_validate: libfcsp {lib}; cap {args.cap_gib} GiB; python {sys.executable}", flush=True)
    print(f"gpu_validate: GPU {gpu_info()}", flush=True)

    with tempfile.TemporaryDirectory(prefix="fcsp-validate-") as tmp:
        v = Validator(lib, args.cap_gib, Path(tmp))
        if "a" in parts:
            v.check_fill("torch", "default", None)
            v.check_fill("torch", "expandable_segments", "expandable_segments:True")
            v.check_fill("torch", "cudaMallocAsync", "backend:cudaMallocAsync")
        if "b" in parts:
            v.check_group("torch")
        if "c" in parts:
            v.check_fill("cupy", "default pool", None)
            v.check_group("cupy")
        if "d" in parts:
            v.check_context()
        if "e" in parts:
            v.check_startup()
        checks = v.checks

    elapsed = time.monotonic() - started
    failed = [c for c in checks if c.status == "FAIL"]
    print(f"\nSummary ({elapsed:.0f} s):")
    width = max((len(c.name) for c in checks), default=10)
    for c in checks:
        print(f"  {c.status:4}  {c.name.ljust(width)}  {c.summary[:160]}")
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed or skipped; {len(failed)} failed.")
    if args.json:
        doc = {
            "lib": str(lib),
            "cap_bytes": args.cap_gib * GIB,
            "gpu": gpu_info(),
            "elapsed_s": elapsed,
            "checks": [
                {"name": c.name, "status": c.status, "summary": c.summary, "data": c.data} for c in checks
            ],
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
