"""The SPANK plugin in a real one-node Slurm (Debian's slurmctld/slurmd/munge; 22.05 on Debian 12) whose
GPUs are the simulated driver's: caps from --fcsp-mem/--fcsp-sm reach tasks through srun, sbatch and salloc,
bad values are refused at submit, shards become fenced caps that no option widens, opt-out is the site's
choice, the plugin starts (or finds) the node daemon, cancelled jobs leave nothing accounted.

Needs root (daemons, device files) and Debian's packages slurmctld, slurmd, slurm-client, munge and
libslurm-dev (.ci/run installs them): skipped with the reason when they are missing. Nothing is installed
here. Every daemon is stopped by PID at the end."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.commands import fcsp_command
from support.daemon import NodeDaemon
from support.lines import LineReader
from support.probe import parse_probe
from support.users import LocalUser

from fcsp_core.config import PolicyEntry
from fcsp_core.paths import lib_dir
from fcsp_core.region import policy_list

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "libslurm-dev")
GIB = 1 << 30
SIM_MEM = "8G"
SHARDS_PER_GPU = 8
PLUGIN_MSG = "fcsp: --fcsp"
SHARD_MSG = "a shard step's --fcsp-mem and --fcsp-sm may only lower it"

pytestmark = pytest.mark.slow


def _missing_packages() -> list[str]:
    if not shutil.which("dpkg-query"):
        return list(PACKAGES)
    missing = []
    for pkg in PACKAGES:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, timeout=30, check=False
        )
        if "install ok installed" not in done.stdout:
            missing.append(pkg)
    return missing


def ensure_slurm() -> None:
    """Skip with the reason unless this is root with Debian's Slurm packages (never installs them)."""
    if os.geteuid() != 0:
        pytest.skip("a real Slurm needs root (daemons, device files)")
    missing = _missing_packages()
    if missing:
        pytest.skip(f"Slurm packages missing: apt-get install {' '.join(missing)} (as .ci/run does)")


def slurm_version() -> tuple[int, int]:
    done = subprocess.run(["slurmctld", "-V"], capture_output=True, text=True, timeout=30, check=False)
    found = re.search(r"(\d+)\.(\d+)", done.stdout)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


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
    # The simulated GPUs' state, shared by every uid's processes (the escape test's task runs as a test user):
    # a directory outside base (under a 0700 pytest directory), 0777, so the state file is 0666.
    sim_state = Path(tempfile.mkdtemp(prefix="fcsp-slurm-sim-"))
    sim_state.chmod(0o777)
    for d in ("state", "spool"):
        (base / d).mkdir()
    munge_sock = base / "munge.socket"
    # Slurm 23.11+ can spread one job's shards over several GPUs of a node when asked to; 22.05 cannot.
    select_extra = ",MULTIPLE_SHARING_GRES_PJ" if slurm_version() >= (23, 11) else ""
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
SelectTypeParameters=CR_Core_Memory{select_extra}
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
        f"Name=shard Count={SHARDS_PER_GPU} File={dev}/nvidia0\n"
        f"Name=shard Count={SHARDS_PER_GPU} File={dev}/nvidia1\n"
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
        shutil.rmtree(sim_state, ignore_errors=True)


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
    "opt",
    [
        "--fcsp-sm=150", "--fcsp-sm=abc", "--fcsp-mem=-3G", "--fcsp-mem=0", "--fcsp-mem=101%",
        "--fcsp-sm-mode=fast",
    ],  # fmt: skip
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
        assert "--fcsp-sm-mode=MODE" in out, (tool, out)


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
    probe = str(slurm.native.probe)
    done = slurm.run("srun", "--gres=shard:2", probe, "init", timeout=60, check=True)
    assert _probe_rows(done.stdout, "init")[0]["total_bytes"] == str(2 * GIB), done.stdout  # 2/8 of 8 GiB
    # Options may lower a shard step's share, down to or equal to it.
    for opts, cap in (
        (["--fcsp-mem=1G"], GIB),
        (["--fcsp-mem=2G"], 2 * GIB),
        (["--fcsp-mem=25%"], 2 * GIB),
        (["--fcsp-sm=10"], 2 * GIB),
        (["--fcsp-mem=10%", "--fcsp-sm=25"], int(0.1 * 8 * GIB)),
    ):
        lowered = slurm.run("srun", "--gres=shard:2", *opts, probe, "init", timeout=60, check=True)
        assert _probe_rows(lowered.stdout, "init")[0]["total_bytes"] == str(cap), (opts, lowered.stdout)


