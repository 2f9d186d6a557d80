"""`fcsp demo --ray`: a local Ray cluster runs fractional-GPU tasks declared with plain
`@ray.remote(resources={"fcsp_mem_gb": ..., "fcsp_sm": ...})`; one goes past its cap and fails.

Without a GPU (or with --sim) the node is fcsp's simulated driver (1 GPU x 80 GiB), and the demo says so.
"""

from __future__ import annotations

import os
import re
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

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


def _metrics_url(log: Path, timeout: float = 10.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        m = re.search(r"serving metrics on (\S+)", text)
        if m:
            return m.group(1)
        time.sleep(0.2)
    return None


def _run(gpu_mem: list[int] | None, state: Path) -> int:
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import fcsp_ray

    os.environ.update(fcsp_ray.cluster_env())
    os.environ.setdefault("FCSP_RAY_METRICS_PORT", "0")
    log = state / "fcsp-node.log"
    os.environ["FCSP_RAY_NODE_LOG"] = str(log)
    import ray

    fcsp_ray.enable()
    resources = fcsp_ray.node_resources(gpu_mem)
    print(f"fcsp demo --ray: node resources {resources}", flush=True)
    ray.init(num_cpus=2, resources=resources, include_dashboard=False, log_to_driver=False)
    try:
        body = ray.remote(num_cpus=0)(work)
        refs = [body.options(resources=res, name=name).remote(gib) for name, res, gib in TASKS]
        url = _metrics_url(log)
        print(f"{'task':8} {'cap':>7} {'SM':>4} {'asked':>6} {'saw total':>9} {'peak':>6}  outcome")
        failed = 0
        for (name, res, gib), ref in zip(TASKS, refs, strict=True):
            cap = f"{res['fcsp_mem_gb']:g} GiB"
            sm = f"{res['fcsp_sm']:g}%"
            try:
                r = ray.get(ref)
                print(
                    f"{name:8} {cap:>7} {sm:>4} {gib:>4} G {r['total'] / GIB:>7g} G {r['peak'] / GIB:>4g} G"
                    f"  finished (tenant {r['tenant']})"
                )
            except ray.exceptions.RayTaskError as exc:
                failed += 1
                reason = str(exc.cause) if exc.cause else str(exc).splitlines()[-1]
                print(f"{name:8} {cap:>7} {sm:>4} {gib:>4} G {'':>9} {'':>6}  FAILED: {reason}")
        print(f"metrics: {url or '(the node daemon did not start)'} (fcsp node, log {log})")
        if url:
            with urllib.request.urlopen(url, timeout=10) as resp:
                lines = [
                    ln for ln in resp.read().decode().splitlines() if ln.startswith("fcsp_gpu_memory_total")
                ]
            print("  " + "\n  ".join(lines))
        expected = sum(1 for _, res, gib in TASKS if gib > res["fcsp_mem_gb"])
        return 0 if failed == expected else 1
    finally:
        ray.shutdown()


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
                f"{node.mem_bytes / GIB:g} GiB (state in {node.state_dir})",
                flush=True,
            )
            state = node.state_dir
            gpu_mem: list[int] | None = [node.mem_bytes] * node.gpus
        else:
            print("fcsp demo --ray: on this node's real GPU(s)", flush=True)
            state = Path(os.environ.get("TMPDIR", "/tmp"))
            gpu_mem = None
        return _run(gpu_mem, state)
    return 1
