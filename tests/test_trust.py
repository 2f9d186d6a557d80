"""The trust boundary between uids (README: threat model), attacked by a second real user.

Every uid accounts in its own file, <region dir>/users/<uid>.region (0600, in a sticky root-owned directory
that users cannot list); node-wide files are root's (the policy table 0644 read-only, the locks 0600). So a
user cannot open, write or lock anything that counts another uid's memory, nor join another uid's tenant: a
tenant name is per uid. Processes of one uid are not a boundary (they can ptrace each other): a user can forge
their own counters, which affects only themselves and is the driver-truth audit's business. Every test here is
an attack that worked on the shared 0666 region of layout 2.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from fcsp_core import region_node
from fcsp_core.config import PolicyEntry
from fcsp_core.node.instance_lock import NodeLock
from fcsp_core.node.pidwatch import UNREADABLE, proc_start_time
from fcsp_core.region import FcspIOError, Region, policy_put, policy_remove, read_snapshot, region_file_path

MiB = 1 << 20
SYSTEM_PYTHON = "/usr/bin/python3"  # what another uid can run (the test's own Python may sit under /root)


@dataclass
class Node:
    """A node region (root's, as `fcsp node` prepares it) and a simulated GPU every uid shares."""

    region_dir: Path
    sim_dir: Path
    lib: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LD_LIBRARY_PATH": str(self.lib / "sim"),
            "LD_PRELOAD": str(self.lib / "libfcsp.so"),
            "FCSP_SIM_DIR": str(self.sim_dir),
            "FCSP_SIM_GPUS": "1",
            "FCSP_SIM_MEM": "8G",
            "FCSP_SIM_SMS": "132",
            "FCSP_REGION_DIR": str(self.region_dir),
        }
        env.update(extra)
        return env

    def probe(self, user, env: dict[str, str], *cmds: str) -> subprocess.Popen[str]:
        kwargs = user.popen_kwargs() if user is not None else {}
        return subprocess.Popen(
            [str(self.lib / "fcsp-probe"), *cmds],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )

    def run(self, user, env: dict[str, str], *cmds: str) -> tuple[list[str], str]:
        p = self.probe(user, env, *cmds)
        out, err = p.communicate(input="", timeout=120)
        assert p.returncode >= 0, f"the probe died of signal {-p.returncode}: {err}"
        return out.splitlines(), err

    def hold(self, user, env: dict[str, str], size: str) -> subprocess.Popen[str]:
        """A probe of user that allocates size and holds it until its stdin closes."""
        p = self.probe(user, env, "init", "alloc", size, "hold")
        assert p.stdout is not None
        lines = p.stdout.readline() + p.stdout.readline()
        assert "alloc ok" in lines, lines + (p.stderr.read() if p.poll() is not None and p.stderr else "")
        return p


def _release(*procs: subprocess.Popen[str]) -> None:
    for p in procs:
        if p.poll() is None:
            p.communicate(input="", timeout=60)


def _fcsp_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("fcsp[")]


def _allocs(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines if line.startswith("alloc ")]


@pytest.fixture
def node(native, public_tmp: Path, public_lib_dir: Path) -> Node:
    if native.sanitizer:
        pytest.skip("the other uid's processes run the public copy of the unsanitized libraries")
    region_dir = public_tmp / "region"
    region_node.prepare_dir(region_dir)
    region_node.policy_init(region_dir)
    sim_dir = public_tmp / "sim"
    sim_dir.mkdir()
    sim_dir.chmod(0o777)  # one simulated GPU for every uid
    return Node(region_dir=region_dir, sim_dir=sim_dir, lib=public_lib_dir)


