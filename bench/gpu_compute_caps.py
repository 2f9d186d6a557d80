"""Compute caps on a real GPU: achieved / unthrottled throughput for three kernel shapes at several caps, two
tenants side by side, a PyTorch bf16 matmul loop, a noisy-neighbour latency test and the added launch cost.

    python bench/gpu_compute_caps.py --lib /path/to/libfcsp.so [--json OUT] [--quick]

Each measurement runs in a fresh subprocess (CuPy RawKernel spin kernels, or PyTorch), with LD_PRELOAD and
FCSP_SM_LIMIT set for the capped runs and a private FCSP_REGION_DIR. Prints a table; exits 1 when a figure is
outside its tolerance (3 points of the cap)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TOLERANCE_POINTS = 3.0

Row = tuple[str, str, str, str]
Check = Callable[[str, float, float], None]

# A spin kernel: each block busy-waits `cycles` SM clock cycles.
WORKER = r"""
import json, sys, time
import cupy as cp
src = r'''
extern "C" __global__ void spin(long long cycles) {
    long long start = clock64();
    while (clock64() - start < cycles) { }
}
'''
mod = cp.RawModule(code=src)
spin = mod.get_function("spin")
blocks, threads, cycles, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
stream = cp.cuda.Stream(non_blocking=True)
with stream:
    for _ in range(20):
        spin((blocks,), (threads,), (cp.int64(cycles),))
    stream.synchronize()
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(16):
            spin((blocks,), (threads,), (cp.int64(cycles),))
        n += 16
        stream.synchronize()
    dt = time.perf_counter() - t0
print(json.dumps({"launches": n, "seconds": dt, "rate": n / dt}))
"""

MATMUL = r"""
import json, sys, threading, time
import torch
clocks = []
def sample_clocks():
    try:
        import pynvml
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        while True:
            clocks.append(pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM))
            time.sleep(0.05)
    except Exception:  # clocks are a diagnostic only
        return
threading.Thread(target=sample_clocks, daemon=True).start()
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
for _ in range(5):
    a @ b
torch.cuda.synchronize()
seconds = float(sys.argv[1])
n = 0
t0 = time.perf_counter()
gpu_ms, timed = 0.0, 0
while time.perf_counter() - t0 < seconds:
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    a @ b  # timed alone: its kernel time, whatever the cap does between launches
    e1.record()
    for _ in range(3):
        a @ b
    n += 4
    torch.cuda.synchronize()
    gpu_ms += e0.elapsed_time(e1)
    timed += 1
dt = time.perf_counter() - t0
mhz = sum(clocks[4:]) / max(1, len(clocks[4:]))
out = {"launches": n, "seconds": dt, "rate": n / dt, "ms_per_matmul": gpu_ms / timed, "sm_mhz": mhz}
print(json.dumps(out))
"""

# A latency-bound victim: one small kernel at a time, each timed.
VICTIM = r"""
import json, sys, time
import cupy as cp
src = r'''
extern "C" __global__ void spin(long long cycles) {
    long long start = clock64();
    while (clock64() - start < cycles) { }
}
'''
spin = cp.RawModule(code=src).get_function("spin")
seconds = float(sys.argv[1])
stream = cp.cuda.Stream(non_blocking=True)
times = []
with stream:
    for _ in range(50):
        spin((4,), (64,), (cp.int64(20000),))
    stream.synchronize()
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        spin((4,), (64,), (cp.int64(20000),))
        stream.synchronize()
        times.append((time.perf_counter() - t0) * 1e6)
