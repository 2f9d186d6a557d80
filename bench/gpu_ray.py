"""fcsp's Ray integration on a real GPU: one command, one table.

    python3 bench/gpu_ray.py [--out DIR] [--sim]

Runs on one node with one GPU (an H200 here), with ray and fcsp importable (bench/gpu_ray.sh sets that up
on a machine without network). What it checks, each a row of the table:
  demo      `fcsp demo --ray` on the real GPU: exit 0 and its verdict line
  tasks     fractional PyTorch tasks (2.5, 4, 8, 16 GiB caps) and an actor (12 GiB) at once: each sees its
            cap as torch.cuda.mem_get_info()'s total; filling memory ends in torch.cuda.OutOfMemoryError at it
  pack      N+1 actors of 12 GiB on the GPU's fcsp_mem_gb (140 on a 141 GiB H200): Ray starts at most N = 11,
            each capped and holding ~12 GiB; the last one waits
  reclaim   one of them killed (ray.kill): its tenant's memory in the fcsp region drops to 0 (seconds), and
            the waiting actor starts and gets its full cap
  sm        two actors at fcsp_sm 30 and 70 running bf16 matmuls at once: their throughput ratio (ideal
            0.43) and each one's share of an uncapped run's throughput
With --sim (no GPU, no torch): the same orchestration on fcsp's simulated driver through a ctypes driver
client, SM row skipped; for trying the script, not for figures.
Exit status 0 when every row passed. Writes DIR/gpu_ray.json (the rows) when --out is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

GIB = 1 << 30
STEP = 256 << 20  # fill memory 256 MiB at a time
ACTOR_GIB = 12


# ------------------------------------------------------------------------------------------------------
# What runs in the workers
# ------------------------------------------------------------------------------------------------------


class Gpu:
    """Device memory through PyTorch (real GPU) or the ctypes driver client (--sim)."""

    def __init__(self) -> None:
        self.sim = os.environ.get("FCSP_SIM_DIR") is not None
        self.held: list[Any] = []
        if self.sim:
            from fcsp_ray.cuda import Cuda

            self.cuda = Cuda()
        else:
            import torch

            self.torch = torch
            torch.cuda.init()

    def mem_info(self) -> tuple[int, int]:
        if self.sim:
            return self.cuda.mem_info()
        free, total = self.torch.cuda.mem_get_info()
        return int(free), int(total)

    def fill(self) -> dict[str, Any]:
        """Allocate STEP at a time until refused; keep it. What the framework saw and where it stopped."""
        free, total = self.mem_info()
        error = ""
        t0 = time.monotonic()
        while len(self.held) * STEP < 4 * total:  # a cap that never refuses stops here
            try:
                if self.sim:
                    self.cuda.alloc(STEP)
                    self.held.append(STEP)
                else:
                    self.held.append(self.torch.empty(STEP, dtype=self.torch.uint8, device="cuda"))
            except Exception as exc:  # noqa: BLE001 - torch.cuda.OutOfMemoryError or CudaError, reported
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                break
        return {
            "pid": os.getpid(), "tenant": os.environ.get("FCSP_TENANT"), "total": total, "free": free,
            "held": len(self.held) * STEP, "error": error, "fill_s": time.monotonic() - t0,
        }  # fmt: skip

    def release(self) -> None:
        self.held.clear()
        if self.sim:
            self.cuda.free_all()
        else:
            self.torch.cuda.empty_cache()


def fill_task() -> dict[str, Any]:
    gpu = Gpu()
    r = gpu.fill()
    gpu.release()
    return r


class Filler:
    """An actor that fills its cap and holds it until killed."""

    def __init__(self) -> None:
        self.gpu = Gpu()

    def fill(self) -> dict[str, Any]:
        return self.gpu.fill()


class Matmul:
    """An actor that runs bf16 matmuls for a while and counts them."""

    def __init__(self, n: int = 8192) -> None:
        import torch

        self.torch = torch
        self.a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        self.b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        self.run(1.0)  # warm up (cuBLAS handles, kernel choice, fcsp's cost samples)

    def run(self, seconds: float, start_at: float = 0.0) -> dict[str, float]:
        while start_at and time.time() < start_at:
            time.sleep(0.001)
        torch = self.torch
        done = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            for _ in range(8):
                torch.matmul(self.a, self.b)
            torch.cuda.synchronize()
            done += 8
        return {"matmuls": done, "seconds": time.monotonic() - t0}


# ------------------------------------------------------------------------------------------------------
# The checks (driver side)
# ------------------------------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []

    def add(self, check: str, ok: bool, measured: str, expected: str) -> None:
        self.rows.append({"check": check, "result": "PASS" if ok else "FAIL", "measured": measured,
                          "expected": expected})  # fmt: skip
        print(f"[{'PASS' if ok else 'FAIL'}] {check}: {measured}", flush=True)

    def table(self) -> str:
        head = ["check", "result", "measured", "expected"]
        widths = [max(len(h), *(len(r[h]) for r in self.rows)) for h in head]
        lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
        lines.append("-|-".join("-" * w for w in widths))
        lines += [" | ".join(r[h].ljust(w) for h, w in zip(head, widths, strict=True)) for r in self.rows]
        return "\n".join(lines)


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def check_demo(report: Report, sim: bool) -> None:
    argv = [sys.executable, "-m", "fcsp_core", "demo", "--ray", *(["--sim"] if sim else [])]
    t0 = time.monotonic()
    # cwd /: `python -m` puts the cwd first on sys.path, and a source checkout's fcsp_core has no lib/
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False, cwd="/")
    print(done.stdout + done.stderr, flush=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    verdict = lines[-1] if lines else "(no output)"
    report.add(
        "demo", done.returncode == 0 and verdict.startswith("Every cap held"),
        f"exit {done.returncode} in {time.monotonic() - t0:.0f} s: {verdict[:90]}",
        "exit 0, 'Every cap held: ...'",
    )  # fmt: skip


def capped_ok(r: dict[str, Any], cap: float) -> bool:
    """Saw the cap as total; filled to within 1 GiB under it (context memory, allocator rounding) and no
    further; stopped on an out-of-memory error."""
    return (
        r["total"] == int(cap * GIB)
        and cap * GIB - GIB <= r["held"] <= cap * GIB
        and "memory" in (r["error"].lower())
    )


def check_tasks(report: Report, ray: Any, gpu_opts: dict[str, Any]) -> None:
    import fcsp_ray

    # max_calls=1: the workers exit after their task, so their CUDA contexts do not crowd the packing below
    task = ray.remote(max_calls=1)(fill_task)
    caps = [4.0, 8.0, 16.0, 2.5]
    refs = [task.options(**gpu_opts, **fcsp_ray.options(mem_gb=c, sm=25)).remote() for c in caps]
    actor = ray.remote(Filler).options(**gpu_opts, **fcsp_ray.options(mem_gb=ACTOR_GIB)).remote()
    results = ray.get(refs, timeout=300)
    a = ray.get(actor.fill.remote(), timeout=300)
    ray.kill(actor)
    for cap, r in [*zip(caps, results, strict=True), (float(ACTOR_GIB), a)]:
        kind = "actor" if r is a else "task"
        report.add(
            f"{kind} {cap:g} GiB",
            capped_ok(r, cap),
            f"mem_get_info total {gib(r['total'])}, filled {gib(r['held'])}, then {r['error'][:70]}",
            f"total {cap:g} GiB, OOM at <= {cap:g} GiB",
        )


def used_by(region_dir: Path, tenant: str) -> int:
    from fcsp_core import region

    snap = region.read_snapshot(region_dir)
    return sum(g.used_bytes for t in snap.tenants if t.name == tenant for g in t.gpus)


def gpu_used_bytes() -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - a figure for the table, not a check
        return None


def check_pack_and_reclaim(report: Report, ray: Any, gpu_opts: dict[str, Any], region_dir: Path) -> None:
    import fcsp_ray

    room = int(ray.cluster_resources()["fcsp_mem_gb"])
    fit = room // ACTOR_GIB
    cls = ray.remote(Filler).options(**gpu_opts, **fcsp_ray.options(mem_gb=ACTOR_GIB))
    actors = [cls.remote() for _ in range(fit + 1)]
    refs = [a.fill.remote() for a in actors]
    t0 = time.monotonic()
    ready, waiting = ray.wait(refs, num_returns=fit, timeout=300)
    ready_s = time.monotonic() - t0
    # the last one must still be waiting for fcsp_mem_gb a while after the others are all up
    late, _ = ray.wait(waiting, num_returns=len(waiting), timeout=5)
    got = {refs.index(r): ray.get(r) for r in ready}
    capped = sum(capped_ok(r, ACTOR_GIB) for r in got.values())
    held = sum(r["held"] for r in got.values())
    used = gpu_used_bytes()
    report.add(
        f"pack {fit + 1} x {ACTOR_GIB} GiB actors",
        len(ready) == fit and not late and capped == fit,
        f"{len(ready)} ran in {ready_s:.0f} s ({capped} capped, holding {gib(held)}; GPU used "
        f"{gib(used) if used is not None else '?'}), {len(waiting) - len(late)} waiting",
        f"{fit} run (fcsp_mem_gb {room}), each capped; 1 waits",
    )
    victim = min(got)
    tenant = got[victim]["tenant"]
    before = used_by(region_dir, tenant)
    ray.kill(actors[victim], no_restart=True)
    t0 = time.monotonic()
    while used_by(region_dir, tenant) and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    reclaim_s = time.monotonic() - t0
    left = used_by(region_dir, tenant)
    last = ray.get(waiting[0], timeout=300) if waiting else None
    started_s = time.monotonic() - t0
    report.add(
        "reclaim a killed actor",
        left == 0 and before > 0 and last is not None and capped_ok(last, ACTOR_GIB),
        f"{tenant}: {gib(before)} -> {gib(left)} in {reclaim_s:.2f} s; the waiting actor started after "
        f"{started_s:.0f} s and filled {gib(last['held']) if last else '-'}",
        "0 GiB left; the waiting actor gets its full cap",
    )
    for a in actors:
        ray.kill(a)


def check_sm(report: Report, ray: Any, gpu_opts: dict[str, Any], seconds: float = 10.0) -> None:
    import fcsp_ray

    solo = ray.remote(Matmul).options(**gpu_opts, **fcsp_ray.options(mem_gb=8)).remote()
    base = ray.get(solo.run.remote(seconds / 2), timeout=300)
    ray.kill(solo)
    base_rate = base["matmuls"] / base["seconds"]
    shares = (30, 70)
    actors = [
        ray.remote(Matmul).options(**gpu_opts, **fcsp_ray.options(mem_gb=8, sm=s)).remote() for s in shares
    ]
    ray.get([a.run.remote(0.5) for a in actors], timeout=300)  # both constructed and warm
    start_at = time.time() + 1.0
    runs = ray.get([a.run.remote(seconds, start_at) for a in actors], timeout=300)
    rates = [r["matmuls"] / r["seconds"] for r in runs]
    ratio = rates[0] / rates[1]
    for a in actors:
        ray.kill(a)
    report.add(
        "SM 30/70 under load",
        abs(ratio - 30 / 70) <= 0.12,
        f"{rates[0]:.0f} and {rates[1]:.0f} matmul/s (ratio {ratio:.2f}; of an uncapped run's "
        f"{base_rate:.0f}/s: {100 * rates[0] / base_rate:.0f}% and {100 * rates[1] / base_rate:.0f}%)",
        "ratio 0.43 +- 0.12",
    )


# ------------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="write DIR/gpu_ray.json and DIR/fcsp-node.log")
    parser.add_argument("--sim", action="store_true", help="the simulated driver (no GPU, no torch)")
    args = parser.parse_args()
    report = Report()
    check_demo(report, args.sim)

    import fcsp_ray
    import ray

    with tempfile.TemporaryDirectory(prefix="fcsp-gpu-ray-") as tmp:
        region_dir = Path(tmp) / "region"
        log = (args.out or Path(tmp)) / "fcsp-node.log"
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
        os.environ.update(fcsp_ray.cluster_env())
        os.environ.update(
            {"FCSP_REGION_DIR": str(region_dir), "FCSP_RAY_METRICS_PORT": "0", "FCSP_RAY_NODE_LOG": str(log)}
        )
        gpu_opts: dict[str, Any] = {"num_gpus": 0.01, "num_cpus": 0}
        if args.sim:
            from fcsp_core import paths

            sim = Path(tmp) / "sim"
            sim.mkdir()
            ld = os.environ.get("LD_LIBRARY_PATH")
            os.environ.update(
                {"LD_LIBRARY_PATH": f"{paths.sim_dir()}:{ld}" if ld else str(paths.sim_dir()),
                 "FCSP_SIM_DIR": str(sim), "FCSP_SIM_GPUS": "1", "FCSP_SIM_MEM": "141G"}
            )  # fmt: skip
            gpu_opts = {"num_cpus": 0}
        fcsp_ray.enable()
        resources = fcsp_ray.node_resources([141 * GIB] if args.sim else None)
        ray.init(
            num_cpus=min(16, os.cpu_count() or 4), num_gpus=None if args.sim else 1, resources=resources,
            include_dashboard=False, log_to_driver=True, logging_level=logging.WARNING,
        )  # fmt: skip
        print(f"ray {ray.__version__}, node resources {resources}", flush=True)
        steps = [
            ("tasks", lambda: check_tasks(report, ray, gpu_opts)),
            ("pack", lambda: check_pack_and_reclaim(report, ray, gpu_opts, region_dir)),
        ]
        if not args.sim:
            steps.append(("sm", lambda: check_sm(report, ray, gpu_opts)))
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - one failed check is a row; the others still run
                report.add(name, False, f"{type(exc).__name__}: {exc}"[:200], "-")
        ray.shutdown()
    print()
    print(report.table())
    if args.out:
        (args.out / "gpu_ray.json").write_text(json.dumps(report.rows, indent=1))
    return 0 if all(r["result"] == "PASS" for r in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