def _step_policies(cluster: Slurm, expect: int, timeout: float = 30.0) -> list[PolicyEntry]:
    """The policy entries root holds for Slurm steps, once there are expect of them (0: until earlier steps'
    entries are gone; 1: until the running step's is there); fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        entries = [p for p in policy_list(cluster.region) if p.tenant.startswith("slurm-")]
        if len(entries) == expect:
            return entries
        assert expect == 0 or len(entries) < expect, entries  # more than one step's: never waited away
        assert time.monotonic() < deadline, entries
        time.sleep(0.1)


def test_shard_caps_in_the_policy_table(slurm: Slurm) -> None:
    # What root registered for the step while it runs: memory and SM share of its 2 shards (25% of GPU 0).
    slurm.wait_idle()
    _step_policies(slurm, expect=0)  # earlier steps' entries gone
    step = subprocess.Popen(
        ["srun", "--gres=shard:2", str(slurm.native.probe), "init", "sleep", "3000"],
        env=slurm.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        policies = _step_policies(slurm, expect=1)
        gpus = policies[0].gpus
        assert len(gpus) == 1, policies
        assert gpus[0].mem_limit_bytes == 2 * GIB and gpus[0].sm_limit_pct == 25, policies
    finally:
        out, err = step.communicate(timeout=60)
    assert step.returncode == 0, (out, err)


@pytest.mark.parametrize(
    ("opt", "share"),
    [
        ("--fcsp-mem=100%", "25% of a GPU"),
        ("--fcsp-mem=26%", "25% of a GPU"),
        ("--fcsp-sm=26", "25% of a GPU's SMs"),
    ],
)
@pytest.mark.parametrize("tool", ["srun", "sbatch", "salloc"])
def test_shard_share_cannot_be_widened_at_submit(slurm: Slurm, tool: str, opt: str, share: str) -> None:
    slurm.wait_idle()
    cmd = [tool, "--gres=shard:2", opt] + (["--wrap=true"] if tool == "sbatch" else ["true"])
    done = slurm.run(*cmd, timeout=30)
    assert done.returncode != 0, done
    lines = [ln for ln in done.stderr.splitlines() if "fcsp:" in ln]
    want = f"{opt} is more than this step's shard share (2 shards, {share}, 8 shards per GPU)"
    assert want in lines[0], lines
    assert SHARD_MSG in lines[0], lines
    assert not slurm.run("squeue", "-h").stdout.strip(), "a job was queued"
    # the request as the tool's input variable (SLURM_GRES, SBATCH_GRES, SALLOC_GRES) counts the same
    var = {"srun": "SLURM_GRES", "sbatch": "SBATCH_GRES", "salloc": "SALLOC_GRES"}[tool]
    env = dict(slurm.env, **{var: "shard:2"})
    cmd = [tool, opt] + (["--wrap=true"] if tool == "sbatch" else ["true"])
    by_env = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert by_env.returncode != 0 and SHARD_MSG in by_env.stderr, by_env.stderr


def test_shard_byte_cap_above_share_fails_on_the_node(slurm: Slurm) -> None:
    # Bytes are checked where the GPU's size is known: the step fails before its task starts, one line in
    # stderr.
    done = slurm.run("srun", "--gres=shard:2", "--fcsp-mem=3G", str(slurm.native.probe), "init", timeout=60)
    assert done.returncode != 0 and "init ok" not in done.stdout, done
    want = "--fcsp-mem=3G is more than this step's shard share (2 shards, 25% of GPU 0 = 2048 MiB, 8 shards"
    assert want in done.stderr, done.stderr


def test_shard_request_the_submit_side_cannot_see(slurm: Slurm) -> None:
    probe = str(slurm.native.probe)
    # #SBATCH lines: sbatch's plugin sees --fcsp-mem but not the shards; the batch step is refused on the
    # node.
    script = slurm.base / "shard-job.sh"
    script.write_text(f"#!/bin/sh\n#SBATCH --gres=shard:1\n#SBATCH --fcsp-mem=100%\n{probe} init\n")
    out = slurm.base / "shard-job.out"
    done = slurm.run("sbatch", "--wait", f"--output={out}", str(script), timeout=90)
    text = out.read_text(errors="replace")
    assert done.returncode != 0 and "init ok" not in text, (done, text)
    assert "--fcsp-mem=100% is more than this step's shard share (1 shard, 12.5% of a GPU" in text, text
    # srun inside a shard job (the step inherits the job's shards): refused by srun itself
    out = slurm.base / "inherit.out"
    slurm.run(
        "sbatch", "--wait", "--gres=shard:1", f"--output={out}",
        f"--wrap=srun --fcsp-mem=100% {probe} init; echo rc=$?; srun --fcsp-mem=512M {probe} init",
        timeout=90, check=True,
    )  # fmt: skip
    text = out.read_text(errors="replace")
    assert "srun: error: fcsp: --fcsp-mem=100% is more than this step's shard share (1 shard" in text, text
    assert "rc=1" in text, text
    assert _probe_rows(text, "init")[0]["total_bytes"] == str(512 << 20), text


def test_whole_gpu_steps_use_options_freely(slurm: Slurm) -> None:
    probe = str(slurm.native.probe)
    for opts, cap in (
        (["--fcsp-mem=100%", "--fcsp-sm=100"], 8 * GIB),
        (["--fcsp-mem=8G"], 8 * GIB),
        (["--fcsp-mem=3G"], 3 * GIB),
    ):
        done = slurm.run("srun", "--gres=gpu:1", *opts, probe, "init", timeout=60, check=True)
        assert _probe_rows(done.stdout, "init")[0]["total_bytes"] == str(cap), (opts, done.stdout)


def test_submit_side_reads_its_options_not_the_command(slurm: Slurm) -> None:
    slurm.wait_idle()
    # options given with separate values ("-n 1", "--gres shard:2") are read past
    for opts in (
        ["-n", "1", "--gres=shard:2"],
        ["--ntasks", "1", "--gres", "shard:2"],
        ["-J", "x", "--gres", "shard:2"],
    ):
        done = slurm.run("srun", *opts, "--fcsp-mem=100%", "true", timeout=30)
        assert done.returncode != 0 and SHARD_MSG in done.stderr, (opts, done.stderr)
        assert not slurm.run("squeue", "-h").stdout.strip(), "a job was queued"
    # srun's options end where the command starts: a command's argument is not a shard request
    echo = slurm.run("srun", "--gres=gpu:1", "--fcsp-mem=100%", "echo", "--gres=shard:1", check=True)
    assert echo.stdout.strip() == "--gres=shard:1", echo
    echo = slurm.run(
        "srun", "-n", "1", "--gres=gpu:1", "--fcsp-mem=100%", "-u", "echo", "--gres", "shard:1", check=True
    )
    assert echo.stdout.strip() == "--gres shard:1", echo


def test_shards_over_several_gpus(slurm: Slurm, tmp_path: Path) -> None:
    """--gres=shard:12 with 8 shards per GPU. Slurm 22.05 never spreads one job's shards over GPUs: it
    refuses such a job (sbatch --test-only, srun --immediate). Slurm 23.11+ with MULTIPLE_SHARING_GRES_PJ
    does; the step's environment then says 12 shards on GPUs 0,1 but not how they split, and fcsp caps each
    GPU at the share it is sure of: 12 - 8 = 4 shards, 50% (the arithmetic for every split is checked
    below)."""
    probe = str(slurm.native.probe)
    if slurm_version() < (23, 11):
        one_gpu = slurm.run("sbatch", "--test-only", "--gres=shard:8", "--wrap=true", timeout=30)
        assert one_gpu.returncode == 0, one_gpu
        spread = slurm.run("sbatch", "--test-only", "--gres=shard:12", "--wrap=true", timeout=30)
        assert spread.returncode != 0, spread
        assert "Requested node configuration is not available" in spread.stderr, spread.stderr
        now = slurm.run("srun", "--immediate=2", "--gres=shard:12", "true", timeout=30)
        assert now.returncode != 0, now
    else:
        done = slurm.run("srun", "--gres=shard:12", probe, "init", "0", "init", "1", timeout=60, check=True)
        inits = _probe_rows(done.stdout, "init")  # 50% of each 8 GiB GPU
        assert len(inits) == 2 and all(int(r["total_bytes"]) == 4 * GIB for r in inits), done.stdout
    # The plugin's own arithmetic (spank/shards.c), for splits a one-node Slurm cannot be made to produce.
    check = tmp_path / "spank_shards_check"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    subprocess.run(
        ["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", f"-I{REPO / 'spank'}",
         f"-I{REPO / 'fcsp_core' / 'native' / 'include'}", str(REPO / "tests/native/spank_shards_check.c"),
         str(REPO / "spank" / "shards.c"), "-lm", "-o", str(check)],
        env=env, check=True, timeout=120,
    )  # fmt: skip

    def share(shards: int, gpus: int) -> str:
        return subprocess.run(
            [str(check), "share", str(shards), str(SHARDS_PER_GPU), str(gpus)],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip

    assert share(12, 2) == "share=0.500000 sm=50"  # 8+4, 7+5, 6+6, ...: every GPU holds at least 4
    assert share(16, 2) == "share=1.000000 sm=100"  # 8+8: both whole
    assert share(4, 2) == "share=0.125000 sm=13"  # 3+1 or 2+2: only one shard is sure on each
    assert share(20, 3) == "share=0.500000 sm=50"  # at least 20 - 2*8 = 4 on each
    assert share(2, 1) == "share=0.250000 sm=25"
    assert share(9, 1) == "share=1.000000 sm=100"  # never more than the whole GPU

    def gres(text: str) -> str:
        cmd = [str(check), "gres", text]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout.strip()

    assert gres("gpu:1,shard:2") == "shards=2"
    assert gres("shard") == "shards=1" and gres("shard:tesla") == "shards=1"
    assert gres("shard:tesla:3") == "shards=3" and gres("gres/shard:4") == "shards=4"
    assert gres("gpu:2") == "shards=0" and gres("none") == "shards=0"
    assert gres("shard:a:b") == "shards=-1"  # unreadable: the submit side leaves it to the node


def test_slurm_2205_gives_a_gpu_and_its_shards_together(slurm: Slurm) -> None:
    """A Slurm fact deploy/slurm/README.md warns about: 22.05 gives --gres=gpu:2 both GPUs while another job
    holds all 8 shards of GPU 0 (Slurm's documentation says a GPU is allocated as a GPU or as shards, not
    both). fcsp keeps each step's own cap, but the two share GPU 0's memory first come, first served."""
    if slurm_version() != (22, 5):
        pytest.skip(f"checked on Slurm 22.05 only (this is {slurm_version()})")
    slurm.wait_idle()
    hold = subprocess.Popen(
        ["srun", "--gres=shard:8", "sleep", "20"],
        env=slurm.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "RUNNING gres:shard:8" not in slurm.run("squeue", "-h", "-o", "%T %b").stdout:
            assert time.monotonic() < deadline, slurm.run("squeue").stdout
            time.sleep(0.2)
        both = slurm.run("srun", "--immediate=5", "--gres=gpu:2", "printenv", "SLURM_STEP_GPUS", check=True)
        assert both.stdout.strip() == "0,1", both
    finally:
        hold.terminate()
        hold.communicate(timeout=60)


@contextmanager
def plugstack_args(cluster: Slurm, extra: str) -> Iterator[None]:
    """plugstack.conf with more key=value arguments (a later key wins), restored afterwards."""
    path = cluster.base / "plugstack.conf"
    line = path.read_text()
    path.write_text(line.rstrip("\n") + f" {extra}\n")
    try:
        yield
    finally:
        path.write_text(line)


def test_plugstack_line_keeps_opt_out_off() -> None:
    line = subprocess.run(
        [fcsp_command(), "slurm", "plugstack"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "allow_opt_out=no" in line and "sm_mode=time" in line, line
    allowed = subprocess.run(
        [fcsp_command(), "slurm", "plugstack", "--allow-opt-out"], capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout  # fmt: skip
    assert "allow_opt_out=yes" in allowed, allowed


def test_opt_out_only_where_the_site_allows_it(slurm: Slurm) -> None:
    probe = str(slurm.native.probe)
    slurm.wait_idle()
    for tool in ("srun", "sbatch"):
        cmd = [tool, "--gres=gpu:1", "--fcsp-off"] + (["--wrap=true"] if tool == "sbatch" else ["true"])
        refused = slurm.run(*cmd, timeout=30)
        assert refused.returncode != 0, refused
        want = "fcsp: --fcsp-off: this site does not allow running GPU jobs without fcsp caps"
        assert want in refused.stderr, refused.stderr
        assert not slurm.run("squeue", "-h").stdout.strip(), "a job was queued"
    with plugstack_args(slurm, "allow_opt_out=yes"):
        off = slurm.run("srun", "--gres=gpu:1", "--fcsp-off", probe, "init", check=True)
        assert _probe_rows(off.stdout, "init")[0]["total_bytes"] == str(8 * GIB), off.stdout
        conflict = slurm.run("srun", "--fcsp-off", "--fcsp-mem=1G", "true")
        assert conflict.returncode != 0 and "exclude" in conflict.stderr, conflict.stderr
        # a shard step never opts out
        shard = slurm.run("srun", "--gres=shard:2", "--fcsp-off", probe, "init", timeout=30)
        assert shard.returncode != 0 and "init ok" not in shard.stdout, shard
        want = "fcsp: --fcsp-off: this step holds 2 shards (25% of a GPU, 8 shards per GPU) and runs under"
        assert want in shard.stderr, shard.stderr


def _node_daemons(region: Path) -> list[int]:
    """PIDs of `fcsp node` processes serving this region."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"node" in argv and str(region).encode() in argv and any(a.endswith(b"fcsp") for a in argv[:2]):
            found.append(int(entry.name))
    return found


