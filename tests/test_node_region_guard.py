"""A region file that cannot be trusted (truncated, corrupt, of another layout version) is detected, reported
clearly, never used, and rebuilt only when no process maps it."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fcsp_core.region import read_snapshot, region_file_path
from fcsp_core.region_node import layout_version

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
FAST = "rebuild_retry_seconds = 0.2\ncheck_interval_seconds = 0.2\n"


def _region_file(env: dict[str, str]) -> Path:
    return region_file_path(env["FCSP_REGION_DIR"])


def _make_region(env, run_probe) -> Path:
    run_probe({**env, "FCSP_MEM_LIMIT": "1G"}, "init", "alloc", "1M")  # a capped job creates the region
    path = _region_file(env)
    assert path.stat().st_size > 4096
    return path


def _truncate(path: Path) -> str:
    os.truncate(path, path.stat().st_size // 2)
    return r"has size \d+, expected \d+ \(another fcsp version, truncated or corrupt\)"


def _bad_magic(path: Path) -> str:
    with path.open("r+b") as f:
        f.write(b"GARBAGE!")
    return r"has magic 0x2145474142524147, expected 0x3147455250534346 \(not an fcsp region"


def _old_version(path: Path) -> str:
    with path.open("r+b") as f:
        f.seek(8)  # header.version, after the 8-byte magic
        f.write(struct.pack("<I", 1))
    return rf"has layout version 1 \(size \d+\), this fcsp expects version {layout_version()}"


def _config(tmp_path: Path) -> str:
    config = tmp_path / "fast.toml"
    config.write_text(FAST)
    return str(config)


def _mapper(path: Path) -> subprocess.Popen[str]:
    """A process that maps the region file (as an attached job would) until its stdin closes."""
    code = (
        "import mmap, sys\n"
        "f = open(sys.argv[1], 'r+b')\n"
        "m = mmap.mmap(f.fileno(), 0)\n"
        "print('mapped', flush=True)\n"
        "sys.stdin.read()\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "mapped"
    return p


@pytest.mark.parametrize(
    "damage", [_truncate, _bad_magic, _old_version], ids=["truncated", "magic", "version"]
)
def test_a_refused_region_nobody_maps_is_rebuilt(sim_env, run_probe, node_daemon, tmp_path, damage):
    env = sim_env(mem="8G", FCSP_TENANT="after", FCSP_MEM_LIMIT="1G")
    path = _make_region(env, run_probe)
    reason = damage(path)
    refused = run_probe(env, "init", check=False)  # the library never trusts it either
    assert "refused" in refused.stderr
    daemon = node_daemon(sim_env(mem="8G", preload=False), "--config", _config(tmp_path))
    daemon.wait_log(rf"warning: region {path} refused: .*{reason}.*; no process maps it: rebuilding it")
    daemon.wait_log(rf"region {path} rebuilt \(layout version {layout_version()}\)")
    run_probe(env, "init", "alloc", "64M")
    assert read_snapshot(env["FCSP_REGION_DIR"]).exists
    assert "fcsp_node_up{" in daemon.scrape() and 'fcsp_node_up{hostname="' in daemon.scrape()


def test_a_refused_region_that_is_mapped_is_kept_until_released(sim_env, run_probe, node_daemon, tmp_path):
    env = sim_env(mem="8G")
    path = _make_region(env, run_probe)
    _old_version(path)
    inode = path.stat().st_ino
    holder = _mapper(path)
    try:
        daemon = node_daemon(sim_env(mem="8G", preload=False), "--config", _config(tmp_path), ready=False)
        daemon.wait_log(
            rf"error: region {path} refused and NOT rebuilt: .*has layout version 1.*; processes map it "
            rf"\(PID {holder.pid}\), so it is kept until they exit; retrying every 0.2 s"
        )
        time.sleep(0.6)
        assert path.stat().st_ino == inode, "a mapped region must not be replaced"
        assert daemon.proc.poll() is None
    finally:
        holder.communicate(input="", timeout=30)
    daemon.wait_log(rf"region {path} rebuilt")
    with path.open("rb") as f:
        f.seek(8)
        assert struct.unpack("<I", f.read(4))[0] == layout_version()


def test_corruption_while_in_use_stops_trust(native, sim_env, run_probe, node_daemon, tmp_path):
    """The header changes under a running daemon while a job is attached: the daemon stops using the region
    (no reaping, fcsp_node_up 0), keeps it while the job maps it, and rebuilds it once the job is gone."""
    env = sim_env(mem="8G", FCSP_TENANT="victim", FCSP_MEM_LIMIT="1G")
    daemon = node_daemon(sim_env(mem="8G", preload=False), "--config", _config(tmp_path))
    job = subprocess.Popen(
        [str(native.probe), "init", "alloc", "64M", "hold"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert job.stdout is not None
    assert "alloc ok" in job.stdout.readline() + job.stdout.readline()
    path = _region_file(env)
    try:
        _old_version(path)
        daemon.wait_log(
            r"error: region .* is corrupt: its header changed while mapped .*: the region is no longer used"
        )
        daemon.wait_log(rf"refused and NOT rebuilt: .*\(PID {job.pid}\)")
        assert f'fcsp_node_up{{hostname="{os.uname().nodename}"}} 0.0' in daemon.scrape()
    finally:
        job.communicate(input="", timeout=30)
    daemon.wait_log(rf"region {path} rebuilt")
    deadline = time.monotonic() + 10
    while " 1.0" not in [line for line in daemon.scrape().splitlines() if line.startswith("fcsp_node_up")][0]:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_slot_value_no_fcsp_process_writes_is_detected(sim_env, run_probe, node_daemon, tmp_path):
    env = sim_env(mem="8G")
    path = _make_region(env, run_probe)
    poke = tmp_path / "region_poke"
    subprocess.run(
        [os.environ.get("CC", "cc"), "-std=c11", f"-I{REPO / 'fcsp_core/native/include'}",
         str(REPO / "tests/native/region_poke.c"), "-o", str(poke)],
        check=True, timeout=120,
    )  # fmt: skip
    subprocess.run([str(poke), str(path), "proc-state", "5", "77"], check=True, timeout=60)
    daemon = node_daemon(sim_env(mem="8G", preload=False), "--config", _config(tmp_path))
    daemon.wait_log(rf"region {path} refused: region {path} is corrupt: process slot 5 has state 77")
    daemon.wait_log(rf"region {path} rebuilt")
