"""Stream capture under fcsp: the simulated driver enforces the real driver's capture rules (capture modes, a
thread's own mode, "potentially unsafe" calls from any thread invalidating a global capture), checked call by
call against the table fcsp-capture-probe printed on an H200; and fcsp never invalidates a capture the
application has open, whichever thread launches capped work beside it and in whichever mode it captures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

H200_TABLE = (
    Path(__file__).resolve().parent.parent / "fcsp_core" / "native" / "sim" / "capture_matrix_h200.txt"
)
SIM = {"mem": "8G", "kernel_us": "default=100"}


def _capture_probe(native) -> Path:
    probe = native.lib_dir / "fcsp-capture-probe"
    if not probe.is_file():
        pytest.skip(f"{probe} is not built")
    return probe


def _run(native, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_capture_probe(native)), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_simulated_capture_rules_are_the_h200s(native, sim_env):
    """Every call x capture mode x calling thread (the capturing one or another, each with its own mode left
    GLOBAL or exchanged to RELAXED): the call's result, the capture's next launch and cuStreamEndCapture are
    what the H200 (driver 580) answered."""
    out = _run(native, sim_env(preload=False, **SIM), "matrix")
    assert out.returncode == 0, out.stderr
    got = sorted(out.stdout.splitlines())
    want = sorted(H200_TABLE.read_text().splitlines())
    assert got == want, "\n".join(sorted(set(got) ^ set(want)))


@pytest.mark.parametrize("mode", ["global", "thread_local", "relaxed"])
def test_capture_storm_beside_a_capped_launcher(native, sim_env, mode):
    """One thread launches capped kernels on stream 1 (timed by fcsp's sampler) while the main thread
    captures 300 graphs on stream 2: none is invalidated. Before fcsp kept its unsafe calls (cuStreamQuery on
    the launch path, cuEventQuery in the sampler thread) out of open captures, global mode lost some."""
    env = sim_env(FCSP_TENANT="storm", FCSP_SM_LIMIT="12", **SIM)
    out = _run(native, env, "storm", mode, "300")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"storm mode={mode} graphs=300 failed=0" in out.stdout


def test_many_capped_tenants_capture_at_once(native, sim_env):
    """Four processes of four tenants at 12% each capture 100 graphs in global mode beside their own launcher
    thread, all at once: no capture fails."""
    probe = _capture_probe(native)
    procs = [
        subprocess.Popen(
            [str(probe), "storm", "global", "100"],
            env=sim_env(FCSP_TENANT=f"t{i}", FCSP_SM_LIMIT="12", **SIM),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, out + err
        assert "failed=0" in out


def test_capture_into_an_existing_graph(sim_env, run_probe, parse_probe):
    """cuStreamBeginCaptureToGraph (CUDA 12.3) captures into the caller's graph, and cuStreamEndCapture hands
    that same graph back, ready to instantiate and launch."""
    rows = parse_probe(
        run_probe(sim_env(preload=False, **SIM), "init", "graphto", "noop", "1", "32", "8", "2").stdout
    )
    got = next(r for r in rows if r["cmd"] == "graphto")
    assert got["status"] == "ok", got
    assert got["kernels"] == "8" and got["same_graph"] == "1", got


@pytest.mark.parametrize("begin", ["graph", "graphto"])
def test_launches_into_a_capture_are_not_throttled(sim_env, run_probe, parse_probe, begin):
    """At a 10% cap, 50 captured one-wave kernels (1 ms each) would book 500 ms of the tenant's time if they
    were charged when captured; they are charged when the graph runs. Whichever call opened the capture
    (cuStreamBeginCapture, or cuStreamBeginCaptureToGraph, which fcsp did not hook before), capturing waits
    for nothing."""
    env = sim_env(FCSP_TENANT="cap", FCSP_SM_LIMIT="10", mem="8G", kernel_us="spin=1000,default=5")
    kernel = ("spin", "1056", "256")  # one wave of the 132 simulated SMs
    rows = parse_probe(run_probe(env, "init", "launch", *kernel, "1", begin, *kernel, "50", "0").stdout)
    got = next(r for r in rows if r["cmd"] == begin)
    assert got["status"] == "ok", got
    assert got["kernels"] == "50"
    assert float(got["capture_ms"]) < 200, (
        f"the capture waited {got['capture_ms']} ms: captured launches were throttled"
    )