def test_plugin_starts_or_finds_the_node_daemon(slurm: Slurm) -> None:
    # slurmd's plugin (fcsp= in plugstack.conf) started `fcsp node` on the region: it holds the node lock.
    lock = slurm.region / "node.lock"
    first = _pidfile(lock)
    assert first and _node_daemons(slurm.region) == [first], (first, _node_daemons(slurm.region))
    assert f"fcsp: started the node daemon, pid {first} (" in slurm.log("slurmd"), slurm.log("slurmd")[-3000:]
    # a job's prolog finds it and starts no second one
    slurm.run("srun", "--gres=gpu:1", "--fcsp-mem=1G", "true", check=True)
    assert _pidfile(lock) == first and _node_daemons(slurm.region) == [first]
    # gone (killed): the next job's prolog starts it again
    _stop(first)
    assert not _node_daemons(slurm.region)
    slurm.run("srun", "--gres=gpu:1", "--fcsp-mem=1G", "true", check=True)
    deadline = time.monotonic() + 30
    while not _node_daemons(slurm.region) and time.monotonic() < deadline:
        time.sleep(0.2)
    second = _pidfile(lock)
    assert second and second != first and _node_daemons(slurm.region) == [second], slurm.log("slurmd")[-3000:]
    assert f"fcsp: started the node daemon, pid {second} (" in slurm.log("slurmd")


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


