"""Memory caps through the real interposer on the simulated driver: every allocation family admitted, refused
and released; driver failures rolled back; what the application sees; tenants shared by many processes; live
cap changes through the policy table; exit without freeing."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fcsp_core.config import PolicyEntry
from fcsp_core.region import policy_put, read_snapshot

GiB = 1 << 30
MiB = 1 << 20

KINDS = ["mem", "pitch", "managed", "async", "pool", "vmm", "array", "array3d", "mipmap"]


def _rows(out: str, parse_probe) -> list[dict[str, str]]:
    return parse_probe(out)


def _one(rows: list[dict[str, str]], cmd: str) -> dict[str, str]:
    return next(r for r in rows if r["cmd"] == cmd)


@pytest.mark.parametrize("kind", KINDS)
def test_each_family_is_admitted_refused_and_released(sim_env, run_probe, parse_probe, sim_stats, kind):
    env = sim_env(mem="8G", FCSP_MEM_LIMIT="1G", FCSP_TENANT=f"fam-{kind}")
    out = run_probe(
        env,
        "init",
        "alloc",
        "600M",
        kind,
        "alloc",
        "600M",
        kind,
        "alloc",
        "600M",
        kind,
        "alloc",
        "600M",
        kind,
        "meminfo",
        "free",
        "all",
        "meminfo",
    )
    rows = parse_probe(out.stdout)
    allocs = [r for r in rows if r["cmd"] == "alloc"]
    assert allocs[0]["status"] == "ok", out.stdout + out.stderr
    refused = [a for a in allocs if a["status"] == "fail"]
    assert refused and all(a["err"] == "CUDA_ERROR_OUT_OF_MEMORY" for a in refused), out.stdout
    granted = sum(int(a["size"]) for a in allocs if a["status"] == "ok")
    assert granted <= GiB
    infos = [r for r in rows if r["cmd"] == "meminfo"]
    assert int(infos[0]["total_bytes"]) == GiB
    assert int(infos[0]["free_bytes"]) <= GiB - granted
    assert int(infos[1]["free_bytes"]) == GiB, "a freed allocation gives its bytes back"
    live, peak = sim_stats(env)
    assert live == 0
    assert peak <= GiB, f"the driver never held more than the cap ({peak} bytes)"
    snap = read_snapshot(env["FCSP_REGION_DIR"])
    assert snap.tenant(f"fam-{kind}") is None, "an env tenant leaves with its last process"


def test_refused_allocation_never_reaches_the_driver(sim_env, run_probe, parse_probe, sim_stats):
    env = sim_env(mem="8G", FCSP_MEM_LIMIT="256M")
    rows = parse_probe(run_probe(env, "init", "alloc", "1G", "meminfo").stdout)
    assert _one(rows, "alloc")["status"] == "fail"
    live, peak = sim_stats(env)
    assert peak == 0, "the simulated driver saw the refused allocation"


def test_driver_failure_rolls_back_the_reservation(native, sim_env, run_probe, parse_probe):
    # The cap (16G) is above what the simulated GPU has (1G): the driver refuses, fcsp must give the bytes
    # back.
    env = sim_env(mem="1G", FCSP_MEM_LIMIT="16G", FCSP_TENANT="rollback")
    proc = subprocess.Popen(
        [str(native.probe), "init", "alloc", "2G", "alloc", "512M", "hold"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        rows = parse_probe("".join(lines))
        assert [r["status"] for r in rows if r["cmd"] == "alloc"] == ["fail", "ok"]
        tenant = read_snapshot(env["FCSP_REGION_DIR"]).tenant("rollback")
        assert tenant is not None and tenant.used_bytes == 512 * MiB
    finally:
        proc.communicate(timeout=60)


def test_memory_queries_show_the_cap(sim_env, run_probe, parse_probe):
    env = sim_env(mem="8G", FCSP_MEM_LIMIT="2G")
    rows = parse_probe(run_probe(env, "init", "totalmem", "meminfo", "alloc", "1536M", "meminfo").stdout)
    assert int(_one(rows, "totalmem")["total_bytes"]) == 2 * GiB
    infos = [r for r in rows if r["cmd"] == "meminfo"]
    assert (int(infos[0]["free_bytes"]), int(infos[0]["total_bytes"])) == (2 * GiB, 2 * GiB)
    assert int(infos[1]["free_bytes"]) == 512 * MiB


def test_percent_cap_is_relative_to_the_gpu(sim_env, run_probe, parse_probe):
    env = sim_env(mem="8G", FCSP_MEM_LIMIT="25%")
    rows = parse_probe(run_probe(env, "init", "meminfo").stdout)
    assert int(_one(rows, "meminfo")["total_bytes"]) == 2 * GiB


def test_per_gpu_caps(sim_env, run_probe, parse_probe):
    env = sim_env(gpus=2, mem="8G", FCSP_MEM_LIMIT="1G", FCSP_MEM_LIMIT_1="3G")
    rows0 = parse_probe(run_probe(env, "init", "0", "meminfo").stdout)
    rows1 = parse_probe(run_probe(env, "init", "1", "meminfo").stdout)
    assert int(_one(rows0, "meminfo")["total_bytes"]) == GiB
    assert int(_one(rows1, "meminfo")["total_bytes"]) == 3 * GiB


def test_free_shows_physical_free_when_lower(native, sim_env, run_probe, parse_probe):
    # Another, uncapped process holds most of the GPU: free must not promise memory the GPU lacks.
    env = sim_env(mem="4G")
    hog = subprocess.Popen(
        [str(native.probe), "init", "alloc", "3G", "hold"],
        env={**env, "LD_PRELOAD": ""},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hog.stdout is not None
        hog.stdout.readline(), hog.stdout.readline()
        capped = sim_env(mem="4G", FCSP_MEM_LIMIT="2G")
        rows = parse_probe(run_probe(capped, "init", "meminfo").stdout)
        info = _one(rows, "meminfo")
        assert int(info["total_bytes"]) == 2 * GiB
        assert int(info["free_bytes"]) == GiB
    finally:
        hog.communicate(timeout=60)


def test_eight_processes_share_one_tenant_cap(native, sim_env, run_probe, parse_probe, sim_stats):
    """HAMi-core lost 7 of 8 processes here; all eight must run and together stay under the cap."""
    env = sim_env(mem="80G", FCSP_TENANT="eight", FCSP_MEM_LIMIT="8G")
    # All eight hold 1000 MiB, then (at ~3 s, while every one still holds) each asks 1000 MiB more.
    cmds = ["init", "meminfo", "alloc", "1000M", "sleep", "3000", "alloc", "1000M", "sleep", "1500"]
    procs = [
        subprocess.Popen(
            [str(native.probe), *cmds], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            rows = parse_probe(p.stdout.readline() + p.stdout.readline() + p.stdout.readline())
            assert _one(rows, "init")["status"] == "ok"
            assert int(_one(rows, "meminfo")["total_bytes"]) == 8 * GiB
            assert _one(rows, "alloc")["status"] == "ok"
        tenant = read_snapshot(env["FCSP_REGION_DIR"]).tenant("eight")
        assert tenant is not None and tenant.nprocs == 8 and tenant.used_bytes == 8 * 1000 * MiB
    finally:
        results = [p.communicate(timeout=60) for p in procs]
    second = [[r for r in parse_probe(out) if r["cmd"] == "alloc"][-1] for out, _ in results]
    granted = sum(1 for r in second if r["status"] == "ok")
    assert granted == 0, "8000 MiB held: a second 1000 MiB for anyone would pass the 8 GiB cap"
    live, peak = sim_stats(env)
    assert peak <= 8 * GiB and live == 0


def test_exit_without_free_releases_everything(sim_env, run_probe, parse_probe, sim_stats):
    env = sim_env(mem="8G", FCSP_TENANT="leaky", FCSP_MEM_LIMIT="4G")
    run_probe(env, "init", "alloc", "1G", "alloc", "1G", "vmm", "alloc", "512M", "async")
    assert read_snapshot(env["FCSP_REGION_DIR"]).tenant("leaky") is None
    assert sim_stats(env)[0] == 0


def test_live_policy_change_and_usage_above_the_cap(native, sim_env, parse_probe, run_probe):
    """A scheduler lowers a running tenant's cap below its usage: queries report free 0 (never an error),
    further
    allocations are refused, and the change applies within the heartbeat period."""
    env = sim_env(mem="8G", FCSP_TENANT="live", FCSP_SCHEDULER="test")
    region = env["FCSP_REGION_DIR"]
    os.makedirs(region, mode=0o700, exist_ok=True)
    policy_put(PolicyEntry(tenant="live", mem_limit_bytes=2 * GiB), region)
    p = subprocess.Popen(
        [str(native.probe), "init", "alloc", "1536M", "hold", "meminfo", "alloc", "64M"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    first = parse_probe(p.stdout.readline() + p.stdout.readline())
    assert _one(first, "alloc")["status"] == "ok"
    policy_put(PolicyEntry(tenant="live", mem_limit_bytes=1 * GiB), region)
    time.sleep(0.5)
    out, err = p.communicate(input="", timeout=60)
    rows = parse_probe(out)
    info = _one(rows, "meminfo")
    assert int(info["total_bytes"]) == GiB and int(info["free_bytes"]) == 0, out + err
    assert _one(rows, "alloc")["status"] == "fail"


def test_env_cannot_raise_a_scheduler_cap(sim_env, run_probe, parse_probe):
    env = sim_env(mem="8G", FCSP_TENANT="pinned", FCSP_SCHEDULER="test", FCSP_MEM_LIMIT="6G")
    os.makedirs(env["FCSP_REGION_DIR"], mode=0o700, exist_ok=True)
    policy_put(PolicyEntry(tenant="pinned", mem_limit_bytes=GiB), env["FCSP_REGION_DIR"])
    rows = parse_probe(run_probe(env, "init", "meminfo", "alloc", "2G").stdout)
    assert int(_one(rows, "meminfo")["total_bytes"]) == GiB
    assert _one(rows, "alloc")["status"] == "fail"


def test_nvml_reports_the_cap(sim_env):
    pytest.importorskip("pynvml")
    env = sim_env(mem="8G", FCSP_MEM_LIMIT="3G")
    code = (
        "import pynvml\n"
        "pynvml.nvmlInit()\n"
        "h = pynvml.nvmlDeviceGetHandleByIndex(0)\n"
        "m = pynvml.nvmlDeviceGetMemoryInfo(h)\n"
        "m2 = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)\n"
        "print(m.total, m.free, m.used, m2.total, m2.free)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    total, free, used, total2, free2 = map(int, out.stdout.split())
    assert total == total2 == 3 * GiB and free == free2 == 3 * GiB and used == 0
