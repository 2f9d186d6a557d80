"""Simulated-node environments and the simulator's own counters (the tests' ground truth)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.native import SANITIZER_OPTIONS, Native
from support.probe import exit_status

# FCSP_* variables a test environment keeps from the outside (everything else FCSP_* is dropped).
KEPT_FCSP_VARS = ("FCSP_LIB_DIR",)


def make_sim_env(
    native: Native,
    base_dir: Path,
    gpus: int = 1,
    mem: str = "8G",
    sms: int = 132,
    kernel_us: str | None = None,
    preload: bool = True,
    **extra: str,
) -> dict[str, str]:
    """os.environ for a process on the simulated node under base_dir (state in base_dir/sim, region in
    base_dir/region), with libfcsp.so preloaded unless preload=False; extra variables last, as given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FCSP_") or k in KEPT_FCSP_VARS}
    existing = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = f"{native.sim_dir}:{existing}" if existing else str(native.sim_dir)
    env["FCSP_SIM_GPUS"] = str(gpus)
    env["FCSP_SIM_MEM"] = str(mem)
    env["FCSP_SIM_SMS"] = str(sms)
    if kernel_us is not None:
        env["FCSP_SIM_KERNEL_US"] = str(kernel_us)
    sim_dir = base_dir / "sim"
    sim_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sim_dir.chmod(0o700)
    env["FCSP_SIM_DIR"] = str(sim_dir)
    env["FCSP_REGION_DIR"] = str(base_dir / "region")
    if preload:
        env["LD_PRELOAD"] = native.preload
    elif native.sanitizer:
        env["LD_PRELOAD"] = native.sanitizer_runtime  # unsanitized programs can still load the sanitized libs
    else:
        env.pop("LD_PRELOAD", None)
    if native.sanitizer:
        env.update(SANITIZER_OPTIONS)
        env["FCSP_LIB_DIR"] = str(native.lib_dir)  # `fcsp` (Python) here has the runtime preloaded
    env.update({k: str(v) for k, v in extra.items()})
    return env


_SIM_STATS_SCRIPT = r"""
import ctypes, os, sys
lib = ctypes.CDLL(os.path.join(sys.argv[1], "libcuda.so.1"))
u64p = ctypes.POINTER(ctypes.c_ulonglong)
lib.fcspSimStats.argtypes = [ctypes.c_int, u64p, u64p]
lib.fcspSimStats.restype = ctypes.c_int
live, peak = ctypes.c_ulonglong(0), ctypes.c_ulonglong(0)
rc = lib.fcspSimStats(int(sys.argv[2]), ctypes.byref(live), ctypes.byref(peak))
if rc != 0:
    sys.exit(f"fcspSimStats({sys.argv[2]}) returned {rc}")
print(live.value, peak.value)
"""


def sim_stats(env: dict[str, str], dev: int = 0, sim_dir: Path | str | None = None) -> tuple[int, int]:
    """(live_bytes, peak_bytes) of simulated GPU dev on the node of env ($FCSP_SIM_DIR), read without libfcsp.

    sim_dir: the simulator's libcuda.so.1 directory (the fixture passes native.sim_dir); by default the first
    LD_LIBRARY_PATH entry of env that holds a libcuda.so.1."""
    child = dict(env)
    preload = child.pop("LD_PRELOAD", "")
    # Keep a sanitizer runtime (unsanitized Python needs it first to load sanitized libraries), drop libfcsp.
    runtime = [p for p in preload.split() if "san.so" in Path(p).name]
    if runtime:
        child["LD_PRELOAD"] = " ".join(runtime)
    if sim_dir is None:
        ld_path = child.get("LD_LIBRARY_PATH", "").split(":")
        entries = [d for d in ld_path if d and (Path(d) / "libcuda.so.1").is_file()]
        if not entries:
            raise AssertionError("sim_stats: no libcuda.so.1 on env's LD_LIBRARY_PATH (use sim_env's env)")
        sim_dir = entries[0]
    done = subprocess.run(
        [sys.executable, "-c", _SIM_STATS_SCRIPT, str(sim_dir), str(dev)],
        env=child,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"sim_stats failed (exit {exit_status(done.returncode)}):\n{done.stdout}\n{done.stderr}"
        )
    live, peak = done.stdout.split()
    return int(live), int(peak)