ATTACKER = r"""
import fcntl, json, os, sys
region_dir, victim_uid = sys.argv[1], int(sys.argv[2])
result = {}
def attempt(name, path, flags):
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        result[name] = f"open: {exc.strerror}"
        return None
    result[name] = "opened"
    return fd
for name, path in [("victim_region", f"{region_dir}/users/{victim_uid}.region"),
                   ("node_lock", f"{region_dir}/node.lock"), ("policy_lock", f"{region_dir}/policy.lock")]:
    for mode, flags in (("rw", os.O_RDWR), ("ro", os.O_RDONLY)):
        fd = attempt(f"{name}_{mode}", path, flags)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            result[f"{name}_{mode}"] = "LOCKED"
try:
    result["list_users"] = sorted(os.listdir(f"{region_dir}/users"))
except OSError as exc:
    result["list_users"] = f"listdir: {exc.strerror}"
fd = os.open(f"{region_dir}/policy", os.O_RDONLY)  # everyone may read the policy table, and flock it
fcntl.flock(fd, fcntl.LOCK_EX)
result["policy_ro"] = "LOCKED"
print(json.dumps(result), flush=True)
sys.stdin.read()  # keep every lock until told
"""


def test_another_uid_can_neither_open_nor_lock_what_counts_a_users_memory(node: Node, two_uids) -> None:
    a, b = two_uids
    node_lock = NodeLock(node.region_dir)
    node_lock.acquire()  # as the daemon holds it
    victim = node.hold(a, node.env(FCSP_TENANT="train", FCSP_MEM_LIMIT="1G"), "256M")
    policy_put(PolicyEntry(tenant="ready", uid=a.uid, mem_limit_bytes=1 << 30), node.region_dir)
    path = region_file_path(node.region_dir, a.uid)
    st = path.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (a.uid, 0o600)
    users = (node.region_dir / "users").stat()
    assert (users.st_uid, stat.S_IMODE(users.st_mode)) == (0, 0o1733)
    attacker = b.popen(
        [SYSTEM_PYTHON, "-c", ATTACKER, str(node.region_dir), str(a.uid)],
        env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert attacker.stdout is not None
        seen = json.loads(attacker.stdout.readline() or "{}")
        assert seen, attacker.stderr.read() if attacker.stderr else ""
        for name in ("victim_region", "node_lock", "policy_lock"):
            for mode in ("rw", "ro"):
                assert seen[f"{name}_{mode}"] == "open: Permission denied", seen
        assert seen["list_users"] == "listdir: Permission denied"
        assert seen["policy_ro"] == "LOCKED"  # the table is world-readable: its lock must not matter
        # While the attacker holds every lock it could get, the victim's uid starts and allocates under its
        # tenant's cap (layout 2: stalled 2 s on the region's lock, then ran uncapped), and root's policy
        # writes go through (layout 2: flock on the table itself, blocked for as long as the user liked).
        lines, err = node.run(a, node.env(FCSP_TENANT="train", FCSP_MEM_LIMIT="1G"), "init", "alloc", "512M",
                              "alloc", "512M")  # fmt: skip
        assert _allocs(lines) == ["ok", "fail"], err  # 256M + 512M held under 1G: the tenant's cap
        assert not _fcsp_lines(err), err
        writer = threading.Thread(
            target=policy_put,
            args=(PolicyEntry(tenant="later", uid=a.uid, mem_limit_bytes=1 << 30), node.region_dir),
            daemon=True,
        )
        writer.start()
        writer.join(timeout=30)
        assert not writer.is_alive(), "a user's flock on the policy table stalled the manager"
    finally:
        _release(attacker, victim)
        node_lock.release()


def test_a_tenant_name_is_per_uid_another_uid_cannot_join_it(node: Node, two_uids) -> None:
    a, b = two_uids
    victim = node.hold(a, node.env(FCSP_TENANT="shared", FCSP_MEM_LIMIT="1G"), "768M")
    joiner = node.hold(b, node.env(FCSP_TENANT="shared", FCSP_MEM_LIMIT="4G"), "2G")  # b's own tenant and cap
    try:
        lines, err = node.run(a, node.env(FCSP_TENANT="shared", FCSP_MEM_LIMIT="1G"), "init", "alloc", "512M")
        assert _allocs(lines) == ["fail"], "the victim's counter and cap are its own"
        snap = read_snapshot(node.region_dir)
        shared = {t.uid: t for t in snap.tenants if t.name == "shared"}
        assert set(shared) == {a.uid, b.uid}
        assert shared[a.uid].used_bytes == 768 * MiB and shared[a.uid].gpus[0].limit_bytes == 1 << 30
        assert shared[b.uid].used_bytes == 2048 * MiB
        assert {p.uid for p in snap.processes if p.pid == joiner.pid} == {b.uid}
    finally:
        _release(victim, joiner)


def test_another_uids_made_up_gpus_cannot_hide_the_real_ones(node: Node, two_uids, region_poke) -> None:
    """A user may write anything in their own file, GPU entries too: the daemon's view keeps the node's real
    GPUs (vouched for from NVML) and every uid's usage on them."""
    a, b = two_uids
    victim = node.hold(a, node.env(FCSP_TENANT="real", FCSP_MEM_LIMIT="1G"), "256M")
    try:
        real = read_snapshot(node.region_dir).gpus[0].uuid
        policy_put(PolicyEntry(tenant="made-up", uid=b.uid), node.region_dir)  # root makes b's file, empty
        region_poke(str(region_file_path(node.region_dir, b.uid)), "fake-gpus")
        with Region.open(node.region_dir, create=True) as reg:
            reg.trust_gpu(real)
            snap = reg.snapshot()
        gpus = {g.uuid: g for g in snap.gpus}
        assert len(gpus) == 16 and real in gpus
        victim_tenant = snap.tenant("real", a.uid)
        assert victim_tenant is not None and victim_tenant.gpus[gpus[real].index].used_bytes == 256 * MiB
        assert gpus[real].used_bytes == 256 * MiB
    finally:
        _release(victim)


CORRUPT_OWN = r"""
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0)
m[0:8] = bytes(8)  # its own file's magic, kept mapped: the daemon cannot rebuild it while this runs
m[8:12] = (99).to_bytes(4, "little")
print("corrupted", flush=True)
sys.stdin.read()
"""


def test_a_user_corrupting_their_own_file_affects_only_themselves(
    node: Node, two_uids, node_daemon, tmp_path
):
    """Layout 2: zeroing the shared region's magic (kept mapped) took the whole node down (fcsp_node_up 0,
    every tenant's metrics gone, scheduler jobs refused). Now it takes out that uid's own file, nothing
    else."""
    a, b = two_uids
    config = tmp_path / "node.toml"
    config.write_text("check_interval_seconds = 0.2\nrebuild_retry_seconds = 0.2\n")
    daemon = node_daemon(node.env(LD_PRELOAD=""), "--config", str(config))
    victim = node.hold(a, node.env(FCSP_TENANT="victim", FCSP_MEM_LIMIT="1G"), "256M")
    own = node.hold(b, node.env(FCSP_TENANT="vandal", FCSP_MEM_LIMIT="1G"), "64M")
    b_file = region_file_path(node.region_dir, b.uid)
    deadline = time.monotonic() + 15
    while 'tenant="vandal"' not in daemon.scrape():  # the daemon maps b's file (it rescans every second)
        assert time.monotonic() < deadline, "the daemon never showed b's tenant"
        time.sleep(0.1)
    vandal = b.popen([SYSTEM_PYTHON, "-c", CORRUPT_OWN, str(b_file)], env={"PATH": "/usr/bin:/bin"},
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert vandal.stdout is not None and vandal.stdout.readline().strip() == "corrupted"
        daemon.wait_log(
            rf"region {b_file} is corrupt: its header changed while mapped.*not used until it is rebuilt"
        )
        daemon.wait_log(rf"region {b_file} refused and NOT rebuilt")
        metrics = daemon.scrape()
        assert re.search(r"^fcsp_node_up\{[^}]*\} 1\.0$", metrics, flags=re.M), metrics
        assert 'tenant="victim"' in metrics and 'tenant="vandal"' not in metrics
        lines, err = node.run(a, node.env(FCSP_TENANT="victim", FCSP_MEM_LIMIT="1G"), "init", "alloc", "512M",
                              "alloc", "512M")  # fmt: skip
        assert _allocs(lines) == ["ok", "fail"], err
    finally:
        _release(vandal, own, victim)
    daemon.wait_log(rf"region {b_file} of uid {b.uid} refused: .*no process maps it: removed")


def test_the_daemon_reaps_and_removes_idle_tenants_in_every_uids_file(
    node: Node, two_uids, node_daemon
) -> None:
    a, b = two_uids
    daemon = node_daemon(node.env(LD_PRELOAD=""), "--grace", "0.5", metrics=False)
    policy_put(PolicyEntry(tenant="slurm-77.0", uid=a.uid, mem_limit_bytes=1 << 30), node.region_dir)
    lines, err = node.run(
        a, node.env(FCSP_TENANT="slurm-77.0", FCSP_SCHEDULER="slurm"), "init", "alloc", "64M"
    )
    assert _allocs(lines) == ["ok"], err
    victim = node.hold(b, node.env(FCSP_TENANT="killed", FCSP_MEM_LIMIT="1G"), "256M")
    deadline = time.monotonic() + 15
    while not any(p.pid == victim.pid for p in read_snapshot(node.region_dir).processes):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.kill()  # b's process dies without cleaning up: the daemon reaps it in b's file
    daemon.wait_log(rf"reaped pid={victim.pid} tenant=killed bytes={256 * MiB}")
    policy_remove(
        "slurm-77.0", node.region_dir
    )  # the scheduler lets go: a's idle tenant goes after the grace
    daemon.wait_log(r"removed tenant slurm-77.0: no process")
    snap = read_snapshot(node.region_dir)
    assert snap.tenant("slurm-77.0") is None and snap.tenant("killed") is None


def test_the_node_follows_a_users_file_that_its_owner_replaced(node: Node, two_uids) -> None:
    """A uid may remove its own file (sticky directory) and its next process makes another: the daemon's view
    follows the new one (what the uid left in the old one is its own business)."""
    a, b = two_uids
    first = node.hold(b, node.env(FCSP_TENANT="first", FCSP_MEM_LIMIT="1G"), "64M")
    try:
        with Region.open(node.region_dir, create=True) as reg:
            assert reg.snapshot().tenant("first", b.uid) is not None
            path = region_file_path(node.region_dir, b.uid)
            done = b.run(
                [SYSTEM_PYTHON, "-c", f"import os; os.unlink({str(path)!r})"], env={"PATH": "/usr/bin"}
            )
            assert done.returncode == 0, done.stderr
            second = node.hold(b, node.env(FCSP_TENANT="second", FCSP_MEM_LIMIT="1G"), "64M")
            try:
                reg.rescan()
                snap = reg.snapshot()
                assert snap.tenant("second", b.uid) is not None and snap.tenant("first", b.uid) is None
            finally:
                _release(second)
    finally:
        _release(first)


def test_one_cap_per_tenant_a_joiner_cannot_raise_it(native, sim_env, run_probe, parse_probe) -> None:
    """Same uid, same tenant: the first process's cap is the tenant's; a joiner asking for more gets the
    tenant's (it may ask for less, for itself)."""
    env = sim_env(mem="8G", FCSP_TENANT="one", FCSP_MEM_LIMIT="1G")
    holder = subprocess.Popen(
        [str(native.probe), "init", "alloc", "768M", "hold"], env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and "init ok" in holder.stdout.readline()
        assert "alloc ok" in holder.stdout.readline()
        bigger = run_probe({**env, "FCSP_MEM_LIMIT": "4G"}, "init", "alloc", "512M", "alloc", "256M")
        assert [r["status"] for r in parse_probe(bigger.stdout) if r["cmd"] == "alloc"] == ["fail", "ok"]
        smaller = run_probe({**env, "FCSP_MEM_LIMIT": "128M"}, "init", "alloc", "200M")
        assert [r["status"] for r in parse_probe(smaller.stdout) if r["cmd"] == "alloc"] == ["fail"]
        tenant = read_snapshot(env["FCSP_REGION_DIR"]).tenant("one")
        assert tenant is not None and tenant.gpus[0].limit_bytes == 1 << 30
    finally:
        _release(holder)


SQUAT = r"""
import os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
os.fchmod(fd, 0o666)
os.ftruncate(fd, 4096)
print("squatted", flush=True)
"""


def test_a_squatted_file_is_refused_naming_the_squatter_and_removed_by_the_node(node: Node, two_uids) -> None:
    a, b = two_uids
    victim_file = region_file_path(node.region_dir, a.uid)
    done = b.run([SYSTEM_PYTHON, "-c", SQUAT, str(victim_file)], env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    lines, err = node.run(a, node.env(FCSP_MEM_LIMIT="1G"), "init", "alloc", "2G")
    assert _allocs(lines) == ["fail"], "fail closed: it asked for a cap"
    refusal = _fcsp_lines(err)
    assert len(refusal) == 1 and f"owned by uid {b.uid}" in refusal[0] and "fail-closed" in refusal[0], err
    with Region.open(node.region_dir, create=True) as reg:  # the daemon's handle: it rescans every second
        reg.rescan()
    assert not victim_file.exists()
    lines, err = node.run(a, node.env(FCSP_MEM_LIMIT="1G"), "init", "alloc", "768M", "alloc", "512M")
    assert _allocs(lines) == ["ok", "fail"], err
    assert victim_file.stat().st_uid == a.uid


SQUAT_DIR = r"""
import os, sys
os.makedirs(os.path.join(sys.argv[1], "deep", "er"))
os.symlink("/etc", os.path.join(sys.argv[1], "deep", "etc"))  # root must delete it without following this
open(os.path.join(sys.argv[1], "deep", "er", "f"), "w").close()
"""


def test_a_squatting_directory_is_moved_aside_and_deleted_without_following_links(
    node: Node, two_uids, node_daemon
) -> None:
    a, b = two_uids
    victim_file = region_file_path(node.region_dir, a.uid)
    done = b.run([SYSTEM_PYTHON, "-c", SQUAT_DIR, str(victim_file)], env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    lines, err = node.run(a, node.env(FCSP_MEM_LIMIT="1G"), "init", "alloc", "64M")
    assert _allocs(lines) == ["fail"]
    assert f"a directory owned by uid {b.uid}" in err and "fail-closed" in err, err
    daemon = node_daemon(node.env(LD_PRELOAD=""), metrics=False)
    daemon.wait_log(rf"removed {victim_file}: a directory owned by uid {b.uid}")
    deadline = time.monotonic() + 15
    while victim_file.exists() or any(p.name.startswith(".squat-") for p in node.region_dir.iterdir()):
        assert time.monotonic() < deadline, "the squat was not deleted"
        time.sleep(0.1)
    assert Path("/etc/passwd").exists()
    lines, err = node.run(a, node.env(FCSP_MEM_LIMIT="1G"), "init", "alloc", "64M")
    assert _allocs(lines) == ["ok"], err


def test_squatting_a_future_slurm_step_does_not_deny_the_real_step(node: Node, two_uids) -> None:
    a, b = two_uids
    step = "slurm-4242.0"
    # b takes the step's name before the scheduler registers it, and squats a's accounting file too
    done = b.run([SYSTEM_PYTHON, "-c", SQUAT, str(region_file_path(node.region_dir, a.uid))],
                 env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    squatter = node.hold(b, node.env(FCSP_TENANT=step, FCSP_MEM_LIMIT="1G"), "512M")
    try:
        policy_put(PolicyEntry(tenant=step, uid=a.uid, mem_limit_bytes=2 << 30), node.region_dir)
        assert region_file_path(node.region_dir, a.uid).stat().st_uid == a.uid  # root replaced the squat
        lines, err = node.run(a, node.env(FCSP_TENANT=step, FCSP_SCHEDULER="slurm"), "init", "alloc", "1536M",
                              "alloc", "1G")  # fmt: skip
        assert _allocs(lines) == ["ok", "fail"], err  # the step runs, under its policy (2G)
        time.sleep(0.5)  # the squatter's heartbeat (100 ms) has seen the entry: not its to take
        theirs = read_snapshot(node.region_dir).tenant(step, b.uid)
        assert theirs is not None and theirs.gpus[0].limit_bytes == 1 << 30, "the squatter got the step's cap"
        lines, err = node.run(b, node.env(FCSP_TENANT=step, FCSP_MEM_LIMIT="1G"), "init", "alloc", "64M")
        assert _allocs(lines) == ["fail"] and "belong to uid" in err, err  # refused, never the step's cap
    finally:
        _release(squatter)


def test_exhausted_slots_refuse_a_capped_process_never_run_it_uncapped(sim_env, run_probe, parse_probe,
                                                                       region_poke) -> None:  # fmt: skip
    """The 257th tenant of a uid: a capped process is refused with one line (fail-closed), never run
    uncapped; one that asked for no cap (accounting only) may still run."""
    env = sim_env(mem="8G", FCSP_MEM_LIMIT="1G")
    run_probe(env, "init", "alloc", "1M")  # creates the uid's file
    path = str(region_file_path(env["FCSP_REGION_DIR"]))
    region_poke(path, "fill-tenants")
    out = run_probe(env, "init", "alloc", "4G", "alloc", "64M")
    lines = _fcsp_lines(out.stderr)
    assert len(lines) == 1 and "all 256 tenant slots are in use" in lines[0] and "fail-closed" in lines[0]
    assert all(r["status"] == "fail" for r in parse_probe(out.stdout) if r["cmd"] == "alloc")
    uncapped = {k: v for k, v in env.items() if k != "FCSP_MEM_LIMIT"} | {"FCSP_TENANT": "x"}
    accounting_only = run_probe(uncapped, "init", "alloc", "64M")
    assert [r["status"] for r in parse_probe(accounting_only.stdout) if r["cmd"] == "alloc"] == ["ok"]


def test_exhausted_process_slots_refuse_a_capped_process(
    native, sim_env, run_probe, parse_probe, region_poke
) -> None:
    env = sim_env(mem="8G", FCSP_TENANT="many", FCSP_MEM_LIMIT="1G")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        keeper = subprocess.Popen(
            [str(native.probe), "init", "alloc", "1M", "hold"], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert keeper.stdout is not None and "init ok" in keeper.stdout.readline()
        start = proc_start_time(sleeper.pid)
        region_poke(str(region_file_path(env["FCSP_REGION_DIR"])), "fill-procs", str(sleeper.pid), str(start))
        out = run_probe(env, "init", "alloc", "4G")
        lines = _fcsp_lines(out.stderr)
        assert len(lines) == 1 and "all 1024 process slots are in use" in lines[0]
        assert "fail-closed" in lines[0]
        assert [r["status"] for r in parse_probe(out.stdout) if r["cmd"] == "alloc"] == ["fail"]
        _release(keeper)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_device_without_a_place_in_the_file_is_refused_not_uncapped(
    sim_env, run_probe, parse_probe, region_poke
) -> None:
    """A capped process whose GPU cannot be given an entry in its uid's file (all 16 taken) is refused there
    with one line, never run uncapped on it."""
    env = sim_env(mem="8G", FCSP_MEM_LIMIT="1G")
    Region.open(env["FCSP_REGION_DIR"], create=True).close()  # the file, with no GPU yet
    region_poke(str(region_file_path(env["FCSP_REGION_DIR"])), "fake-gpus")
    out = run_probe(env, "init", "alloc", "64M", "alloc", "2G")
    assert [r["status"] for r in parse_probe(out.stdout) if r["cmd"] == "alloc"] == ["fail", "fail"]
    lines = _fcsp_lines(out.stderr)
    assert len(lines) == 1 and "cannot identify CUDA device 0" in lines[0] and "are refused" in lines[0]


REAP_WITHOUT_FDS = r"""
import os, resource, sys
from fcsp_core.region import Region
from fcsp_core.region_node import Reaper
region = Region.open(sys.argv[1])
reaper = Reaper(region)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass  # out of descriptors, as a daemon under 1100 idle metrics connections
events = reaper.reap(0)
for fd in fds:
    os.close(fd)
print(len(events), [e.pid for e in events])
"""


def test_a_reaper_out_of_descriptors_reaps_no_live_process(native, sim_env) -> None:
    env = sim_env(mem="8G", FCSP_TENANT="alive", FCSP_MEM_LIMIT="1G")
    holder = subprocess.Popen(
        [str(native.probe), "init", "alloc", "512M", "hold"], env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and "init ok" in holder.stdout.readline()
        done = subprocess.run(
            [sys.executable, "-c", REAP_WITHOUT_FDS, env["FCSP_REGION_DIR"]], capture_output=True, text=True,
            timeout=60, cwd="/", preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[0] == "0", f"a live process was reaped: {done.stdout}"
        assert read_snapshot(env["FCSP_REGION_DIR"]).tenant("alive").used_bytes == 512 * MiB
    finally:
        _release(holder)


def test_an_unreadable_proc_entry_is_not_an_exit(tmp_path: Path) -> None:
    """The daemon's pidfd watcher: only a missing entry means gone; one it cannot read (EMFILE, EACCES) is
    unknown, and the slot stays watched (the reap itself is decided in C, by the kernel's word)."""
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").mkdir()  # open() fails, and not with ENOENT
    assert proc_start_time(42, proc=str(tmp_path)) == UNREADABLE
    assert proc_start_time(43, proc=str(tmp_path)) is None


HIDEPID_REAPER = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
handle = ctypes.c_void_p()
err = ctypes.create_string_buffer(256)
rc = lib.fcsp_region_open(sys.argv[2].encode(), 0, ctypes.byref(handle), err, 256)
assert rc == 0, err.value
events = ctypes.create_string_buffer(1 << 16)
print(lib.fcsp_region_reap(handle, ctypes.c_uint64(0), events, 16), flush=True)
"""


def test_hidepid_makes_no_live_process_look_dead(node: Node, two_uids, region_poke) -> None:
    """With /proc mounted hidepid=2, a user's reaper cannot read another uid's /proc entries: a slot naming
    such a (live) process must stay (the kernel still has it: kill(pid, 0) says EPERM, not ESRCH)."""
    a, b = two_uids
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a mount namespace here")
    other = node.hold(a, node.env(FCSP_TENANT="other", FCSP_MEM_LIMIT="1G"), "64M")
    mine = node.hold(b, node.env(FCSP_TENANT="mine", FCSP_MEM_LIMIT="1G"), "64M")
    try:
        # b's own file now holds a slot naming a's live process (a user may write anything in their own file)
        b_file = str(region_file_path(node.region_dir, b.uid))
        region_poke(b_file, "fill-procs", str(other.pid), str(proc_start_time(other.pid)))
        script = (
            "mount -t proc -o hidepid=2 proc /proc && exec setpriv --reuid {u} --regid {g} --clear-groups "
            "{py} -c '{code}' {lib} {dir}"
        ).format(u=b.uid, g=b.gid, py=SYSTEM_PYTHON, code=HIDEPID_REAPER.replace("'", '"'),
                 lib=node.lib / "libfcsp.so", dir=node.region_dir)  # fmt: skip
        done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "0", f"reaped a process it could not see: {done.stdout} {done.stderr}"
        snap = read_snapshot(node.region_dir)
        assert sum(1 for p in snap.processes if p.uid == b.uid and p.pid == other.pid) > 1000
    finally:
        _release(other, mine)


def test_a_full_filesystem_is_one_line_never_sigbus(tmp_path: Path, sim_env, run_probe) -> None:
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(full)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here")
    try:
        env = sim_env(mem="8G", FCSP_MEM_LIMIT="1G", FCSP_REGION_DIR=str(full))
        out = run_probe(env, "init", "alloc", "64M", check=False)
        assert out.returncode >= 0 and out.returncode != -signal.SIGBUS, out.stderr
        lines = _fcsp_lines(out.stderr)
        assert len(lines) == 1 and "No space left on device" in lines[0], out.stderr
        assert "fail-closed" in lines[0], out.stderr
        with pytest.raises(FcspIOError, match="No space left on device"):
            Region.open(full, create=True)  # the daemon's own create path: an error, not SIGBUS
        assert not list((full / "users").iterdir()), "a half-made region file was left behind"
    finally:
        subprocess.run(["umount", str(full)], check=False)
