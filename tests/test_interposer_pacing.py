"""Time-slice pacing: throttled launches are released on the shared 2 ms slices only while another capped
tenant has work on the GPU; a tenant alone, or beside uncapped work only, waits per launch just until its
own booking allows it (no launch waits for a slice boundary), so its steps stay smooth. Asserted on
structure (which kind of wait each throttled launch took, printed at exit with FCSP_LOG_LEVEL=debug), not
on timings."""

from __future__ import annotations

import re
import subprocess
import time

SIM = {"mem": "8G", "kernel_us": "spin=1000,default=5"}
KERNEL = ["spin", "1056", "256"]  # one 1 ms wave on the 132 simulated SMs


def _waits(stderr: str) -> tuple[int, int]:
    m = re.search(r"sm waits: sliced=(\d+) paced=(\d+)", stderr)
    assert m, f"no wait report in: {stderr!r}"
    return int(m.group(1)), int(m.group(2))


def _subject(native, sim_env) -> subprocess.CompletedProcess[str]:
    env = sim_env(FCSP_TENANT="subject", FCSP_SM_LIMIT="50", FCSP_LOG_LEVEL="debug", **SIM)
    return subprocess.run(
        [str(native.probe), "init", "launch", *KERNEL, "120"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _neighbour(native, env: dict[str, str]) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [str(native.probe), "init", "launchloop", *KERNEL, "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # its work is on the GPU (a capped neighbour's booking then runs ahead of the clock)
    return p


def test_a_lone_tenant_is_paced_per_launch(native, sim_env):
    out = _subject(native, sim_env)
    assert out.returncode == 0, out.stderr
    sliced, paced = _waits(out.stderr)
    assert sliced == 0 and paced > 0, (sliced, paced)


def test_beside_uncapped_work_a_tenant_is_paced_per_launch(native, sim_env):
    hog = _neighbour(native, sim_env(FCSP_TENANT="uncapped", **SIM))
    try:
        out = _subject(native, sim_env)
    finally:
        hog.communicate(timeout=60)
    assert out.returncode == 0, out.stderr
    sliced, paced = _waits(out.stderr)
    assert sliced == 0 and paced > 0, (sliced, paced)


def test_beside_a_capped_tenant_launches_wait_for_slices(native, sim_env):
    other = _neighbour(native, sim_env(FCSP_TENANT="capped", FCSP_SM_LIMIT="40", **SIM))
    try:
        out = _subject(native, sim_env)
    finally:
        other.communicate(timeout=60)
    assert out.returncode == 0, out.stderr
    sliced, _ = _waits(out.stderr)
    assert sliced > 0
