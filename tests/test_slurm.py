"""The SPANK plugin in a real one-node Slurm (Debian's 22.05 slurmctld/slurmd/munge) whose GPUs are the
simulated driver's: caps from --fcsp-mem/--fcsp-sm reach tasks through srun, sbatch and salloc, bad values are
refused at submit, shards become fenced caps, cancelled jobs leave nothing accounted.

Needs root (daemons, device files) and Debian's packages: installed here with apt-get when missing (as .ci/run
does as root); skipped with the reason otherwise. Every daemon is stopped by PID at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fcsp_core.paths import lib_dir

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "libslurm-dev")
GIB = 1 << 30
SIM_MEM = "8G"
PLUGIN_MSG = "fcsp: --fcsp"

pytestmark = pytest.mark.slow


def fcsp_command() -> str:
    beside = Path(sys.executable).parent / "fcsp"
    found = str(beside) if beside.exists() else shutil.which("fcsp")
    if not found:
        pytest.fail("the fcsp command is not installed: pip install '.[test]'")
    return found


def parse_probe(stdout: str) -> list[dict[str, str]]:
    """`alloc ok kind=mem size=N` -> {"cmd": "alloc", "status": "ok", "kind": "mem", "size": "N"}."""
    rows = []
    for line in stdout.splitlines():
        words = line.split()
        if not words or not words[0].isalpha():
            continue
        row = {"cmd": words[0]}
        for word in words[1:]:
            if "=" in word:
                key, value = word.split("=", 1)
                row[key] = value
            elif "status" not in row:
                row["status"] = word
        rows.append(row)
    return rows


def _missing_packages() -> list[str]:
    missing = []
    for pkg in PACKAGES:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, timeout=30, check=False
        )
        if "install ok installed" not in done.stdout:
            missing.append(pkg)
    return missing


def ensure_slurm() -> None:
    """Install Debian's Slurm packages if missing, or skip with the reason."""
    if os.geteuid() != 0:
        pytest.skip("a real Slurm needs root (daemons, device files)")
    if not shutil.which("dpkg-query") or not shutil.which("apt-get"):
        pytest.skip("no dpkg/apt-get: cannot install Slurm")
    missing = _missing_packages()
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    env.pop("LD_PRELOAD", None)
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot install {' '.join(missing)}: {' '.join(cmd)}: {done.stderr[-2000:]}")


