"""`fcsp node` as a process: one per node, owner of the region and the policy table, configured by file and
flags, stopped by signals, and killed without losing anything."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

from support.commands import fcsp_command
from support.probe import start_holder

from fcsp_core.region import Region, policy_list, read_snapshot, region_file_path

MiB = 1 << 20
GiB = 1 << 30


def _fcsp(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [fcsp_command(), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_help(sim_env):
    out = _fcsp(sim_env(preload=False), "node", "--help")
    assert out.returncode == 0, out.stderr
    flags = ("--config", "--metrics-port", "--metrics-address", "--region-dir", "--grace", "--reap-interval",
             "--dcgm-job-map", "--once")  # fmt: skip
    for flag in flags:
        assert flag in out.stdout
    assert "the node daemon" in _fcsp(sim_env(preload=False), "--help").stdout


def test_owns_the_region_directory_region_and_policy_table(sim_env, node_daemon):
    env = sim_env(preload=False)
    region_dir = Path(env["FCSP_REGION_DIR"])
    assert not region_dir.exists()
    daemon = node_daemon(env)
    mode = stat.S_IMODE(region_dir.stat().st_mode)
    users_mode = stat.S_IMODE((region_dir / "users").stat().st_mode)
    region_mode = stat.S_IMODE(region_file_path(region_dir).stat().st_mode)
    policy_mode = stat.S_IMODE((region_dir / "policy").stat().st_mode)
    lock_mode = stat.S_IMODE((region_dir / "node.lock").stat().st_mode)
    if os.geteuid() == 0:
        # users/ sticky, not listable: each uid makes its own 0600 file, nobody else's; locks are root's own
        assert (mode, users_mode, region_mode, policy_mode, lock_mode) == (0o755, 0o1733, 0o600, 0o644, 0o600)
    else:
        assert (mode, users_mode, region_mode) == (0o700, 0o700, 0o600)
    assert (region_dir / "node.lock").read_text().strip() == str(daemon.proc.pid)
    assert daemon.stop() == 0
    assert "stopped" in daemon.log()


def test_a_second_instance_refuses_and_names_the_holder(sim_env, node_daemon):
    env = sim_env(preload=False)
    first = node_daemon(env)
    out = _fcsp(env, "node", "--no-metrics")
    lock = Path(env["FCSP_REGION_DIR"]) / "node.lock"
    assert out.returncode == 1
    assert out.stderr.strip() == f"fcsp node: already running as PID {first.proc.pid} (lock {lock})"
    assert first.proc.poll() is None


def test_runs_under_fcsp_sim(sim_env):
    env = sim_env(preload=False)
    for var in ("FCSP_SIM_DIR", "FCSP_REGION_DIR"):
        env.pop(var)
    out = _fcsp(env, "sim", "--", fcsp_command(), "node", "--once")
    assert out.returncode == 0, out.stderr
    assert 'fcsp_node_up{hostname="' in out.stdout and "fcsp_build_info{" in out.stdout


def test_configuration_file_and_flags(sim_env, node_daemon, tmp_path):
    env = sim_env(preload=False)
    config = tmp_path / "node.toml"
    config.write_text(
        'reap_interval_ms = 50\ntenant_grace_seconds = 5\n[metrics]\naddress = "127.0.0.1"\n'
        '[[policy]]\ntenant = "slurm-77"\nmem_limit_bytes = "3G"\nsm_limit_pct = 40\n'
    )
    daemon = node_daemon(env, "--config", str(config), "--grace", "1")
    assert "every 50 ms" in daemon.log()
    entries = {e.tenant: e for e in policy_list(env["FCSP_REGION_DIR"])}
    assert entries["slurm-77"].mem_limit_bytes == 3 * GiB and entries["slurm-77"].sm_limit_pct == 40


def test_bad_configuration_is_one_line_exit_2(sim_env, tmp_path):
    env = sim_env(preload=False)
    bad = tmp_path / "bad.toml"
    bad.write_text("reap_interval_ms = 5\nnonsense = 1\n")
    out = _fcsp(env, "node", "--config", str(bad))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "reap_interval_ms" in lines[0] and "nonsense" in lines[0], out.stderr
    bad.write_text('[[policy]]\ntenant = "x"\nmem_limit_bytes = "lots"\n')
    out = _fcsp(env, "node", "--config", str(bad))
    assert out.returncode == 2 and "lots" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = _fcsp(env, "node", "--config", str(tmp_path / "missing.toml"))
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_sigkill_the_daemon_and_restart_loses_nothing(native, sim_env, node_daemon, sim_stats):
    """The accounting lives in the region, not in the daemon: killing it leaves tenants running and counted;
    a process that dies while no daemon runs is reaped by the next one."""
    env = sim_env(mem="8G", FCSP_TENANT="steady", FCSP_MEM_LIMIT="2G")
    node_env = sim_env(mem="8G", preload=False)
    daemon = node_daemon(node_env)
    a = start_holder(native.probe, env, "alloc", "256M")
    b = start_holder(native.probe, env, "alloc", "512M")
    storm = subprocess.Popen(
        [str(native.probe), "init", "stress", "4", "20000", "32M"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.2)
        daemon.stop(signal.SIGKILL)
        b.kill()  # dies while no daemon runs
        b.wait(timeout=30)
        out, _ = storm.communicate(timeout=120)
        assert storm.returncode == 0 and "stress ok" in out, "tenants keep running without the daemon"
        tenant = read_snapshot(env["FCSP_REGION_DIR"]).tenant("steady")
        assert tenant is not None and tenant.used_bytes == 768 * MiB, "b's bytes wait for a reaper"
        restarted = node_daemon(node_env)
        restarted.wait_log(rf"reaped pid={b.pid} tenant=steady bytes={512 * MiB}")
        assert "refused" not in restarted.log(), "the region is reused, not rebuilt"
        snap = read_snapshot(env["FCSP_REGION_DIR"])
        assert snap.tenant("steady").used_bytes == 256 * MiB == sim_stats(env)[0]
        assert [p.pid for p in snap.processes] == [a.pid]
        assert a.poll() is None
    finally:
        a.communicate(input="", timeout=60)


def test_dcgm_job_map(native, sim_env, node_daemon, tmp_path):
    jobmap = tmp_path / "jobmap"
    node_env = sim_env(gpus=2, mem="8G", preload=False)
    node_daemon(node_env, "--dcgm-job-map", str(jobmap))
    job = sim_env(gpus=2, mem="8G", FCSP_TENANT="slurm-4242.0", FCSP_MEM_LIMIT="1G")
    other = sim_env(gpus=2, mem="8G", FCSP_TENANT="notebook", FCSP_MEM_LIMIT="1G")
    holders = [
        start_holder(native.probe, job, "alloc", "64M"),
        start_holder(native.probe, other, "alloc", "64M"),
    ]
    try:
        deadline = time.monotonic() + 10
        while (
            not (jobmap / "0").exists() or (jobmap / "0").read_text() != "4242\n"
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (jobmap / "0").read_text() == "4242\n"
        with Region.open(node_env["FCSP_REGION_DIR"]) as region:
            known = {g.index for g in region.snapshot().gpus}
        if 1 in known:
            assert (jobmap / "1").read_text() == ""
    finally:
        for h in holders:
            h.communicate(input="", timeout=60)
    deadline = time.monotonic() + 10
    while (jobmap / "0").read_text() != "" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (jobmap / "0").read_text() == ""


def test_deploy_files():
    """The shipped configuration is the defaults, written out; the unit runs the daemon as required."""
    from fcsp_core.node.config import NodeConfig, load

    repo = Path(__file__).resolve().parent.parent
    assert load(repo / "deploy" / "fcsp-node.toml") == NodeConfig()
    unit = (repo / "deploy" / "systemd" / "fcsp-node.service").read_text()
    wanted = [
        "Type=simple",
        "Restart=always",
        "RuntimeDirectory=fcsp",
        "RuntimeDirectoryMode=0755",
        "RuntimeDirectoryPreserve=yes",
        "ReadWritePaths=/run/fcsp",
        "ExecStart=/usr/local/bin/fcsp node",
        "LimitNOFILE=65536",
    ]
    bounding = next(ln for ln in unit.splitlines() if ln.startswith("CapabilityBoundingSet="))
    assert "CAP_KILL" in bounding.split("=", 1)[1].split(), "the audit kills escaped processes"
    for line in wanted:
        assert line in unit, line
    assert "ProtectProc=" not in unit.replace("no ProtectProc=", "")
