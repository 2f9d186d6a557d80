"""`fcsp demo --ray`: a local Ray cluster runs fractional-GPU tasks declared with plain
`@ray.remote(resources={"fcsp_mem_gb": ..., "fcsp_sm": ...})`; one goes past its cap and is refused.

Without a GPU (or with --sim) the node is fcsp's simulated driver (1 GPU x 80 GiB), and the demo says so.
The table comes once every task is done (Ray's own logging is kept to warnings), then the node daemon's
metrics (or why it did not start: its log's last line), then one verdict line. Its state lives in a
temporary directory removed at exit, so no path of it is printed.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from fcsp_core.fmt import table

GIB = 1 << 30
# name, fcsp resources, GiB the task allocates (1 GiB at a time)
TASKS: list[tuple[str, dict[str, float], int]] = [
    ("train-a", {"fcsp_mem_gb": 8, "fcsp_sm": 40}, 6),
    ("train-b", {"fcsp_mem_gb": 16, "fcsp_sm": 30}, 12),
    ("eval", {"fcsp_mem_gb": 4, "fcsp_sm": 20}, 3),
    ("greedy", {"fcsp_mem_gb": 8, "fcsp_sm": 10}, 12),
]


def work(gib: int) -> dict[str, Any]:
    """A task's body: allocate gib GiB, 1 GiB at a time, hold it a moment, free it."""
    from fcsp_ray.cuda import Cuda, CudaError

    cuda = Cuda()
    _, total = cuda.mem_info()
    try:
        for _ in range(gib):
            cuda.alloc(GIB)
    except CudaError as exc:
        held = len(cuda.held)
        cuda.free_all()
        raise MemoryError(
            f"{exc} after {held} GiB: asked for {gib} GiB under a cap of {total / GIB:g} GiB"
        ) from None
    time.sleep(1.0)
    peak = len(cuda.held) * GIB
    cuda.free_all()
    return {"total": total, "peak": peak, "tenant": os.environ.get("FCSP_TENANT")}


def _metrics_url(log: Path, timeout: float = 10.0) -> tuple[str | None, str]:
    """The node daemon's metrics URL from its log; else (None, why: the log's last line, or that it is empty).
    Stops waiting as soon as the log says the daemon was not started."""
    from fcsp_ray.daemon import NOT_STARTED

    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        m = re.search(r"serving metrics on (\S+)", text)
        if m:
            return m.group(1), ""
        if NOT_STARTED in text:
            break
        time.sleep(0.2)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines:
        return None, lines[-1].strip()
    return (
        None,
        f"its log stayed empty for {timeout:g} s (Ray's runtime-env agent never loaded fcsp's plugin?)",
    )


def _outcome(name: str, res: dict[str, float], gib: int, ref: Any) -> tuple[list[str], str | None]:
    """The task's table row, and what went unexpectedly (None when it did what the plan says)."""
    import ray

    cap = f"{res['fcsp_mem_gb']:g} GiB"
    row = [name, cap, f"{res['fcsp_sm']:g}%", f"{gib} GiB"]
    expect_refusal = gib > res["fcsp_mem_gb"]
    try:
        r = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        reason = str(exc.cause) if exc.cause else str(exc).splitlines()[-1]
        if expect_refusal and "OUT_OF_MEMORY" in reason:
            return [*row, "", "", f"refused past its cap, as expected: {reason}"], None
        return [*row, "", "", f"FAILED: {reason}"], f"{name} failed: {reason}"
    row += [f"{r['total'] / GIB:g} GiB", f"{r['peak'] / GIB:g} GiB", f"finished (tenant {r['tenant']})"]
    if expect_refusal:
        return row, f"{name} allocated {r['peak'] / GIB:g} GiB past its {cap} cap"
    if r["total"] != int(res["fcsp_mem_gb"] * GIB):
        return row, f"{name} saw {r['total'] / GIB:g} GiB as total memory, not its {cap} cap"
    return row, None


