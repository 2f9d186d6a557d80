"""Spatial mode on the interposer's side (FCSP_SM_MODE=spatial): the job is pointed at the node's MPS pipe
directory with its share as the active thread percentage, and time slices stand aside only for a process
that NVML lists as an MPS client of the GPU. Without MPS (the simulated driver has none) the share is
still kept, by time slices, so asking for spatial mode never lifts a cap."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fcsp_core.config import PolicyEntry
from fcsp_core.region import policy_put

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


def _launch_share(native, env, count: int, client_list: bool, owner: int = 0) -> tuple[float, str]:
    """Share of the GPU that `count` 1 ms launches got; with client_list, the node's list of MPS clients
    (root-owned, as `fcsp node` writes it) names the probe while it sleeps before launching."""
    region = Path(env["FCSP_REGION_DIR"])
    region.mkdir(mode=0o755, exist_ok=True)
    p = subprocess.Popen(
        [str(native.probe), "init", "sleep", "1000", "launch", "spin", "1056", "256", str(count)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if client_list:
        start = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        listing = region / "mps-clients"
        listing.write_text(f"{p.pid} {start}\n")
        listing.chmod(0o644)
        os.chown(listing, owner, -1)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    wall = next(
        float(line.split("wall_ms=")[1].split()[0]) for line in out.splitlines() if "launch ok" in line
    )
    return count * 1.0 / wall, err


def test_without_the_nodes_mps_spatial_mode_keeps_the_share_by_time_slices(native, sim_env):
    env = sim_env(
        FCSP_SM_MODE="spatial", FCSP_SM_LIMIT="25", FCSP_TENANT="no-mps", FCSP_LOG_LEVEL="info", **SIM
    )
    share, err = _launch_share(native, env, 120, client_list=False)
    assert abs(share * 100 - 25) <= 5, f"achieved {share:.1%} of the GPU"
    assert "not (yet) a client of the node's MPS server" in err


def test_a_listed_client_of_the_nodes_mps_is_left_to_mps(native, sim_env):
    """Listed by the node daemon as a client of its MPS server: the MPS partition is the share, fcsp's time
    slices stand aside (the simulated GPU has no partitions, so the launches run at full speed)."""
    env = sim_env(FCSP_SM_MODE="spatial", FCSP_SM_LIMIT="25", FCSP_TENANT="mps", **SIM)
    share, _ = _launch_share(native, env, 120, client_list=True)
    assert share > 0.6, f"achieved {share:.1%} of the GPU: still time-sliced"


def test_a_list_the_job_could_write_is_not_believed(native, sim_env, two_uids):
    """A client list not owned by root (a job's own, in a region directory it named) is ignored."""
    env = sim_env(FCSP_SM_MODE="spatial", FCSP_SM_LIMIT="25", FCSP_TENANT="forged", **SIM)
    share, _ = _launch_share(native, env, 120, client_list=True, owner=two_uids[0].uid)
    assert abs(share * 100 - 25) <= 5, f"achieved {share:.1%} of the GPU"


def _with_policy(env: dict[str, str], tenant: str, sm_mode: str) -> None:
    """The scheduler's entry for the tenant (root's, as slurmstepd writes it): a 25% share in sm_mode."""
    region = Path(env["FCSP_REGION_DIR"])
    region.mkdir(mode=0o755, exist_ok=True)
    policy_put(PolicyEntry(tenant=tenant, uid=os.geteuid(), sm_limit_pct=25, sm_mode=sm_mode), region)


def test_a_policy_entry_in_time_mode_overrules_the_jobs_spatial_request(native, sim_env):
    """Spatial mode can give a tenant more than its time share (each MPS client gets the partition), so for a
    tenant with a policy entry only the entry picks it: a listed MPS client asking FCSP_SM_MODE=spatial on its
    own keeps its share by time slices, and is told so."""
    env = sim_env(FCSP_SM_MODE="spatial", FCSP_TENANT="pinned", FCSP_SCHEDULER="test", **SIM)
    _with_policy(env, "pinned", "time")
    share, err = _launch_share(native, env, 120, client_list=True)
    assert abs(share * 100 - 25) <= 5, f"achieved {share:.1%} of the GPU"
    assert "policy entry keeps its SM share in time slices" in err


def test_a_policy_entry_in_spatial_mode_leaves_a_listed_client_to_mps(native, sim_env):
    """The scheduler asked for spatial: the job runs as an MPS client even without FCSP_SM_MODE of its own."""
    env = sim_env(FCSP_TENANT="spatial-step", FCSP_SCHEDULER="test", **SIM)
    env.pop("FCSP_SM_MODE", None)
    _with_policy(env, "spatial-step", "spatial")
    share, _ = _launch_share(native, env, 120, client_list=True)
    assert share > 0.6, f"achieved {share:.1%} of the GPU: still time-sliced"