def test_env_cannot_raise_the_cap(slurm: Slurm) -> None:
    env = dict(slurm.env, FCSP_MEM_LIMIT="4G", FCSP_TENANT="mine")
    done = subprocess.run(
        ["srun", "--gres=gpu:1", "--fcsp-mem=1G", str(slurm.native.probe), "init"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert _probe_rows(done.stdout, "init")[0]["total_bytes"] == str(GIB), done


def _step_mode(cluster: Slurm, *opts: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """(FCSP_SM_MODE as the step's task sees it, sm_mode of the policy entry root wrote for the step)."""
    cluster.wait_idle()
    _step_policies(cluster, expect=0)  # earlier steps' entries gone
    step = subprocess.Popen(
        ["srun", "--gres=gpu:1", *opts, "sh", "-c", 'echo "mode=${FCSP_SM_MODE:-unset}"; sleep 3'],
        env=env or cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        entries = _step_policies(cluster, expect=1)
    finally:
        out, err = step.communicate(timeout=60)
    assert step.returncode == 0, (out, err)
    return out.strip().removeprefix("mode="), entries[0].sm_mode


def test_sm_mode_per_step(slurm: Slurm) -> None:
    """--fcsp-sm-mode reaches the step's policy entry (root's: the job cannot change it) and its environment;
    a job's own FCSP_SM_MODE=spatial is not spatial mode (libfcsp follows the entry, the step's environment
    says hard); the plugstack sm_mode is the default of capped steps."""
    assert _step_mode(slurm, "--fcsp-sm=40", "--fcsp-sm-mode=spatial") == ("spatial", "spatial")
    assert _step_mode(slurm, "--fcsp-sm=40", "--fcsp-sm-mode=time") == ("unset", "time")
    own = dict(slurm.env, FCSP_SM_MODE="spatial")
    assert _step_mode(slurm, "--fcsp-sm=40", env=own) == ("hard", "time")
    with plugstack_args(slurm, "sm_mode=spatial"):
        assert _step_mode(slurm, "--fcsp-sm=40") == ("spatial", "spatial")
        assert _step_mode(slurm, "--fcsp-sm=40", "--fcsp-sm-mode=time") == ("unset", "time")
        assert _step_mode(slurm, "--fcsp-mem=1G") == ("unset", "time")  # no SM share: nothing to partition
    refused = slurm.run("srun", "--gres=gpu:1", "--fcsp-mem=1G", "--fcsp-sm-mode=spatial", "true", timeout=30)
    assert refused.returncode != 0, refused
    assert "fcsp: --fcsp-sm-mode=spatial needs an SM share to partition" in refused.stderr, refused.stderr
    with plugstack_args(slurm, "allow_opt_out=yes"):
        conflict = slurm.run("srun", "--fcsp-sm-mode=spatial", "--fcsp-off", "true", timeout=30)
    assert conflict.returncode != 0 and "excludes --fcsp-mem, --fcsp-sm and --fcsp-sm-mode" in conflict.stderr


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
    assert "shards_per_gpu" not in check.stdout, check.stdout  # 8, as gres.conf has
    line = (slurm.base / "plugstack.conf").read_text()
    for arg, want in (
        (
            "shards_per_gpu=4",
            "plugstack.conf shards_per_gpu=4 but this node has 16 shards on 2 GPUs (8 per GPU)",
        ),
        (
            "shards_per_gpu=0",
            "this node has gres/shard (16 on 2 GPUs) but plugstack.conf has no shards_per_gpu",
        ),
    ):
        wrong = slurm.base / "plugstack-wrong.conf"
        wrong.write_text(line.rstrip("\n") + f" {arg}\n")
        out = slurm.run(
            fcsp_command(), "slurm", "check", "--plugstack", str(wrong), "--region-dir", str(slurm.region)
        )
        assert out.returncode == 1 and f"problem: {want}" in out.stdout, out.stdout
    bad = slurm.run(fcsp_command(), "slurm", "check", "--plugstack", "/nonexistent")
    assert bad.returncode == 1 and "/nonexistent does not exist" in bad.stdout, bad.stdout


# ---- a step that escapes the interposer (the trust boundary: the node daemon's audit, README) --------------

KILL_WITHIN = 1.0  # seconds from the escaping allocation to the kill (issue 11's audit)


@dataclass
class Step:
    """A running srun whose task prints `pid=N` (its own pid, before it execs the probe) then probe rows."""

    proc: subprocess.Popen[bytes]
    reader: LineReader = field(init=False)

    def __post_init__(self) -> None:
        self.reader = LineReader(self.proc, "the step")

    def line(self, prefix: str, timeout: float = 60.0) -> str:
        """The next line of the step's stdout starting with prefix (earlier lines are skipped)."""
        return self.reader.line(prefix, timeout)

    def pid(self) -> int:
        return int(self.line("pid=").split("=", 1)[1])

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        text = (self.reader.pending + out).decode(errors="replace")
        return self.proc.returncode, text, err.decode(errors="replace")


def _start_step(cluster: Slurm, script: str, stdin: int = subprocess.DEVNULL) -> Step:
    cmd = ["srun", "--gres=gpu:1", "--fcsp-mem=1G", "sh", "-c", f'echo "pid=$$"; exec {script}']
    return Step(subprocess.Popen(cmd, env=cluster.env, stdin=stdin, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE))  # fmt: skip


def _own_node_daemon(cluster: Slurm, node_daemon: Any) -> NodeDaemon:
    """The test's `fcsp node` (with metrics) on the plugin's region, in place of the plugin's: slurmd's plugin
    may be starting one just as we stop it, so stop theirs and start ours until ours holds the node lock."""
    for _ in range(5):
        for pid in _node_daemons(cluster.region):
            _stop(pid)
        try:
            return node_daemon(cluster.env)
        except AssertionError as exc:
            if "already running" not in str(exc):
                raise
    raise AssertionError("another node daemon kept the region's lock")


def test_a_step_that_drops_the_interposer_is_killed(slurm: Slurm, two_uids, public_lib_dir: Path,
                                                    node_daemon) -> None:  # fmt: skip
    """A step under the plugin's policy (--fcsp-mem=1G) whose task becomes a test user and runs the probe
    without LD_PRELOAD, allocating 4 GiB: the node daemon's audit finds it by its ancestry (its parent is
    root's `slurmstepd: [J.0]`: this Slurm tracks steps with proctrack/linuxproc, no cgroups), kills it within
    1 s of the allocation (timed from the end of the probe's `hold`, just before it), logs pid, user, job and
    bytes and counts it; the step fails. A capped step beside it, on the same simulated node, is left alone.
    The daemon is the test's own `fcsp node` (the plugin's runs with --no-metrics) on the plugin's region,
    with slurmd's environment: the same simulated node as the steps."""
    pytest.importorskip("pynvml")  # the daemon's audit reads NVML through it
    user = two_uids[0]
    slurm.wait_idle()
    daemon = _own_node_daemon(slurm, node_daemon)
    probe = public_lib_dir / "fcsp-probe"
    steps: list[Step] = []
    try:
        _escape_beside_a_capped_step(slurm, user, probe, daemon, steps)
    finally:
        for step in steps:  # a failure above leaves them running: srun ends its step on SIGTERM
            if step.proc.poll() is None:
                step.proc.terminate()
                step.proc.communicate(timeout=60)


def _escape_beside_a_capped_step(
    slurm: Slurm, user: LocalUser, probe: Path, daemon: NodeDaemon, steps: list[Step]
) -> None:
    capped = _start_step(slurm, f"{probe} init alloc 512M sleep 4000 alloc 768M")
    steps.append(capped)
    capped_pid = capped.pid()
    assert capped.line("alloc ").startswith("alloc ok"), "the capped step's first allocation failed"
    escaper = _start_step(
        slurm,
        f"setpriv --reuid={user.uid} --regid={user.gid} --clear-groups env -u LD_PRELOAD "
        f"LD_LIBRARY_PATH={probe.parent / 'sim'} {probe} init hold alloc 4G sleep 60000",
        stdin=subprocess.PIPE,
    )
    steps.append(escaper)
    pid = escaper.pid()
    pidfd = os.pidfd_open(pid)
    try:
        init = escaper.line("init ")
        assert init.startswith(f"init ok dev=0 total_bytes={8 * GIB}"), f"the escape is capped: {init}"
        assert escaper.proc.stdin is not None
        released = time.monotonic()  # before the allocation: took is an upper bound
        escaper.proc.stdin.close()  # end of the probe's `hold`: now it allocates
        escaper.proc.stdin = None  # (closed: communicate() must not flush it)
        killed = bool(select.select([pidfd], [], [], 15)[0])
        took = time.monotonic() - released
    finally:
        os.close(pidfd)
    assert killed, "the escaping process is still running 15 s after it was let allocate"
    print(f"escaped Slurm step killed {took * 1000:.0f} ms after it was let allocate")
    rc, out, err = escaper.finish()
    assert rc != 0 and "alloc ok" in out, (out, err)  # it held its 4 GiB, then died: the step failed
    log = daemon.wait_log(
        rf"escape \(unattached\): pid={pid} user={user.name} slurm job (\d+)\.0: 4 GiB "
        rf"\({4 * GIB} bytes\) on GPU-\S+ per the driver, not attached to fcsp; killed \(SIGKILL\)"
    )
    assert took < KILL_WITHIN, f"killed {took:.2f} s after its allocation: {log.group(0)}"
    metrics = daemon.scrape()
    counts = [ln for ln in metrics.splitlines() if ln.startswith("fcsp_escapes_total{")]
    assert len(counts) == 1 and counts[0].endswith(" 1.0"), counts
    for label in ('scheduler="slurm"', 'reason="unattached"', 'action="killed"'):
        assert label in counts[0], counts
    # the capped step: untouched, its cap still held (768 MiB more is refused), it ends well
    rc, out, err = capped.finish()
    assert rc == 0, (out, err)
    allocs = _probe_rows(out, "alloc")
    assert allocs[-1]["status"] == "fail" and allocs[-1]["err"] == "CUDA_ERROR_OUT_OF_MEMORY", out
    assert f"pid={capped_pid} " not in daemon.log(), daemon.log()
