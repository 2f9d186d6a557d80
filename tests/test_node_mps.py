"""`fcsp node --mps`: the MPS manager (fcsp_core/node/mps.py) against a fake nvidia-cuda-mps-control that
keeps its state in the pipe directory: it starts, watches and restarts the control daemon, gives each
server its uid's SM share, fences the pipe directory to the uid whose server runs, and counts the clients
a server tore down after a fault (lines as the H200's server wrote them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fcsp_core.node.command import _overrides, register
from fcsp_core.node.config import MpsConfig, load
from fcsp_core.node.mps import MpsManager, policy_shares, process_start_time

FAKE = r'''#!PYTHON
"""A stand-in for nvidia-cuda-mps-control: -d starts a "daemon" (a sleeping process); commands on stdin."""
import os, signal, subprocess, sys
from pathlib import Path
pipe = Path(os.environ["CUDA_MPS_PIPE_DIRECTORY"])
pidfile, servers, log = pipe / "fake_daemon.pid", pipe / "fake_servers", pipe / "fake.log"
def alive():
    try:
        stat = Path("/proc", pidfile.read_text().strip(), "stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a killed daemon nobody reaped is gone
if sys.argv[1:] == ["-d"]:
    if alive():
        sys.exit(1)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    pidfile.write_text(str(p.pid))
    with log.open("a") as f:
        f.write("start\n")
    sys.exit(0)
if not alive():
    print("Cannot find MPS control daemon process")
    sys.exit(1)
for line in sys.stdin:
    line = line.strip()
    with log.open("a") as f:
        f.write(line + "\n")
    if line == "get_server_list":
        print(servers.read_text().strip() if servers.exists() else "")
    elif line.startswith("get_client_list "):
        clients = pipe / ("fake_clients_" + line.split()[1])
        print(clients.read_text().strip() if clients.exists() else "")
    elif line == "quit":
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
'''

FAULT_LOG = """\
[2026-12-01 21:29:05.543 Server   878] Client {PID: 1040, Context: 1} encountered a fatal GPU error.
[2026-12-01 21:29:05.543 Server   878] Server is handling a fatal GPU error.
[2026-12-01 21:29:05.543 Server   878] Client {PID: 1040, Context ID: 1} on device 0 to be torn down
[2026-12-01 21:29:05.543 Server   878] Client {PID: 1065, Context ID: 1} on device 0 to be torn down
[2026-12-01 21:29:05.543 Server   878] All clients belonging to error trigging process 1040 will be torn down
"""


@pytest.fixture
def fake_mps(tmp_path: Path):
    control = tmp_path / "fake-mps-control"
    control.write_text(FAKE.replace("PYTHON", sys.executable))
    control.chmod(0o755)
    region = tmp_path / "region"
    region.mkdir()
    shares: dict[int, int] = {}
    mgr = MpsManager(MpsConfig(enabled=True, control=str(control)), region, lambda: dict(shares))
    yield mgr, shares
    mgr.ask("quit")


def _daemon_pid(mgr: MpsManager) -> int:
    return int((mgr.pipe_dir / "fake_daemon.pid").read_text())


def _log(mgr: MpsManager) -> list[str]:
    return (mgr.pipe_dir / "fake.log").read_text().splitlines()


def test_starts_the_daemon_and_restarts_it_when_it_dies(fake_mps):
    mgr, _ = fake_mps
    mgr.start()
    assert mgr.state.up
    assert _log(mgr)[:2] == ["start", "set_default_active_thread_percentage 100"]
    first = _daemon_pid(mgr)
    os.kill(first, signal.SIGKILL)
    time.sleep(0.2)
    mgr.poll()
    assert mgr.state.up and mgr.state.restarts == 1
    assert _daemon_pid(mgr) != first
    assert _log(mgr).count("start") == 2


def test_a_running_daemon_is_adopted(fake_mps):
    mgr, _ = fake_mps
    mgr.start()
    again = MpsManager(mgr.cfg, mgr.pipe_dir.parent, lambda: {})
    again.start()
    assert _log(mgr).count("start") == 1 and again.state.up


def test_each_server_gets_its_uids_share_and_the_pipe_dir_is_fenced(fake_mps):
    mgr, shares = fake_mps
    shares[os.getuid()] = 40
    mgr.start()
    assert "set_default_active_thread_percentage 40" in _log(mgr)  # a fresh server never starts above a share
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (mgr.pipe_dir / "fake_servers").write_text(f"{server.pid}\n")
        mgr.poll()
        assert f"set_active_thread_percentage {server.pid} 40" in _log(mgr)
        st = mgr.pipe_dir.stat()
        assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o700
        assert (mgr.region_dir / "mps-clients").read_text() == ""
        client = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            (mgr.pipe_dir / f"fake_clients_{server.pid}").write_text(f"{client.pid}\n")
            mgr.poll()
            listing = mgr.region_dir / "mps-clients"
            assert listing.read_text() == f"{client.pid} {process_start_time(client.pid)}\n"
            assert listing.stat().st_mode & 0o777 == 0o644
        finally:
            client.kill()
            client.wait()
        shares[os.getuid()] = 60  # a policy change reaches the running server
        mgr.poll()
        assert f"set_active_thread_percentage {server.pid} 60" in _log(mgr)
        text = b"".join(
            f"{m.name} {[s.value for s in m.samples]}\n".encode() for m in mgr.families("h")
        ).decode()
        assert "fcsp_mps_server_active_thread_ratio [0.6" in text
    finally:
        server.kill()
        server.wait()
    (mgr.pipe_dir / "fake_servers").write_text("")
    mgr.poll()
    assert mgr.pipe_dir.stat().st_mode & 0o777 == 0o755  # no server: every uid may start one


def test_clients_torn_down_after_a_fault_are_counted(fake_mps):
    mgr, _ = fake_mps
    mgr.start()
    mgr.log_dir.joinpath("server.log").write_text(FAULT_LOG)
    mgr.poll()
    assert mgr.state.client_faults == 2
    mgr.poll()  # lines are counted once
    assert mgr.state.client_faults == 2
    faults = {m.name: m.samples[0].value for m in mgr.families("h") if m.samples}
    assert faults["fcsp_mps_client_faults"] == 2


def test_policy_shares_take_each_uids_largest_spatial_share():
    class E:
        def __init__(self, uid: int | None, pct: int, sm_mode: str = "spatial") -> None:
            self.uid, self.sm_limit_pct, self.sm_mode = uid, pct, sm_mode

    entries = [E(1000, 30), E(1000, 50), E(None, 90), E(1001, 0), E(1002, 25)]
    entries += [E(1002, 75, "time"), E(1003, 60, "time")]  # time-slice entries never widen a partition
    assert policy_shares(entries) == {1000: 50, 1002: 25}


def test_off_by_default_and_the_flag_turns_it_on():
    assert load(None).mps.enabled is False
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    register(sub, argparse.HelpFormatter)
    args = parser.parse_args(["node", "--mps"])
    assert load(None, _overrides(args)).mps.enabled is True


def test_a_missing_control_binary_leaves_spatial_mode_off(tmp_path):
    mgr = MpsManager(MpsConfig(enabled=True, control=str(tmp_path / "nope")), tmp_path, lambda: {})
    mgr.start()
    mgr.poll()
    assert not mgr.state.up


def test_fcsp_node_runs_the_manager(sim_env, tmp_path):
    """`fcsp node --mps --once` with [mps] control pointing at the fake: the daemon starts it, gives it the
    policy's share for new servers, and exports the MPS series."""
    control = tmp_path / "fake-mps-control"
    control.write_text(FAKE.replace("PYTHON", sys.executable))
    control.chmod(0o755)
    config = tmp_path / "node.toml"
    config.write_text(
        f'[mps]\ncontrol = "{control}"\n'
        f'[[policy]]\ntenant = "decode"\nuid = {os.getuid()}\nsm_limit_pct = 75\nsm_mode = "spatial"\n'
    )
    env = sim_env(preload=False)
    fcsp = Path(sys.executable).parent / "fcsp"
    out = subprocess.run(
        [str(fcsp), "node", "--config", str(config), "--mps", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    pipe = Path(env["FCSP_REGION_DIR"]) / "mps"
    try:
        assert out.returncode == 0, out.stderr
        assert 'fcsp_mps_up{hostname="' in out.stdout and "fcsp_mps_client_faults_total{" in out.stdout
        log = (pipe / "fake.log").read_text().splitlines()
        assert log[:2] == ["start", "set_default_active_thread_percentage 75"]
    finally:
        subprocess.run(
            [str(control)], input="quit\n", env=dict(env, CUDA_MPS_PIPE_DIRECTORY=str(pipe)), text=True
        )