def _run(gpu_mem: list[int] | None, state: Path) -> int:
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import fcsp_ray
    from fcsp_ray.resources import NvmlError

    os.environ.update(fcsp_ray.cluster_env())
    os.environ.setdefault("FCSP_RAY_METRICS_PORT", "0")
    log = state / "fcsp-node.log"
    os.environ["FCSP_RAY_NODE_LOG"] = str(log)
    import ray

    try:
        resources = fcsp_ray.node_resources(gpu_mem)
    except NvmlError as exc:
        print(f"fcsp demo --ray: {exc}", file=sys.stderr)
        return 1
    fcsp_ray.enable()
    print(f"fcsp demo --ray: node resources {resources}; starting a local Ray instance", flush=True)
    start = time.monotonic()
    ray.init(
        num_cpus=2, resources=resources, include_dashboard=False, log_to_driver=False,
        logging_level=logging.WARNING,
    )  # fmt: skip
    try:
        body = ray.remote(num_cpus=0)(work)
        refs = [body.options(resources=res, name=name).remote(gib) for name, res, gib in TASKS]
        outcomes = [_outcome(name, res, gib, ref) for (name, res, gib), ref in zip(TASKS, refs, strict=True)]
        url, why = _metrics_url(log)
        metrics: list[str] = []
        if url:
            with urllib.request.urlopen(url, timeout=10) as resp:
                metrics = [
                    ln for ln in resp.read().decode().splitlines() if ln.startswith("fcsp_gpu_memory_total")
                ]
    finally:
        ray.shutdown()
    headers = ["TASK", "CAP", "SM", "ASKED", "SAW TOTAL", "PEAK", "OUTCOME"]
    print(table(headers, [row for row, _ in outcomes]))
    if url:
        print(f"metrics: {url} (fcsp node, served while the Ray node ran):")
        print("  " + "\n  ".join(metrics))
    else:
        print(f"metrics: the node daemon did not start: {why}")
    problems = [p for _, p in outcomes if p]
    if not url:
        problems.append("no node daemon")
    elapsed = time.monotonic() - start
    if problems:
        print(f"fcsp demo --ray: UNEXPECTED: {'; '.join(problems)} ({elapsed:.1f} s)")
        return 1
    fenced = [name for name, res, gib in TASKS if gib <= res["fcsp_mem_gb"]]
    refused = [name for name, res, gib in TASKS if gib > res["fcsp_mem_gb"]]
    print(
        f"Every cap held: {', '.join(fenced)} finished within their caps, each seeing its cap as the GPU's "
        f"total memory; {' and '.join(refused)} was refused past its cap with CUDA_ERROR_OUT_OF_MEMORY. "
        f"({elapsed:.1f} s)"
    )
    return 0


def main(force_sim: bool = False) -> int:
    try:
        import ray  # noqa: F401
    except ImportError:
        print("fcsp demo --ray: ray is not installed: pip install 'fcsp[ray]'", file=sys.stderr)
        return 1
    from fcsp_core import launch, paths
    from fcsp_core.config import SimSettings

    sim = force_sim or not Path("/dev/nvidiactl").exists()
    with ExitStack() as stack:
        if sim:
            node = stack.enter_context(launch.sim_node(os.environ, SimSettings(), paths.sim_dir()))
            os.environ.clear()
            os.environ.update(node.env)
            print(
                f"fcsp demo --ray: no GPU used: fcsp's simulated driver, {node.gpus} GPU x "
                f"{node.mem_bytes / GIB:g} GiB",
                flush=True,
            )
            state = node.state_dir
            gpu_mem: list[int] | None = [node.mem_bytes] * node.gpus
        else:
            print("fcsp demo --ray: on this node's real GPU(s)", flush=True)
            state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fcsp-ray-demo-")))
            gpu_mem = None
        return _run(gpu_mem, state)
    return 1
