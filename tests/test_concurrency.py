"""Many processes x many threads allocating and freeing under one tenant's cap: the simulator's own
count of live memory (what the driver really handed out) never exceeds the cap at any instant, and every
counter returns to zero when they exit. Without the interposer's compare-and-swap admission the peak passes
the cap within a few thousand allocations (checked by test_cap_is_exceeded_without_fcsp)."""

from __future__ import annotations

import subprocess

from fcsp_core.region import read_snapshot

GiB = 1 << 30


def _storm(native, env, procs: int, threads: int, iters: int, maxsize: str) -> list[str]:
    ps = [
        subprocess.Popen(
            [str(native.probe), "init", "sleep", "300", "stress", str(threads), str(iters), maxsize],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    outs = []
    for p in ps:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


def test_storm_never_exceeds_the_cap_and_returns_to_zero(native, sim_env, parse_probe, sim_stats):
    procs = 64 if not native.sanitizer else 8
    env = sim_env(mem="16G", FCSP_TENANT="storm", FCSP_MEM_LIMIT="1G")
    outs = _storm(native, env, procs=procs, threads=4, iters=2000, maxsize="48M")
    refused = allocs = 0
    for out in outs:
        row = next(r for r in parse_probe(out) if r["cmd"] == "stress")
        assert row["status"] == "ok", out
        refused += int(row["refused"])
        allocs += int(row["allocs"])
    assert allocs > 0 and refused > 0, "the storm must press against the cap"
    live, peak = sim_stats(env)
    assert peak <= GiB, f"the driver held {peak} bytes at once under a {GiB}-byte cap"
    assert live == 0
    snap = read_snapshot(env["FCSP_REGION_DIR"])
    assert snap.tenant("storm") is None and not snap.processes


def test_cap_is_exceeded_without_fcsp(native, sim_env, parse_probe, sim_stats):
    """The control: the same storm without the interposer drives the simulated GPU past 1 GiB."""
    env = sim_env(mem="16G", preload=False)
    _storm(native, env, procs=8, threads=4, iters=2000, maxsize="48M")
    live, peak = sim_stats(env)
    assert peak > GiB and live == 0


def test_capture_storm_beside_the_sampler_and_a_capped_launcher(native, sim_env):
    """Three threads of fcsp's at once (the application's launcher, fcsp's sampler thread, the capturing
    thread counting open captures and standing launches aside): no capture is lost, and under TSan no race."""
    probe = native.lib_dir / "fcsp-capture-probe"
    env = sim_env(FCSP_TENANT="capture-race", FCSP_SM_LIMIT="12", kernel_us="default=100")
    out = subprocess.run(
        [str(probe), "storm", "global", "200"], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "failed=0" in out.stdout
