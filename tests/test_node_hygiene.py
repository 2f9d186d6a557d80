"""`fcsp node` hygiene (issue 11, P6): the metrics endpoint cannot be exhausted into hurting reaping, the
dcgm job map never follows a symlink as root, and bad configuration is one line before anything starts."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

MiB = 1 << 20


def _fcsp(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    fcsp = Path(sys.executable).parent / "fcsp"
    return subprocess.run(
        [str(fcsp), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _holder(native, env, size: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [str(native.probe), "init", "alloc", size, "hold"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert p.stdout is not None
    for _ in range(2):
        line = p.stdout.readline()
        assert " ok " in line, line + p.stderr.read() if p.poll() is not None else line
    return p


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# ---- the metrics endpoint ------------------------------------------------------------------------------


def test_idle_connections_cannot_exhaust_the_daemon_or_delay_reaping(native, sim_env, node_daemon):
    """1100 idle connections (the attack of issue 11 item 5), with the daemon's descriptors limited to 1024:
    it holds at most max_connections of them, a SIGKILLed tenant process is still reaped at once, and the
    endpoint answers again once the idle ones are gone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))  # what the daemon inherits
    try:
        daemon = node_daemon(sim_env(preload=False))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the test itself needs 1100+
    host, port = daemon.url.split("//")[1].split("/")[0].rsplit(":", 1)
    before = _fds(daemon.proc.pid)
    conns: list[socket.socket] = []
    try:
        for _ in range(1100):
            s = socket.socket()
            s.settimeout(5)
            s.connect((host, int(port)))
            conns.append(s)
        time.sleep(1.0)  # let the daemon accept (and close) what it will
        held = _fds(daemon.proc.pid)
        assert held <= before + 64 + 8, f"the daemon holds {held} descriptors (was {before})"
        victim = _holder(native, sim_env(FCSP_TENANT="train", FCSP_MEM_LIMIT="1G"), "512M")
        victim.kill()
        killed = time.monotonic()
        victim.wait(timeout=10)
        daemon.wait_log(rf"reaped pid={victim.pid} tenant=train bytes={512 * MiB}$", timeout=5)
        took = time.monotonic() - killed
        print(f"reaped {took * 1000:.0f} ms after SIGKILL with 1100 idle connections open")
        assert took < 2.0, took
        assert daemon.proc.poll() is None
    finally:
        for s in conns:
            s.close()
    time.sleep(0.5)
    assert "fcsp_node_up" in daemon.scrape(), "the endpoint serves again"
    assert "warning: metrics: 64 connections open" in daemon.log()


def test_an_idle_connection_is_closed_after_the_idle_timeout(sim_env, node_daemon, tmp_path):
    config = tmp_path / "node.toml"
    config.write_text("[metrics]\nidle_timeout_seconds = 0.5\n")
    daemon = node_daemon(sim_env(preload=False), "--config", str(config))
    host, port = daemon.url.split("//")[1].split("/")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        started = time.monotonic()
        assert s.recv(1) == b"", "the server closes a silent connection"
        took = time.monotonic() - started
    assert 0.3 < took < 5, took


# ---- the dcgm job map ------------------------------------------------------------------------------------


def test_job_map_replaces_a_planted_symlink_never_its_target(native, sim_env, node_daemon, tmp_path):
    """A directory others can write (1777, like /tmp): symlinks planted as the GPU's file and as the old
    temporary file's name. The daemon (root) writes the job list without touching either target."""
    jobmap = tmp_path / "jobmap"
    jobmap.mkdir(mode=0o1777)
    jobmap.chmod(0o1777)
    target = tmp_path / "precious"
    target.write_text("root's file\n")
    target.chmod(0o600)
    (jobmap / "0").symlink_to(target)
    (jobmap / ".0.fcsp-tmp").symlink_to(target)
    node_env = sim_env(preload=False)
    daemon = node_daemon(node_env, "--dcgm-job-map", str(jobmap))
    holder = _holder(native, sim_env(FCSP_TENANT="slurm-4242.0", FCSP_MEM_LIMIT="1G"), "64M")
    try:
        deadline = time.monotonic() + 10
        while (jobmap / "0").is_symlink() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not (jobmap / "0").is_symlink() and (jobmap / "0").read_text() == "4242\n"
    finally:
        holder.communicate(input="", timeout=60)
    assert target.read_text() == "root's file\n" and (target.stat().st_mode & 0o777) == 0o600
    assert "writable by others" in daemon.log()


def test_job_map_behind_a_symlink_is_refused(sim_env, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    out = _fcsp(
        sim_env(preload=False), "node", "--no-metrics", "--dcgm-job-map", str(tmp_path / "link" / "map")
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    last = out.stderr.strip().splitlines()[-1]  # after the start-up info line
    assert last.startswith("fcsp node: cannot start: dcgm job map") and "symlink" in last, last
    assert not (elsewhere / "map").exists()


# ---- bad configuration: one line, exit 2, before anything starts ---------------------------------------

BIG = str(2**70)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"[[policy]]\ntenant = \"a\"\nmem_limit_bytes = {BIG}\n", "policy.0.mem_limit_bytes"),
        (f"[metrics]\nport = {BIG}\n", "metrics.port"),
        (f"reap_interval_ms = {BIG}\n", "reap_interval_ms"),
        (f"[audit]\ncontext_allowance_bytes = {BIG}\n", "audit.context_allowance_bytes"),
        ("[audit]\ninterval_ms = 1000\n", "audit.interval_ms"),
        ("[audit]\naction = \"maim\"\n", "audit.action"),
        ("tenant_grace_seconds = nan\n", "tenant_grace_seconds"),
        ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ("x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n", "nested too deeply"),
        ("[metrics]\nport = \"\\udcff\"\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_bad_configuration_is_one_line(sim_env, tmp_path, text, says):
    path = tmp_path / "node.toml"
    path.write_text(text, errors="surrogateescape")
    out = _fcsp(sim_env(preload=False), "node", "--config", str(path), "--no-metrics", "--once")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert says in lines[0] and lines[0].startswith("fcsp node: "), lines[0]


@pytest.mark.parametrize("kind", ["dev_zero", "huge", "directory", "fifo", "not_utf8"])
def test_a_config_path_that_is_not_a_small_text_file_is_one_line(sim_env, tmp_path, kind):
    path = tmp_path / "node.toml"
    if kind == "dev_zero":
        path = Path("/dev/zero")
    elif kind == "huge":
        path.write_bytes(b"# padding\n" * 200_000)
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b'log_level = "\xff"\n')
    out = _fcsp(sim_env(preload=False), "node", "--config", str(path), "--no-metrics", "--once", timeout=30)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr and str(path) in lines[0], out.stderr


def test_flags_past_their_range_are_one_line(sim_env):
    for args in (["--metrics-port", BIG], ["--reap-interval", BIG], ["--grace", "1e400"]):
        out = _fcsp(sim_env(preload=False), "node", "--no-metrics", "--once", *args)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
        assert "Traceback" not in out.stderr
