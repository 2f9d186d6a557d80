"""fcsp on a real local Ray cluster (CPU only, simulated driver): caps per task and per actor, the resource
limit on concurrency, worker reuse, reclaim of killed actors, the node daemon (issue 6); workers that fail
closed, the driver hook against the oldest Ray claimed and a moved private API, what a node without NVML
says, the demo's output (issue 14)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep Ray on 127.0.0.1: a local Cluster hangs
os.environ["RAY_AUTH_MODE"] = "disabled"
ray = pytest.importorskip("ray")
fcsp_ray = pytest.importorskip("fcsp_ray")

from fcsp_core import region  # noqa: E402

GIB = 1 << 30
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("FCSP_TEST_SANITIZE")), reason="Ray workers cannot host sanitized libraries"
)


def node_env(native, base: Path, gpus: int, mem: str) -> dict[str, str]:
    sim = base / "sim"
    sim.mkdir(mode=0o700, parents=True, exist_ok=True)
    ld = os.environ.get("LD_LIBRARY_PATH")
    return {
        "LD_LIBRARY_PATH": f"{native.sim_dir}:{ld}" if ld else str(native.sim_dir),
        "FCSP_SIM_GPUS": str(gpus),
        "FCSP_SIM_MEM": mem,
        "FCSP_SIM_DIR": str(sim),
        "FCSP_REGION_DIR": str(base / "region"),
        "FCSP_RAY_METRICS_PORT": "0",
        "FCSP_RAY_NODE_LOG": str(base / "fcsp-node.log"),
        "FCSP_RAY_RESTART_S": "0.2",
        **fcsp_ray.cluster_env(),
    }


def daemon_pid(env: dict[str, str]) -> int | None:
    """The PID of the `fcsp node` holding env's region ("already running as PID N"), None if none."""
    import re
    import subprocess

    done = subprocess.run(
        ["fcsp", "node", "--once", "--no-metrics"], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    m = re.search(r"already running as PID (\d+)", done.stderr)
    return int(m.group(1)) if m else None


def wait_for(pred, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(native, tmp_path_factory):
    """One Ray node on one simulated 80 GiB GPU, fcsp turned on, driver hook enabled."""
    base = tmp_path_factory.mktemp("raynode")
    env = node_env(native, base, 1, "80G")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fcsp_ray.enable()
    ray.init(
        num_cpus=2,
        resources=fcsp_ray.node_resources([80 * GIB]),
        include_dashboard=False,
        log_to_driver=False,
    )
    yield env
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@ray.remote(num_cpus=0)
def grab(step_gib: int = 1, hold_s: float = 0.0) -> dict:
    """Allocate step_gib at a time until refused; report what the task saw."""
    from fcsp_ray.cuda import Cuda, CudaError

    cuda = Cuda()
    _, total = cuda.mem_info()
    start = time.time()
    error = None
    try:
        for _ in range(200):
            cuda.alloc(step_gib * GIB)
    except CudaError as exc:
        error = str(exc)
    peak = len(cuda.held) * step_gib * GIB
    time.sleep(hold_s)
    end = time.time()
    cuda.free_all()
    return {
        "pid": os.getpid(), "tenant": os.environ.get("FCSP_TENANT"), "total": total, "peak": peak,
        "error": error, "start": start, "end": end,
    }  # fmt: skip


@ray.remote(num_cpus=0, resources={"fcsp_mem_gb": 4})
class Holder:
    def __init__(self) -> None:
        from fcsp_ray.cuda import Cuda

        self.cuda = Cuda()

    def take(self, gib: int) -> str:
        from fcsp_ray.cuda import CudaError

        try:
            self.cuda.alloc(gib * GIB)
        except CudaError as exc:
            return str(exc)
        return "ok"

    def info(self) -> tuple[int, str, int]:
        return os.getpid(), os.environ["FCSP_TENANT"], self.cuda.mem_info()[1]


@pytest.mark.slow  # a real Ray cluster
def test_plain_resources_cap_a_task(cluster):
    r = ray.get(grab.options(resources={"fcsp_mem_gb": 8}).remote(), timeout=60)
    assert r["total"] == 8 * GIB and r["peak"] == 8 * GIB
    assert "CUDA_ERROR_OUT_OF_MEMORY" in r["error"]
    assert r["tenant"] == f"ray-{r['pid']}"
    # fractional GiB and the helper form
    r = ray.get(grab.options(**fcsp_ray.options(mem_gb=2.5)).remote(), timeout=60)
    assert r["total"] == int(2.5 * GIB)


@pytest.mark.slow  # a real Ray cluster
def test_sm_cap_reaches_the_worker(cluster):
    @ray.remote(num_cpus=0, resources={"fcsp_sm": 40})
    def env_of() -> tuple[str | None, str | None]:
        return os.environ.get("FCSP_SM_LIMIT"), os.environ.get("FCSP_MEM_LIMIT")

    assert ray.get(env_of.remote()) == ("40", None)


NEEDS_SHARE = 'fcsp: sm_mode="spatial" needs an SM share to partition'


@ray.remote(num_cpus=0)
def sm_env() -> dict[str, str | None]:
    keys = ("FCSP_SM_LIMIT", "FCSP_SM_MODE", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "CUDA_MPS_PIPE_DIRECTORY")
    return {k: os.environ.get(k) for k in keys}


@pytest.mark.slow  # a real Ray cluster
def test_sm_mode_per_task(cluster):
    """A task asks for spatial mode with options(sm_mode=) or its runtime_env's fcsp key: the worker gets
    FCSP_SM_MODE=spatial and libfcsp points it at the node's MPS with its share as the active thread
    percentage (a task's own larger percentage is dropped); FCSP_SM_MODE=spatial in env_vars alone is not
    spatial mode; "time" is the default."""
    region = os.environ.get("FCSP_REGION_DIR")
    r = ray.get(sm_env.options(**fcsp_ray.options(sm=40, sm_mode="spatial")).remote(), timeout=60)
    assert r["FCSP_SM_LIMIT"] == "40" and r["FCSP_SM_MODE"] == "spatial", r
    assert r["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "40" and r["CUDA_MPS_PIPE_DIRECTORY"], r
    if region:
        assert r["CUDA_MPS_PIPE_DIRECTORY"] == f"{region}/mps", r
    wide = {"env_vars": {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "100"}, "fcsp": {"sm_mode": "spatial"}}
    r = ray.get(sm_env.options(resources={"fcsp_sm": 25}, runtime_env=wide).remote(), timeout=60)
    assert r["FCSP_SM_MODE"] == "spatial" and r["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25", r
    own = {"env_vars": {"FCSP_SM_MODE": "spatial"}}
    r = ray.get(sm_env.options(resources={"fcsp_sm": 25}, runtime_env=own).remote(), timeout=60)
    assert r["FCSP_SM_MODE"] == "hard" and r["CUDA_MPS_PIPE_DIRECTORY"] is None, r
    r = ray.get(sm_env.options(**fcsp_ray.options(sm=25, sm_mode="time")).remote(), timeout=60)
    assert r["FCSP_SM_MODE"] is None and r["CUDA_MPS_PIPE_DIRECTORY"] is None, r


@pytest.mark.slow  # a real Ray cluster
@pytest.mark.parametrize(
    ("resources", "fcsp", "message"),
    [
        ({"fcsp_sm": 40}, {"sm_mode": "fast"}, "fcsp: sm_mode='fast' is not valid: use time or spatial"),
        (None, {"sm_mode": "spatial"}, NEEDS_SHARE),
        ({"fcsp_mem_gb": 2}, {"sm_mode": "spatial"}, NEEDS_SHARE),
    ],
)
def test_bad_sm_mode_is_refused_at_submit(cluster, resources, fcsp, message):
    with pytest.raises(fcsp_ray.CapsError) as err:
        sm_env.options(resources=resources or {}, runtime_env={"fcsp": fcsp}).remote()
    assert str(err.value).startswith(message) and "\n" not in str(err.value), err.value
    with pytest.raises(fcsp_ray.CapsError, match="^fcsp: sm_mode='fast' is not valid"):
        fcsp_ray.options(sm=40, sm_mode="fast")


@pytest.mark.slow  # a real Ray cluster
def test_uncapped_task_is_not_preloaded(cluster):
    @ray.remote(num_cpus=0)
    def preload() -> str:
        return os.environ.get("LD_PRELOAD", "")

    assert "libfcsp" not in ray.get(preload.remote(), timeout=60)


@pytest.mark.slow  # a real Ray cluster
def test_eleven_tasks_of_8g_run_at_most_ten_at_once(cluster):
    refs = [grab.options(resources={"fcsp_mem_gb": 8}).remote(hold_s=1.5) for _ in range(11)]
    results = ray.get(refs, timeout=150)
    assert all(r["total"] == 8 * GIB and r["peak"] == 8 * GIB for r in results)
    events = sorted([(r["start"], 1) for r in results] + [(r["end"], -1) for r in results])
    running = most = 0
    for _, delta in events:
        running += delta
        most = max(most, running)
    assert most <= 10, most


@pytest.mark.slow  # a real Ray cluster
def test_reused_worker_never_runs_with_stale_caps(cluster):
    seen = []
    for gib in (8, 4, 8, 4, 2):
        r = ray.get(grab.options(resources={"fcsp_mem_gb": gib}).remote(), timeout=60)
        assert r["total"] == gib * GIB and r["peak"] == gib * GIB, (gib, r)
        seen.append((gib, r["pid"]))
    pids = {}
    for gib, pid in seen:
        pids.setdefault(pid, set()).add(gib)
    assert all(len(caps) == 1 for caps in pids.values()), f"a worker ran under two caps: {seen}"


@pytest.mark.slow  # a real Ray cluster
def test_actor_cap_and_reclaim_on_ray_kill_and_sigkill(cluster):
    region_dir = Path(cluster["FCSP_REGION_DIR"])

    def used(tenant: str) -> int:
        snap = region.read_snapshot(region_dir)
        return sum(g.used_bytes for t in snap.tenants if t.name == tenant for g in t.gpus)

    for kill in ("ray.kill", "SIGKILL"):
        actor = Holder.remote()
        pid, tenant, total = ray.get(actor.info.remote(), timeout=60)
        assert total == 4 * GIB
        assert ray.get(actor.take.remote(3)) == "ok"
        assert "OUT_OF_MEMORY" in ray.get(actor.take.remote(2))
        assert used(tenant) == 3 * GIB
        if kill == "ray.kill":
            ray.kill(actor)
        else:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda t=tenant: used(t) == 0, what=f"{tenant}'s memory reclaimed after {kill}")


@pytest.mark.slow  # a real Ray cluster
def test_node_daemon_runs_and_is_restarted(cluster):
    pid = wait_for(lambda: daemon_pid(cluster), what="the node daemon")
    os.kill(pid, signal.SIGKILL)
    new = wait_for(lambda: (p := daemon_pid(cluster)) and p != pid and p, what="a restarted node daemon")
    assert new != pid


# ------------------------------------------------------------------------------------------------------
# Fail closed: a task that asked for caps never runs uncapped (issue 14)
# ------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # a real Ray cluster
def test_task_whose_fcsp_init_fails_is_refused_not_uncapped(cluster, tmp_path):
    # A region directory libfcsp must refuse (world-writable), and the task's own attempt to opt out: the
    # plugin pins FCSP_ON_INIT_FAILURE=fail, so every allocation is refused instead of running uncapped.
    unsafe = tmp_path / "world-writable"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    env_vars = {"FCSP_REGION_DIR": str(unsafe), "FCSP_ON_INIT_FAILURE": "passthrough"}
    r = ray.get(
        grab.options(resources={"fcsp_mem_gb": 2}, runtime_env={"env_vars": env_vars}).remote(), timeout=60
    )
    assert r["peak"] == 0, f"a task whose fcsp init failed allocated {r['peak']} bytes uncapped"
    assert "CUDA_ERROR_NOT_PERMITTED" in r["error"], r


@pytest.mark.slow  # a real Ray cluster
def test_task_env_vars_cannot_widen_its_ray_cap(cluster):
    env_vars = {"FCSP_MEM_LIMIT": "64G", "FCSP_MEM_LIMIT_0": "64G"}
    r = ray.get(
        grab.options(resources={"fcsp_mem_gb": 2}, runtime_env={"env_vars": env_vars}).remote(), timeout=60
    )
    assert r["total"] == 2 * GIB and r["peak"] == 2 * GIB, r


# ------------------------------------------------------------------------------------------------------
# The driver hook and Ray's private API (issue 14)
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "cls", "name", "replacement"),
    [
        ("ray.remote_function", "RemoteFunction", "_remote", None),
        ("ray.actor", "ActorClass", "_remote", lambda self, *args, **options: None),  # another signature
        ("ray._private.utils", None, "get_runtime_env_info", None),
    ],
)
def test_hook_refuses_a_ray_whose_private_api_moved(monkeypatch, module, cls, name, replacement):
    import importlib

    from fcsp_ray import hook

    target = importlib.import_module(module)
    if cls is not None:
        target = getattr(target, cls)
    monkeypatch.setattr(hook, "_ENABLED", [])
    if replacement is None:
        monkeypatch.delattr(target, name)
    else:
        monkeypatch.setattr(target, name, replacement)
    with pytest.raises(hook.RayApiError, match=rf"{name} .*would run uncapped"):
        hook.enable()


def _fcsp_only_path(tmp_path: Path) -> str:
    """A directory holding only the installed fcsp packages (links), for another Python's PYTHONPATH."""
    import fcsp_slurm

    import fcsp_core

    only = tmp_path / "fcsp-only"
    only.mkdir()
    for module in (fcsp_core, fcsp_ray, fcsp_slurm):
        (only / module.__name__).symlink_to(Path(module.__file__).parent)
    return str(only)


OLDEST_RAY = "2.9.0"  # pyproject.toml: ray>=2.9 (2.9.0 is also the oldest with wheels for Python 3.11)
OLD_RAY_DRIVER = """
import json, os, ray, fcsp_ray
ray.init(num_cpus=1, resources=fcsp_ray.node_resources([8 << 30]), include_dashboard=False)
@ray.remote(num_cpus=0, resources={"fcsp_mem_gb": 2})
def total():
    from fcsp_ray.cuda import Cuda
    return Cuda().mem_info()[1], os.environ.get("FCSP_ON_INIT_FAILURE")
print(json.dumps({"ray": ray.__version__, "task": ray.get(total.remote(), timeout=120)}))
ray.shutdown()
"""


@pytest.mark.slow
def test_oldest_claimed_ray_caps_a_task(native, tmp_path):
    """Ray 2.9.0 in a throwaway venv (pip install: minutes; FCSP_TEST_OLD_RAY_VENV reuses one): the hook
    (through RAY_RUNTIME_ENV_HOOK) and the plugin cap a task there as with the newest Ray."""
    venv = Path(os.environ.get("FCSP_TEST_OLD_RAY_VENV") or tmp_path / "venv")
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"ray[default]=={OLDEST_RAY}"],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(
            f"cannot install ray {OLDEST_RAY} here: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
        )
    env = {
        **os.environ, **node_env(native, tmp_path, 1, "8G"), "PYTHONPATH": _fcsp_only_path(tmp_path),
        "FCSP_LIB_DIR": str(native.lib_dir),
    }  # fmt: skip
    out = subprocess.run(
        [str(python), "-c", OLD_RAY_DRIVER], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ray"] == OLDEST_RAY
    assert result["task"] == [2 * GIB, "fail"], result


# ------------------------------------------------------------------------------------------------------
# A node without NVML, and the demo (issue 14)
# ------------------------------------------------------------------------------------------------------


def _without_pynvml(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import pynvml` fails, as on a fresh install without nvidia-ml-py."""
    shadow = tmp_path / "no-pynvml"
    shadow.mkdir(exist_ok=True)
    (shadow / "pynvml.py").write_text("raise ImportError('No module named pynvml')\n")
    path = os.environ.get("PYTHONPATH")
    return {**_clean_env(), "PYTHONPATH": f"{shadow}:{path}" if path else str(shadow)}


def test_ray_resources_says_nvml_is_missing(tmp_path):
    out = subprocess.run(
        ["fcsp", "ray", "resources"], env=_without_pynvml(tmp_path), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 1 and out.stdout == ""
    assert "pip install nvidia-ml-py" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_ray_resources_on_a_node_without_gpus(native, tmp_path):
    env = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)}  # no libnvidia-ml.so.1 here: a CPU node
    out = subprocess.run(["fcsp", "ray", "resources"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout) == {}
    assert "no fcsp resources on this node" in out.stderr


def _clean_env() -> dict[str, str]:
    """os.environ without the module cluster's FCSP_*/RAY_* settings: a fresh shell's environment."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("FCSP_", "RAY_"))}


def _demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["fcsp", "demo", "--ray", "--sim"], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
def test_demo_ray_table_expected_refusal_and_one_verdict(native):
    out = _demo(_clean_env())
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("Every cap held:"), lines[-1]
    greedy = next(ln for ln in lines if ln.strip().startswith("greedy"))
    assert "refused past its cap, as expected" in greedy and "FAILED" not in out.stdout
    table = lines[next(i for i, ln in enumerate(lines) if ln.strip().startswith("TASK")) :]
    assert not any("INFO" in ln or "WARNING" in ln for ln in table), "a log line landed in the table"
    assert "Started a local Ray instance" not in out.stderr, "Ray's INFO line: on a terminal, among ours"
    assert "fcsp-sim-" not in out.stdout and ".log" not in out.stdout, "a path deleted at exit was printed"


@pytest.mark.slow
def test_demo_ray_says_why_the_node_daemon_did_not_start(native, tmp_path):
    out = _demo(_without_pynvml(tmp_path))
    assert out.returncode == 1
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("metrics:"))
    assert "the node daemon did not start" in line and "pip install nvidia-ml-py" in line, line
    assert out.stdout.strip().splitlines()[-1].startswith("fcsp demo --ray: UNEXPECTED: no node daemon")


# Last: it shuts the module's single-node cluster down.
@pytest.mark.slow
def test_two_nodes_advertise_their_gpus_and_run_daemons(native, tmp_path, cluster):
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the module's single node comes back for later tests only if they ask (none do)
    envs = [node_env(native, tmp_path / "a", 1, "80G"), node_env(native, tmp_path / "b", 2, "24G")]
    c = Cluster()
    try:
        for i, env in enumerate(envs):
            res = fcsp_ray.node_resources([int(env["FCSP_SIM_MEM"][:-1]) * GIB] * int(env["FCSP_SIM_GPUS"]))
            c.add_node(num_cpus=1, resources={**res, f"node{i}": 1}, env_vars=env)
        ray.init(address=c.address)
        fcsp_ray.enable()
        total = ray.cluster_resources()
        assert total["fcsp_mem_gb"] == 80 + 48 and total["fcsp_sm"] == 100 + 200
        for env in envs:
            wait_for(lambda e=env: daemon_pid(e), what=f"a daemon on {env['FCSP_REGION_DIR']}")
        r = ray.get(grab.options(resources={"fcsp_mem_gb": 8, "node1": 0.1}).remote(), timeout=120)
        assert r["total"] == 8 * GIB
    finally:
        ray.shutdown()
        c.shutdown()
