"""Spatial mode on the interposer's side (FCSP_SM_MODE=spatial): the job is pointed at the node's MPS pipe
directory with its share as the active thread percentage, and time slices stand aside only for a process
that NVML lists as an MPS client of the GPU. Without MPS (the simulated driver has none) the share is
still kept, by time slices, so asking for spatial mode never lifts a cap."""

from __future__ import annotations

import subprocess

SIM = {"mem": "8G", "kernel_us": "spin=1000,default=5"}


def test_spatial_mode_points_the_driver_at_the_nodes_mps(native, sim_env, tmp_path):
    env = sim_env(FCSP_SM_MODE="spatial", FCSP_SM_LIMIT="30", FCSP_TENANT="spatial")
    env.pop("CUDA_MPS_PIPE_DIRECTORY", None)
    env.pop("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", None)
    out = subprocess.run(["/usr/bin/env"], env=env, capture_output=True, text=True, timeout=30)
    seen = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert seen["CUDA_MPS_PIPE_DIRECTORY"] == f"{env['FCSP_REGION_DIR']}/mps"
    assert seen["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "30"


def test_the_jobs_own_mps_settings_are_kept(native, sim_env):
    env = sim_env(FCSP_SM_MODE="spatial", FCSP_SM_LIMIT="30", CUDA_MPS_ACTIVE_THREAD_PERCENTAGE="20")
    out = subprocess.run(["/usr/bin/env"], env=env, capture_output=True, text=True, timeout=30)
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=20" in out.stdout.splitlines()


def test_without_mps_spatial_mode_keeps_the_share_by_time_slices(native, sim_env, run_probe, parse_probe):
    count = 120
    env = sim_env(FCSP_SM_MODE="spatial", FCSP_SM_LIMIT="25", FCSP_TENANT="no-mps", **SIM)
    out = run_probe(env, "init", "launch", "spin", "1056", "256", str(count))
    wall = [float(r["wall_ms"]) for r in parse_probe(out.stdout) if r["cmd"] == "launch"][0]
    share = count * 1.0 / wall
    assert abs(share * 100 - 25) <= 5, f"achieved {share:.1%} of the GPU"
    assert "not an MPS client" in out.stderr