times.sort()
p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
print(json.dumps({"p50_us": p50, "p99_us": p99, "n": len(times)}))
"""

SHAPES = {
    # (blocks, threads, cycles): long full-grid kernels (~2 ms), many short ones (~20 us), few SMs (~1 ms)
    "long full-grid": (132 * 8, 256, 3_500_000),
    "short full-grid": (132 * 8, 256, 35_000),
    "few SMs (8 blocks)": (8, 256, 1_750_000),
}


def run_py(code: str, args: list[str], env: dict[str, str], timeout: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def matmul_part(lib: str, region: Path, seconds: float, results: dict[str, object], check: Check) -> None:
    """A PyTorch bf16 matmul loop at 40%, against its native rate."""
    base_run = run_py(MATMUL, [str(seconds)], env_for(None, region, "", None), 180)
    capped_run = run_py(MATMUL, [str(seconds)], env_for(lib, region, "mm40", 40), 180)
    base_mm, mm = base_run["rate"], capped_run["rate"]
    print(
        f"matmul: SM clock {base_run['sm_mhz']:.0f} MHz unthrottled, "
        f"{capped_run['sm_mhz']:.0f} MHz at 40% "
        "(a GPU under a duty cycle clocks higher, so a cap on GPU time yields more throughput)",
        flush=True,
    )
    results["matmul unthrottled rate"] = base_mm
    results["matmul cap 40"] = mm / base_mm
    check("PyTorch bf16 8192^3 matmul loop at 40%", mm / base_mm * 100, 40)


def noisy_part(lib: str, region: Path, seconds: float, results: dict[str, object], rows: list[Row]) -> None:
    """A latency-bound victim alone, then beside a saturating neighbour capped at 25%."""
    # 4. noisy neighbour: the victim alone, then beside a saturating neighbour capped at 25%
    alone = run_py(VICTIM, [str(seconds)], env_for(None, region, "", None), 120)
    # The neighbour saturates the GPU with short full-grid kernels (~20 us): a kernel is never preempted, so
    # the victim's latency can only be as good as the neighbour's kernel length allows.
    blocks, threads, cycles = SHAPES["short full-grid"]
    hog = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(blocks), str(threads), str(cycles), str(seconds + 6)],
        stdout=subprocess.PIPE,
        text=True,
        env=env_for(lib, region, "hog25", 25),
    )
    time.sleep(4)  # let the neighbour start and saturate
    beside = run_py(VICTIM, [str(seconds)], env_for(None, region, "", None), 120)
    hog.communicate(timeout=120)
    slow50 = (beside["p50_us"] / alone["p50_us"] - 1) * 100
    slow99 = (beside["p99_us"] / alone["p99_us"] - 1) * 100
    results["victim alone"] = alone
    results["victim beside a 25% neighbour"] = beside
    print(
        f"noisy neighbour: victim p50 {alone['p50_us']:.1f} -> {beside['p50_us']:.1f} us ({slow50:+.1f}%), "
        f"p99 {alone['p99_us']:.1f} -> {beside['p99_us']:.1f} us ({slow99:+.1f}%)",
        flush=True,
    )
    rows.append(
        (
            "noisy neighbour (25%): victim p50 / p99 slowdown",
            "-",
            f"{slow50:+.1f}% / {slow99:+.1f}%",
            "reported",
        )
    )


def env_for(
    lib: str | None, region: Path, tenant: str, sm: int | None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FCSP_")}
    env["PYTHONUNBUFFERED"] = "1"
    if lib and sm is not None:
        env["LD_PRELOAD"] = lib
        env["FCSP_SM_LIMIT"] = str(sm)
        env["FCSP_REGION_DIR"] = str(region)
        env["FCSP_TENANT"] = tenant
    env.update(extra or {})
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, help="libfcsp.so to preload")
    ap.add_argument("--json", help="write all figures to this file")
    ap.add_argument("--quick", action="store_true", help="shorter runs, fewer caps")
    ap.add_argument(
        "--only", default="shapes,pair,matmul,noisy", help="comma list of parts: shapes, pair, matmul, noisy"
    )
    args = ap.parse_args()
    seconds = 1.5 if args.quick else 3.0
    caps = [25, 50, 75] if args.quick else [10, 25, 40, 50, 75, 90]
    region = Path(tempfile.mkdtemp(prefix="fcsp-sm-"))
    results: dict[str, object] = {}
    failures: list[str] = []
    rows: list[Row] = []

    def check(name: str, achieved_pct: float, target: float) -> None:
        ok = abs(achieved_pct - target) <= TOLERANCE_POINTS
        rows.append((name, f"{target:.0f}%", f"{achieved_pct:.1f}%", "ok" if ok else "MISS"))
        if not ok:
            failures.append(f"{name}: {achieved_pct:.1f}% for a {target:.0f}% cap")
        print(f"{'PASS' if ok else 'FAIL'} {name}: {achieved_pct:.1f}% (cap {target:.0f}%)", flush=True)

    parts = set(args.only.split(","))
    # 1. three shapes x caps
    for shape, (blocks, threads, cycles) in SHAPES.items() if parts & {"shapes", "pair"} else ():
        wargs = [str(blocks), str(threads), str(cycles), str(seconds)]
        base = run_py(WORKER, wargs, env_for(None, region, "", None), 120)["rate"]
        results[f"{shape} unthrottled rate"] = base
        print(f"{shape}: unthrottled {base:.1f} launches/s", flush=True)
        for cap in caps if "shapes" in parts else ():
            rate = run_py(WORKER, wargs, env_for(args.lib, region, f"s{cap}", cap), 120)["rate"]
            results[f"{shape} cap {cap}"] = rate / base
            check(f"{shape} at {cap}%", rate / base * 100, cap)

    # 2. two tenants at 30 and 70, together (long full-grid kernels)
    if "pair" in parts:
        blocks, threads, cycles = SHAPES["long full-grid"]
        wargs = [str(blocks), str(threads), str(cycles), str(seconds * 2)]
        base = float(results["long full-grid unthrottled rate"])  # type: ignore[arg-type]
        procs = {
            cap: subprocess.Popen(
                [sys.executable, "-c", WORKER, *wargs],
                stdout=subprocess.PIPE,
                text=True,
                env=env_for(args.lib, region, f"pair{cap}", cap),
            )
            for cap in (30, 70)
        }
        for cap, p in procs.items():
            out, _ = p.communicate(timeout=180)
            rate = json.loads(out.strip().splitlines()[-1])["rate"]
            results[f"pair cap {cap}"] = rate / base
            check(f"two tenants: the one at {cap}%", rate / base * 100, cap)

    # 3. PyTorch bf16 matmul at 40
    if "matmul" in parts:
        matmul_part(args.lib, region, seconds, results, check)
    # 4. noisy neighbour
    if "noisy" in parts:
        noisy_part(args.lib, region, seconds, results, rows)
    print(
        "\ncompute caps on",
        subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip(),
    )
    print(f"{'measurement':58} {'cap':>5} {'achieved':>16}  verdict")
    for name, cap, got, verdict in rows:
        print(f"{name:58} {cap:>5} {got:>16}  {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nall within {TOLERANCE_POINTS:.0f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