def plugin_path(native: Any, tmp: Path) -> Path:
    """The installed fcsp_spank.so, else one built here from the repository (needs <slurm/spank.h>)."""
    installed = native.lib_dir / "fcsp_spank.so"
    if installed.is_file():
        return installed
    build = tmp / "spank-build"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    for cmd in (
        ["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(build), "--target", "fcsp_spank", "-j2"],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
        if done.returncode != 0:
            pytest.fail(
                f"building the SPANK plugin: {' '.join(cmd)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
    return build / "spank" / "fcsp_spank.so"


@dataclass
class Slurm:
    base: Path
    env: dict[str, str]  # for clients (srun, sbatch, ...) and the jobs they start
    region: Path
    native: Any
    procs: dict[str, int] = field(default_factory=dict)

    def run(self, *cmd: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {done.returncode}\n--- stdout ---\n{done.stdout}\n"
                f"--- stderr ---\n{done.stderr}\n--- slurmd log ---\n{self.log('slurmd')[-4000:]}"
            )
        return done

    def log(self, name: str) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def status(self) -> dict:
        done = subprocess.run(
            [fcsp_command(), "status", "--json", "--dir", str(self.region)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(done.stdout)

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run("squeue", "-h", "-o", "%i").stdout.strip()
            if not out:
                return
            time.sleep(0.2)
        raise AssertionError(f"jobs still queued: {out}")


def _wait_for(what: str, check: object, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    text = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
    raise AssertionError(f"{what} not ready within {timeout} s; log {log}:\n{text}")


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture(scope="module")
def slurm(native: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slurm]:
    ensure_slurm()
    if native.sanitizer:
        pytest.skip("the Slurm tests run against the installed, unsanitized build")
    base = tmp_path_factory.mktemp("slurm")
    base.chmod(0o755)
    plugin = plugin_path(native, base)
    host = socket.gethostname().split(".")[0]
    dev = base / "dev"
    dev.mkdir()
    for i in range(2):
        os.mknod(dev / f"nvidia{i}", 0o666 | 0o020000, os.makedev(195, i))
    region = base / "region"
    region.mkdir(mode=0o755)
    sim_state = base / "sim"
    sim_state.mkdir(mode=0o700)
    for d in ("state", "spool"):
        (base / d).mkdir()
    munge_sock = base / "munge.socket"
    (base / "slurm.conf").write_text(
        f"""ClusterName=fcsptest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket={munge_sock}
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd.log
SlurmdDebug=info
PlugStackConfig={base}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu,shard
KillWait=2
NodeName={host} NodeAddr=127.0.0.1 CPUs=16 RealMemory=8000 Gres=gpu:2,shard:16 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=10 State=UP OverSubscribe=FORCE:4
"""
    )
    (base / "gres.conf").write_text(
        f"Name=gpu File={dev}/nvidia[0-1]\n"
        f"Name=shard Count=8 File={dev}/nvidia0\n"
        f"Name=shard Count=8 File={dev}/nvidia1\n"
    )
    line = (
        f"required {plugin} lib={native.libfcsp} region_dir={region} shards_per_gpu=8 fcsp={fcsp_command()}"
    )
    if plugin == native.lib_dir / "fcsp_spank.so":  # the installed plugin: take the line `fcsp slurm` prints
        line = subprocess.run(
            [fcsp_command(), "slurm", "plugstack", "--region-dir", str(region), "--shards-per-gpu", "8"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()  # fmt: skip
    (base / "plugstack.conf").write_text(line + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FCSP_", "SLURM_")) and k != "LD_PRELOAD"}
    env.update(
        SLURM_CONF=str(base / "slurm.conf"),
        LD_LIBRARY_PATH=str(native.sim_dir),
        FCSP_SIM_GPUS="2",
        FCSP_SIM_MEM=SIM_MEM,
        FCSP_SIM_DIR=str(sim_state),
        FCSP_REGION_DIR=str(region),
    )
    cluster = Slurm(base=base, env=env, region=region, native=native)
    try:
        munge = subprocess.Popen(
            ["munged", "-F", "--force", f"--socket={munge_sock}", f"--pid-file={base}/munged.pid",
             f"--log-file={base}/munged.log", f"--seed-file={base}/munged.seed"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cluster.procs["munged"] = munge.pid
        _wait_for("munged", munge_sock.exists, 20, base / "munged.log")
        for daemon in ("slurmctld", "slurmd"):
            proc = subprocess.Popen(
                [daemon, "-D", "-f", str(base / "slurm.conf")],
                env=env, stdin=subprocess.DEVNULL, stdout=(base / f"{daemon}.out").open("wb"),
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            cluster.procs[daemon] = proc.pid
            if daemon == "slurmctld":
                _wait_for(
                    "slurmctld", lambda: cluster.run("sinfo", "-h", timeout=10).returncode == 0, 30,
                    base / "slurmctld.log",
                )  # fmt: skip

        def node_idle() -> bool:
            out = cluster.run("sinfo", "-h", "-N", "-o", "%T", timeout=10).stdout
            return "idle" in out

        _wait_for("the node", node_idle, 60, base / "slurmd.log")
        yield cluster
    finally:
        for name in ("slurmd", "slurmctld", "munged"):
            pid = cluster.procs.get(name)
            if pid:
                _stop(pid)
        lock_pid = _pidfile(region / "node.lock")  # the node daemon the plugin started
        if lock_pid:
            _stop(lock_pid)


# ----------------------------------------------------------------------------------------------------


def _probe_rows(stdout: str, cmd: str) -> list[dict[str, str]]:
    return [r for r in parse_probe(stdout) if r["cmd"] == cmd]


def _assert_capped(stdout: str, cap: int) -> None:
    init = _probe_rows(stdout, "init")
    assert init and all(int(r["total_bytes"]) == cap for r in init), stdout
    ok = _probe_rows(stdout, "alloc")
    assert ok[0]["status"] == "ok", stdout
    assert ok[1]["status"] == "fail" and ok[1]["err"] == "CUDA_ERROR_OUT_OF_MEMORY", stdout


def _assert_nothing_accounted(cluster: Slurm) -> None:
    deadline = time.monotonic() + 30
    while True:
        st = cluster.status()
        tenants = [t for t in st.get("tenants", []) if t["name"].startswith("slurm-")]
        used = sum(g.get("used_bytes", 0) for g in st.get("gpus", []))
        if not tenants and used == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left accounted: {json.dumps(st, indent=1)[:4000]}")
        time.sleep(0.3)


def test_srun_caps(slurm: Slurm) -> None:
    done = slurm.run(
        "srun", "--gres=gpu:1", "--fcsp-mem=1G", "--fcsp-sm=40", str(slurm.native.probe),
        "init", "alloc", "512M", "alloc", "768M", check=True,
    )  # fmt: skip
    _assert_capped(done.stdout, GIB)
    _assert_nothing_accounted(slurm)


def test_sbatch_caps(slurm: Slurm) -> None:
    out = slurm.base / "sbatch.out"
    done = slurm.run(
        "sbatch", "--wait", "--gres=gpu:1", "--fcsp-mem=1G", f"--output={out}",
        f"--wrap={slurm.native.probe} init alloc 512M alloc 768M", timeout=90, check=True,
    )  # fmt: skip
    assert done.returncode == 0
    _assert_capped(out.read_text(), GIB)


def test_salloc_caps(slurm: Slurm) -> None:
    done = slurm.run(
        "salloc", "--gres=gpu:1", "--fcsp-mem=1G", "--fcsp-sm=40", "srun", str(slurm.native.probe),
        "init", "alloc", "512M", "alloc", "768M", timeout=90, check=True,
    )  # fmt: skip
    _assert_capped(done.stdout, GIB)


@pytest.mark.parametrize(
    "opt", ["--fcsp-sm=150", "--fcsp-sm=abc", "--fcsp-mem=-3G", "--fcsp-mem=0", "--fcsp-mem=101%"]
)
@pytest.mark.parametrize("tool", ["srun", "sbatch", "salloc"])
def test_bad_values_refused_at_submit(slurm: Slurm, tool: str, opt: str) -> None:
    slurm.wait_idle()  # jobs of earlier tests may still be completing
    cmd = [tool, opt, "--gres=gpu:1", "true"] if tool != "sbatch" else [tool, opt, "--wrap=true"]
    done = slurm.run(*cmd, timeout=30)
    assert done.returncode != 0, done
    assert PLUGIN_MSG in done.stderr and "is not a valid" in done.stderr, done.stderr
    assert not slurm.run("squeue", "-h").stdout.strip(), "a job was queued"


def test_help_lists_options(slurm: Slurm) -> None:
    for tool in ("srun", "sbatch", "salloc"):
        out = slurm.run(tool, "--help").stdout
        assert "--fcsp-mem=SIZE" in out and "--fcsp-sm=PCT" in out and "--fcsp-off" in out, (tool, out)


def test_two_jobs_on_one_gpu_keep_their_caps(slurm: Slurm) -> None:
    # No gres: both steps see the same GPU 0 (CUDA_VISIBLE_DEVICES unset), each under its own cap.
    probe = str(slurm.native.probe)
    jobs = [
        subprocess.Popen(
            ["srun", f"--fcsp-mem={mem}", probe, "init", "alloc", "256M", "sleep", "1500", "meminfo"],
            env=slurm.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for mem in ("1G", "2G")
    ]
    outs = [j.communicate(timeout=90) for j in jobs]
    for (out, err), cap in zip(outs, (GIB, 2 * GIB), strict=True):
        assert _probe_rows(out, "init")[0]["total_bytes"] == str(cap), (out, err)
        assert _probe_rows(out, "meminfo")[0]["total_bytes"] == str(cap), (out, err)


def test_four_tasks_share_one_cap(slurm: Slurm) -> None:
    done = slurm.run(
        "srun", "-n4", "--gres=gpu:1", "--fcsp-mem=1G", str(slurm.native.probe),
        "init", "alloc", "200M", "sleep", "2000", "alloc", "200M", "sleep", "2000", timeout=90, check=True,
    )  # fmt: skip
    allocs = _probe_rows(done.stdout, "alloc")
    assert len(allocs) == 8, done.stdout
    ok = sum(r["status"] == "ok" for r in allocs)
    # 1 GiB shared by four tasks: five 200 MiB allocations fit, the other three are refused
    assert ok == 5, done.stdout


def test_shards_become_caps(slurm: Slurm) -> None:
    done = slurm.run("srun", "--gres=shard:2", str(slurm.native.probe), "init", timeout=60, check=True)
    assert _probe_rows(done.stdout, "init")[0]["total_bytes"] == str(2 * GIB), done.stdout  # 2/8 of 8 GiB
    explicit = slurm.run(
        "srun", "--gres=shard:2", "--fcsp-mem=1G", str(slurm.native.probe), "init", timeout=60, check=True
    )
    assert _probe_rows(explicit.stdout, "init")[0]["total_bytes"] == str(GIB), explicit.stdout


def test_scancel_leaves_nothing_accounted(slurm: Slurm) -> None:
    job = slurm.run(
        "sbatch", "--parsable", "--gres=gpu:1", "--fcsp-mem=1G", f"--output={slurm.base}/cancel.out",
        f"--wrap={slurm.native.probe} init alloc 512M sleep 60000", check=True,
    ).stdout.strip().split(";")[0]  # fmt: skip
    out = slurm.base / "cancel.out"
    deadline = time.monotonic() + 30
    while not (out.exists() and "alloc ok" in out.read_text(errors="replace")):
        assert time.monotonic() < deadline, slurm.log("slurmd")[-3000:]
        time.sleep(0.2)
    used = sum(g.get("used_bytes", 0) for g in slurm.status()["gpus"])
    assert used >= 512 << 20
    slurm.run("scancel", "--signal=KILL", "--full", job, check=True)
    slurm.wait_idle()
    _assert_nothing_accounted(slurm)


def test_opt_out_and_no_options(slurm: Slurm) -> None:
    probe = str(slurm.native.probe)
    off = slurm.run("srun", "--gres=gpu:1", "--fcsp-off", probe, "init", check=True)
    assert _probe_rows(off.stdout, "init")[0]["total_bytes"] == str(8 * GIB), off.stdout
    conflict = slurm.run("srun", "--fcsp-off", "--fcsp-mem=1G", "true")
    assert conflict.returncode != 0 and "exclude" in conflict.stderr, conflict.stderr


def test_env_cannot_raise_the_cap(slurm: Slurm) -> None:
    env = dict(slurm.env, FCSP_MEM_LIMIT="4G", FCSP_TENANT="mine")
    done = subprocess.run(
        ["srun", "--gres=gpu:1", "--fcsp-mem=1G", str(slurm.native.probe), "init"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert _probe_rows(done.stdout, "init")[0]["total_bytes"] == str(GIB), done


def test_cli_gres_and_check(slurm: Slurm) -> None:
    gres = slurm.run(fcsp_command(), "slurm", "gres", "--shards-per-gpu", "8", check=True).stdout
    assert "Name=gpu File=/dev/nvidia0" in gres and "Name=shard Count=8 File=/dev/nvidia1" in gres, gres
    assert "Gres=gpu:2,shard:16" in gres, gres
    check = slurm.run(
        fcsp_command(), "slurm", "check", "--plugstack", str(slurm.base / "plugstack.conf"),
        "--region-dir", str(slurm.region),
    )  # fmt: skip
    assert "problem:" not in check.stdout or "owned by root" not in check.stdout, check.stdout
    if (lib_dir() / "fcsp_spank.so").exists():  # else `check` rightly reports the package has no plugin
        assert "fcsp_spank.so" not in check.stdout, check.stdout
    bad = slurm.run(fcsp_command(), "slurm", "check", "--plugstack", "/nonexistent")
    assert bad.returncode == 1 and "/nonexistent does not exist" in bad.stdout, bad.stdout
