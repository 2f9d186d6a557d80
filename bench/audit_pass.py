"""What one pass of the node daemon's driver-truth audit costs (fcsp_core/node/audit.py), simulated node.

Starts N processes (fcsp-probe, each holding a little memory under libfcsp, over N/4 tenants), then runs
the auditor in this process against the region and the simulated NVML, and prints the pass time: the CPU the
audit takes from the daemon every interval (200 ms by default).

    python bench/audit_pass.py [--procs 256] [--passes 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", type=int, default=256)
    ap.add_argument("--passes", type=int, default=200)
    args = ap.parse_args()

    from fcsp_core import paths

    lib = paths.lib_dir()
    base = Path(tempfile.mkdtemp(prefix="fcsp-audit-bench-"))
    (base / "sim").mkdir()
    env = dict(os.environ)
    env.update(
        LD_LIBRARY_PATH=str(lib / "sim"), FCSP_SIM_DIR=str(base / "sim"), FCSP_SIM_MEM="80G",
        FCSP_REGION_DIR=str(base / "region"),
    )  # fmt: skip
    os.environ.update(env)  # NVML in this process reads the same simulated node
    import ctypes

    ctypes.CDLL(str(lib / "sim" / "libnvidia-ml.so.1"), mode=ctypes.RTLD_GLOBAL)  # what pynvml then finds

    from fcsp_core import region_node
    from fcsp_core.node.audit import Auditor
    from fcsp_core.node.config import AuditConfig
    from fcsp_core.node.nvml import NvmlView
    from fcsp_core.region import Region
    from fcsp_core.region_node import RawSnapshot

    region_node.prepare_dir(base / "region")
    region = Region.open(base / "region", create=True)
    procs = []
    try:
        for i in range(args.procs):
            tenant = f"slurm-{1000 + i % max(1, args.procs // 4)}.0"
            penv = dict(env, LD_PRELOAD=str(lib / "libfcsp.so"), FCSP_TENANT=tenant, FCSP_MEM_LIMIT="1G")
            procs.append(
                subprocess.Popen(
                    [str(lib / "fcsp-probe"), "init", "alloc", "1M", "hold"],
                    env=penv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )  # fmt: skip
            )
        for p in procs:
            assert p.stdout is not None
            p.stdout.readline()
            p.stdout.readline()
        nvml = NvmlView.open()
        assert nvml is not None, "the simulated NVML did not load"

        def snapshot_into(raw: RawSnapshot) -> bool:
            raw.take(region)
            return True

        auditor = Auditor(AuditConfig(), nvml, snapshot_into, lambda: set())
        auditor.run_pass()  # fills the job cache, as the daemon's first pass does
        times = []
        cpu0 = time.process_time()
        for _ in range(args.passes):
            t0 = time.perf_counter()
            escapes = auditor.run_pass()
            times.append(time.perf_counter() - t0)
            assert not escapes
        cpu = (time.process_time() - cpu0) / args.passes
        nvml_times = []
        for _ in range(args.passes):
            t0 = time.perf_counter()
            auditor._nvml_reading()  # the driver's part (here the simulator's, which scans its process table)
            nvml_times.append(time.perf_counter() - t0)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        listed = sum(auditor.stats.unfenced.values())
        print(
            f"audit pass over {args.procs} GPU processes ({listed} unfenced): "
            f"p50 {statistics.median(times) * 1e3:.2f} ms, "
            f"p99 {p99 * 1e3:.2f} ms, CPU {cpu * 1e3:.2f} ms per pass "
            f"({cpu / 0.2 * 100:.1f}% of a core at the default 200 ms interval); of which NVML "
            f"p50 {statistics.median(nvml_times) * 1e3:.2f} ms"
        )
        nvml.close()
    finally:
        for p in procs:
            if p.stdin:
                p.stdin.close()
        for p in procs:
            p.wait(timeout=60)
        region.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
