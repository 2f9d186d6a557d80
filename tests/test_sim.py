"""The simulated driver (sim/libcuda.so.1, sim/libnvidia-ml.so.1) driven by fcsp-probe, an unmodified-style
driver API program: device queries, every allocation family, OOM, cuGetProcAddress, kernel time and
contention, reaping of killed processes, pynvml, bad configuration.

Uses FCSP_LIB_DIR (an installed lib dir holding sim/ and fcsp-probe) when set, else builds the targets with
cmake.
"""

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
GiB = 1 << 30


@pytest.fixture(scope="session")
def sim_build(tmp_path_factory):
    """(sim_dir, probe): the directory with libcuda.so.1/libnvidia-ml.so.1, and fcsp-probe."""
    lib_dir = os.environ.get("FCSP_LIB_DIR")
    if lib_dir:
        sim_dir, probe = Path(lib_dir) / "sim", Path(lib_dir) / "fcsp-probe"
    else:
        if shutil.which("cmake") is None:
            pytest.skip("cmake is needed to build the simulated driver")
        build = tmp_path_factory.mktemp("simbuild")
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build)], check=True, capture_output=True)
        subprocess.run(
            [
                "cmake",
                "--build",
                str(build),
                "--target",
                "fcsp_sim_cuda",
                "fcsp_sim_nvml",
                "fcsp_probe",
                "-j2",
            ],
            check=True,
            capture_output=True,
        )
        sim_dir = build / "fcsp_core" / "native" / "sim"
        probe = build / "fcsp_core" / "native" / "tools" / "fcsp-probe"
    assert (sim_dir / "libcuda.so.1").exists() and (sim_dir / "libnvidia-ml.so.1").exists() and probe.exists()
    return sim_dir, probe


@pytest.fixture
def sim(sim_build, tmp_path):
    return Sim(sim_build[0], sim_build[1], tmp_path)


def fields(line):
    """'alloc ok kind=mem size=5' -> {'cmd': 'alloc', 'status': 'ok', 'kind': 'mem', 'size': '5'}"""
    words = line.split()
    out = {"cmd": words[0], "status": words[1] if len(words) > 1 and "=" not in words[1] else None}
    out.update(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line)))
    return out


class Sim:
    def __init__(self, sim_dir, probe, state_dir):
        self.sim_dir, self.probe, self.state_dir = sim_dir, probe, state_dir
        self.env = {
            "LD_LIBRARY_PATH": str(sim_dir),
            "FCSP_SIM_DIR": str(state_dir),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }

    def environ(self, extra=None):
        env = dict(self.env)
        env.update(extra or {})
        return env

    def run(self, *args, env=None, check=True, timeout=30):
        p = subprocess.run(
            [str(self.probe), *args], env=self.environ(env), capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        return p

    def lines(self, *args, **kw):
        return [fields(line) for line in self.run(*args, **kw).stdout.splitlines()]

    def spawn(self, *args, env=None):
        return subprocess.Popen(
            [str(self.probe), *args],
            env=self.environ(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stats(self, dev=0):
        """(live, peak) of dev from fcspSimStats of the simulated libcuda.so.1, loaded here (no cuInit)."""
        lib = ctypes.CDLL(str(self.sim_dir / "libcuda.so.1"))
        live, peak = ctypes.c_ulonglong(), ctypes.c_ulonglong()
        old = os.environ.get("FCSP_SIM_DIR")
        os.environ["FCSP_SIM_DIR"] = str(self.state_dir)
        try:
            assert lib.fcspSimStats(dev, ctypes.byref(live), ctypes.byref(peak)) == 0
        finally:
            if old is None:
                del os.environ["FCSP_SIM_DIR"]
            else:
                os.environ["FCSP_SIM_DIR"] = old
        return live.value, peak.value


def wait_line(proc, prefix, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return fields(line)
    raise AssertionError(f"no '{prefix}' line from the probe")


def test_device_queries(sim):
    env = {"FCSP_SIM_GPUS": "3", "FCSP_SIM_MEM": "8G", "FCSP_SIM_SMS": "100"}
    init, dev, meminfo, total = sim.lines("init", "2", "device", "meminfo", "totalmem", env=env)
    assert init["status"] == "ok" and init["dev"] == "2" and int(init["total_bytes"]) == 8 * GiB
    assert (
        dev["count"] == "3" and dev["sms"] == "100" and dev["cc"] == "9.0" and dev["threads_per_sm"] == "2048"
    )
    assert dev["name"] == "fcsp_simulated_GPU"
    assert re.fullmatch(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", dev["uuid"])
    assert int(meminfo["free_bytes"]) == int(meminfo["total_bytes"]) == 8 * GiB
    assert int(total["total_bytes"]) == 8 * GiB
    # UUIDs are those of the state file: a second process sees the same ones
    assert sim.lines("init", "2", "device", env=env)[1]["uuid"] == dev["uuid"]
    bad = sim.run("init", "3", env=env, check=False)
    assert bad.returncode == 1 and "init fail err=CUDA_ERROR_INVALID_DEVICE" in bad.stdout


KINDS = ["mem", "pitch", "managed", "async", "pool", "vmm", "array", "array3d", "mipmap"]


@pytest.mark.parametrize("kind", KINDS)
def test_alloc_family_is_counted_and_released(sim, kind):
    out = sim.lines(
        "init", "alloc", "3M", kind, "stats", "alloc", "1.5M", kind, "stats", "free", "all", "stats"
    )
    a1, s1, a2, s2, freed, s3 = out[1:]
    assert a1["status"] == "ok" and a2["status"] == "ok", out
    size1, size2 = int(a1["size"]), int(a2["size"])
    if kind != "mipmap":  # a mipmap chain of the largest square that fits is smaller
        assert size1 >= 3 * MiB and size2 >= 1536 * 1024
    if kind == "vmm":
        assert size1 == 4 * MiB and size2 == 2 * MiB  # rounded up to the 2 MiB granularity
    assert freed["count"] == "2" and int(s3["live_bytes"]) == 0
    if kind in ("async", "pool"):
        # a pool grows by whole 2 MiB pages, at least 32 MiB (as the H200's driver does): the second
        # allocation comes from what the first reserved
        assert int(s1["live_bytes"]) == int(s2["live_bytes"]) == int(s2["peak_bytes"]) == 32 * MiB
        assert sim.stats() == (0, 32 * MiB)
        return
    assert int(s1["live_bytes"]) == size1
    assert int(s2["live_bytes"]) == size1 + size2 == int(s2["peak_bytes"])
    assert sim.stats() == (0, size1 + size2)


def test_oom_at_configured_size_and_meminfo(sim):
    env = {"FCSP_SIM_MEM": "1G"}
    out = sim.lines(
        "init",
        "fill",
        "mem",
        "256M",
        "meminfo",
        "free",
        "all",
        "alloc",
        "1025M",
        "alloc",
        "1G",
        "alloc",
        "1",
        "meminfo",
        "alloc",
        "0",
        env=env,
    )
    fill, meminfo, _, over, full, one_more, meminfo2, zero = out[1:]
    assert fill["allocated_bytes"] == str(GiB) and fill["count"] == "4"
    assert fill["err"] == "CUDA_ERROR_OUT_OF_MEMORY"
    assert meminfo["free_bytes"] == "0"
    assert over["status"] == "fail" and over["err"] == "CUDA_ERROR_OUT_OF_MEMORY"
    assert full["status"] == "ok"
    assert one_more["err"] == "CUDA_ERROR_OUT_OF_MEMORY"
    assert meminfo2["free_bytes"] == "0" and meminfo2["total_bytes"] == str(GiB)
    assert zero["status"] == "fail" and zero["err"] == "CUDA_ERROR_INVALID_VALUE"


def test_memory_is_node_wide_and_killed_process_is_reaped(sim):
    env = {"FCSP_SIM_MEM": "4G"}
    holder = sim.spawn(
        "init", "alloc", "1G", "alloc", "512M", "vmm", "alloc", "256M", "pool", "hold", env=env
    )
    try:
        wait_line(holder, "alloc ok kind=pool")
        assert sim.stats()[0] == GiB + 768 * MiB
        other = sim.lines("init", "meminfo", "alloc", "2.5G", env=env)
        assert int(other[1]["free_bytes"]) == 4 * GiB - (GiB + 768 * MiB)
        assert other[2]["err"] == "CUDA_ERROR_OUT_OF_MEMORY"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert sim.stats()[0] == 0  # the driver frees a dead process's memory
    assert sim.lines("init", "alloc", "4G", env=env)[1]["status"] == "ok"


def test_pool_caches_until_trim_or_destroy(sim):
    out = sim.lines(
        "init",
        "alloc",
        "10M",
        "pool",
        "alloc",
        "6M",
        "pool",
        "free",
        "stats",
        "pooltrim",
        "2M",
        "stats",
        "free",
        "stats",
    )
    after_free, trim, after_trim, _, end = out[4:]
    # the pool grew by 32 MiB (its least growth) for the 10M, served the 6M from that, and keeps the freed 6M
    assert int(after_free["live_bytes"]) == 32 * MiB
    assert trim["reserved_bytes"] == str(10 * MiB) and trim["used_bytes"] == str(10 * MiB)
    assert int(after_trim["live_bytes"]) == 10 * MiB
    assert int(end["live_bytes"]) == 0  # the last free trims and destroys the pool


@pytest.mark.parametrize(
    ("version", "name", "symbol"),
    [
        (11030, "cuMemAlloc", "cuMemAlloc_v2"),
        (11030, "cuGetProcAddress", "cuGetProcAddress"),
        (12000, "cuGetProcAddress", "cuGetProcAddress_v2"),
        (12000, "cuEventElapsedTime", "cuEventElapsedTime"),
        (13000, "cuEventElapsedTime", "cuEventElapsedTime_v2"),
        (12080, "cuCtxGetDevice", "cuCtxGetDevice"),
        (13000, "cuCtxGetDevice", "cuCtxGetDevice_v2"),
        (13000, "cuCtxCreate", "cuCtxCreate_v4"),
        (11030, "cuCtxCreate", "cuCtxCreate_v2"),
        (12000, "cuDeviceGetUuid", "cuDeviceGetUuid_v2"),
        (13000, "cuMemcpyHtoD", "cuMemcpyHtoD_v2"),
        (12080, "cuStreamBeginCapture", "cuStreamBeginCapture_v2"),
        (11030, "cuStreamGetCaptureInfo", "cuStreamGetCaptureInfo_v2"),
        (13000, "cuStreamGetCaptureInfo", "cuStreamGetCaptureInfo_v3"),
        (11080, "cuGraphAddKernelNode", "cuGraphAddKernelNode"),
        (12000, "cuGraphAddKernelNode", "cuGraphAddKernelNode_v2"),
        (11030, "cuGraphInstantiate", "cuGraphInstantiate_v2"),
        (13000, "cuGraphInstantiateWithFlags", "cuGraphInstantiateWithFlags"),
        (13000, "cuGraphLaunch", "cuGraphLaunch"),
    ],
)
def test_get_proc_address_versions(sim, version, name, symbol):
    (res,) = sim.lines(f"--api=proc:{version}", "resolve", name)
    assert res["status"] == "ok" and res["symbol"] == symbol, res
    assert Path(res["lib"]).resolve() == (sim.sim_dir / "libcuda.so.1").resolve()


def test_get_proc_address_per_thread_and_failures(sim):
    out = sim.lines(
        "--ptsz",
        "resolve",
        "cuLaunchKernel",
        "resolve",
        "cuMemcpyHtoD",
        "resolve",
        "cuMemAlloc",
        "resolve",
        "cuMemAllocAsync",
        "resolve",
        "cuNoSuchFunction",
    )
    assert [r.get("symbol") for r in out[:4]] == [
        "cuLaunchKernel_ptsz",
        "cuMemcpyHtoD_v2_ptds",
        "cuMemAlloc_v2",
        "cuMemAllocAsync_ptsz",
    ]
    graph_pt = sim.lines(
        "--ptsz", "resolve", "cuStreamBeginCapture", "resolve", "cuGraphLaunch", "resolve", "cuGraphDestroy"
    )
    assert [r.get("symbol") for r in graph_pt] == [
        "cuStreamBeginCapture_v2_ptsz",
        "cuGraphLaunch_ptsz",
        "cuGraphDestroy",
    ]
    assert out[4]["status"] == "fail" and out[4]["err"] == "CUDA_ERROR_NOT_FOUND"
    assert "query=SYMBOL_NOT_FOUND" in sim.run("resolve", "cuNoSuchFunction").stdout
    too_new = sim.lines(
        "--api=proc:12000",
        "resolve",
        "cuCtxSynchronize",
        "resolve",
        "cuLaunchKernelEx",
        "resolve",
        "cuFuncGetName",
    )
    assert too_new[0]["symbol"] == "cuCtxSynchronize"
    assert too_new[2]["status"] == "fail" and too_new[2]["err"] == "CUDA_ERROR_NOT_FOUND"
    assert "query=VERSION_NOT_SUFFICIENT" in sim.run("--api=proc:12000", "resolve", "cuFuncGetName").stdout


@pytest.mark.parametrize(
    "api", [["--api=dlsym"], ["--api=dlsym", "--ptsz"], ["--ptsz"], ["--api=proc:11080"]]
)
def test_api_modes_run_the_same_program(sim, api):
    out = sim.lines(
        *api,
        "init",
        "alloc",
        "1M",
        "async",
        "alloc",
        "2M",
        "launch",
        "noop",
        "8",
        "64",
        "3",
        "free",
        "all",
        "stats",
        "graph",
        "noop",
        "8",
        "64",
        "2",
        "3",
    )
    assert [o["status"] for o in out[:5]] == ["ok"] * 5, out
    assert out[5]["live_bytes"] == "0"
    assert out[6]["status"] == "ok" and out[6]["kernels"] == "2" and out[6]["count"] == "3", out


def test_kernel_time_model(sim):
    env = {"FCSP_SIM_KERNEL_US": "spin=2000,noop=1,default=50", "FCSP_SIM_SMS": "10"}
    # 10 SMs x min(32, 2048/256)=8 blocks per SM = 80 blocks per wave
    out = sim.lines(
        "init",
        "launch",
        "spin",
        "80",
        "256",
        "40",
        "launch",
        "spin",
        "81",
        "256",
        "20",
        "launch",
        "work",
        "160",
        "1024",
        "10",
        "launch",
        "noop",
        "1",
        "32",
        "100",
        env=env,
    )
    one_wave, two_waves, work, noop = (float(o["elapsed_ms"]) for o in out[1:])
    assert 80 * 0.95 <= one_wave <= 80 * 1.25  # 40 x 1 wave x 2 ms
    assert 80 * 0.95 <= two_waves <= 80 * 1.25  # 20 x 2 waves x 2 ms
    assert 4 * 0.95 <= work <= 4 * 2  # 1024 threads: 2 blocks per SM, 160 blocks = 8 waves; 10 x 8 x 50 us
    assert noop < 5


def test_processes_contend_for_sms(sim):
    env = {"FCSP_SIM_KERNEL_US": "spin=2000"}
    args = ("init", "launch", "spin", "264", "1024", "60")  # full GPU, 60 x 2 ms
    alone = float(sim.lines(*args, env=env)[1]["elapsed_ms"])
    assert 120 * 0.95 <= alone <= 120 * 1.25
    procs = [sim.spawn(*args, env=env) for _ in range(2)]
    both = [float(wait_line(p, "launch")["elapsed_ms"]) for p in procs]
    for p in procs:
        p.communicate()
    assert all(1.6 * alone <= t <= 2.6 * alone for t in both), (alone, both)
    # half-GPU kernels of two processes fit side by side
    half = ("init", "launch", "spin", "132", "1024", "30")
    procs = [sim.spawn(*half, env=env) for _ in range(2)]
    both = [float(wait_line(p, "launch")["elapsed_ms"]) for p in procs]
    for p in procs:
        p.communicate()
    assert all(t <= 60 * 1.4 for t in both), both


def test_graph_takes_its_kernels_time(sim):
    """A captured graph of K kernels launched N times takes K x N times one kernel, like K x N launches."""
    env = {"FCSP_SIM_KERNEL_US": "spin=2000"}
    out = sim.lines(
        "init",
        *("launch", "spin", "264", "1024", "1"),
        *("launch", "spin", "264", "1024", "40"),
        *("graph", "spin", "264", "1024", "8", "5"),
        *("graph", "spin", "264", "1024", "1", "10"),
        env=env,
    )
    one, forty, graph8x5, graph1x10 = out[1:]
    single = float(one["elapsed_ms"])
    assert 2 * 0.95 <= single <= 2 * 1.25
    assert graph8x5["status"] == "ok" and graph8x5["kernels"] == "8" and graph8x5["count"] == "5"
    assert 40 * single * 0.95 <= float(graph8x5["elapsed_ms"]) <= 40 * single * 1.1, (single, graph8x5)
    plain = float(forty["elapsed_ms"])
    assert abs(float(graph8x5["elapsed_ms"]) - plain) <= 0.05 * plain
    assert 10 * single * 0.95 <= float(graph1x10["elapsed_ms"]) <= 10 * single * 1.1, (single, graph1x10)
    assert float(graph8x5["wall_ms"]) >= float(graph8x5["elapsed_ms"]) * 0.95


def test_graph_shares_sms_with_other_processes(sim):
    """A graph's kernels take their place on the shared SM timeline like plain launches: against another
    process's full-GPU kernels, both take about twice as long."""
    env = {"FCSP_SIM_KERNEL_US": "spin=2000"}
    graph = ("init", "graph", "spin", "264", "1024", "10", "6")  # full GPU, 60 x 2 ms
    plain = ("init", "launch", "spin", "264", "1024", "60")
    alone = float(sim.lines(*graph, env=env)[1]["elapsed_ms"])
    assert 120 * 0.95 <= alone <= 120 * 1.25
    procs = [sim.spawn(*graph, env=env), sim.spawn(*plain, env=env)]
    both = [
        float(wait_line(p, prefix)["elapsed_ms"])
        for p, prefix in zip(procs, ("graph", "launch"), strict=True)
    ]
    for p in procs:
        p.communicate()
    assert all(1.6 * alone <= t <= 2.6 * alone for t in both), (alone, both)
    # two graphs of half-GPU kernels fit side by side
    half = ("init", "graph", "spin", "132", "1024", "10", "3")
    procs = [sim.spawn(*half, env=env) for _ in range(2)]
    both = [float(wait_line(p, "graph")["elapsed_ms"]) for p in procs]
    for p in procs:
        p.communicate()
    assert all(t <= 60 * 1.4 for t in both), both


def test_capture_records_instead_of_running(sim):
    """Launches on a capturing stream return at once and cost no simulated time: 50 kernels of 200 ms each are
    captured in well under a second, and a graph that is never launched leaves the timing events 0 apart."""
    env = {"FCSP_SIM_KERNEL_US": "spin=200000"}
    t0 = time.monotonic()
    _, graph = sim.lines("init", "graph", "spin", "264", "1024", "50", "0", env=env)
    assert time.monotonic() - t0 < 5
    assert graph["status"] == "ok" and graph["kernels"] == "50", graph
    assert float(graph["capture_ms"]) < 200 and float(graph["wall_ms"]) < 200
    assert float(graph["elapsed_ms"]) < 1


def test_graph_capture_corner_cases(sim, tmp_path):
    """tests/native/sim_graph_check.c: capture rules (legacy stream, invalidation by synchronisation, implicit
    legacy-stream use, threads, per-thread stream), GetCaptureInfo v1-v3, node queries, the instantiate forms,
    hand-built graphs, handle lifetimes and graph time."""
    exe = tmp_path / "sim_graph_check"
    include = ROOT / "fcsp_core" / "native" / "include"
    src = ROOT / "tests" / "native" / "sim_graph_check.c"
    cc = [_cc(), "-std=c11", "-Wall", "-Werror", "-pthread", "-I", str(include)]
    subprocess.run([*cc, "-o", str(exe), str(src), "-ldl"], check=True)
    env = sim.environ({"FCSP_SIM_KERNEL_US": "spin=2000"})
    p = subprocess.run(
        [str(exe), str(sim.sim_dir / "libcuda.so.1")], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("ok ") >= 90 and "FAIL" not in p.stdout


def test_sim_export_prototypes_match_cuda_h(tmp_path):
    """Every entry of sim_exports.h has the prototype cuda.h gives its symbol, and the default-stream entries
    are cudaTypedefs.h's PFN_<base>_v<since> (tests/native/sim_exports_abi.c; compiling is the test)."""
    candidates = [os.environ.get("FCSP_CUDA_INCLUDE"), "/usr/local/cuda/include", "/usr/include"]
    found = [Path(d) for d in candidates if d and (Path(d) / "cuda.h").is_file()]
    cuda_inc = next((d for d in found if (d / "cudaTypedefs.h").is_file()), None)
    if cuda_inc is None:
        pytest.skip("NVIDIA's cuda.h/cudaTypedefs.h not found ($FCSP_CUDA_INCLUDE, /usr/local/cuda/include)")
    native = ROOT / "fcsp_core" / "native"
    p = subprocess.run(
        [
            _cc(),
            "-std=gnu11",
            "-fsyntax-only",
            f"-I{cuda_inc}",
            f"-I{native / 'include'}",
            f"-I{native / 'sim'}",
            str(ROOT / "tests" / "native" / "sim_exports_abi.c"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0, "\n".join(re.findall(r"error: ([^\n]*)", p.stderr)) or p.stderr[-6000:]


def test_nccl_like_kernel_name(sim):
    """The probe's module has an NCCL-like entry; cuFuncGetName returns entry names as they are."""
    name = "ncclDevKernel_AllReduce_Sum_f32_RING_LL"
    out = sim.lines("init", "funcname", name, "funcname", "spin", "launch", name, "8", "256", "3")
    assert out[1]["status"] == "ok" and out[1]["name"] == name, out
    assert out[2]["name"] == "spin"
    assert out[3]["status"] == "ok" and out[3]["name"] == name
    too_old = sim.lines("--api=proc:12000", "init", "funcname", name, check=False)
    assert too_old[1]["status"] == "fail" and too_old[1]["err"] == "CUDA_ERROR_NOT_FOUND"


def test_launchloop_counts(sim):
    """launchloop runs for its wall time; with 2 ms kernels it manages about one launch per 2 ms (the queue is
    at most 64 deep), and two processes sharing the GPU get about half each."""
    env = {"FCSP_SIM_KERNEL_US": "spin=2000,noop=1"}
    _, spin, noop = sim.lines(
        "init", "launchloop", "spin", "264", "1024", "0.6", "launchloop", "noop", "1", "32", "0.2", env=env
    )
    launches, wall = int(spin["launches"]), float(spin["wall_ms"])
    assert spin["status"] == "ok" and 600 <= wall <= 600 + 64 * 2 + 150, spin
    assert abs(launches * 2 - wall) <= 0.1 * wall, spin  # the GPU was busy the whole time
    assert int(noop["launches"]) > 1000, noop
    alone = launches / wall
    args = ("init", "launchloop", "spin", "264", "1024", "1.5")
    procs = [sim.spawn(*args, env=env) for _ in range(2)]
    rates = []
    for p in procs:
        line = wait_line(p, "launchloop", timeout=15)
        rates.append(int(line["launches"]) / float(line["wall_ms"]))
        p.communicate()
    assert all(0.35 * alone <= r <= 0.7 * alone for r in rates), (alone, rates)


def test_stress_threads_keep_counts_exact(sim):
    env = {"FCSP_SIM_MEM": "1G"}
    out = sim.lines("init", "stress", "4", "300", "200M", "stats", env=env)
    stress, stats = out[1:]
    assert stress["status"] == "ok" and int(stress["allocs"]) > 0
    assert int(stats["live_bytes"]) == 0 and int(stats["peak_bytes"]) <= GiB


def test_pynvml_lists_devices_memory_and_processes(sim):
    pytest.importorskip("pynvml")
    env = {"FCSP_SIM_GPUS": "2", "FCSP_SIM_MEM": "16G"}
    holder = sim.spawn("init", "1", "device", "alloc", "3G", "hold", env=env)
    try:
        uuid = wait_line(holder, "device")["uuid"]
        wait_line(holder, "alloc ok")
        script = textwrap.dedent(
            """
            import json, pynvml as n
            n.nvmlInit()
            out = {"driver": n.nvmlSystemGetDriverVersion(), "count": n.nvmlDeviceGetCount(), "devs": []}
            for i in range(n.nvmlDeviceGetCount()):
                h = n.nvmlDeviceGetHandleByIndex(i)
                m = n.nvmlDeviceGetMemoryInfo(h)
                m2 = n.nvmlDeviceGetMemoryInfo(h, version=n.nvmlMemory_v2)
                procs = [(p.pid, p.usedGpuMemory) for p in n.nvmlDeviceGetComputeRunningProcesses(h)]
                out["devs"].append({"name": n.nvmlDeviceGetName(h), "uuid": n.nvmlDeviceGetUUID(h),
                                    "total": m.total, "used": m.used, "free": m.free, "used2": m2.used,
                                    "procs": procs})
            n.nvmlShutdown()
            print(json.dumps(out))
            """
        )
        p = subprocess.run(
            [sys.executable, "-c", script], env=sim.environ(env), capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr
        info = json.loads(p.stdout)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert info["count"] == 2 and info["driver"] == "580.0-fcsp-sim"
    d0, d1 = info["devs"]
    assert d0["name"] == d1["name"] == "fcsp simulated GPU"
    assert d1["uuid"] == uuid and d0["uuid"] != uuid
    assert d0["total"] == 16 * GiB and d0["used"] == 0 and d0["procs"] == []
    assert d1["used"] == d1["used2"] == 3 * GiB and d1["free"] == 13 * GiB
    assert d1["procs"] == [[holder.pid, 3 * GiB]]


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("FCSP_SIM_GPUS", "9"),
        ("FCSP_SIM_GPUS", "two"),
        ("FCSP_SIM_MEM", "80X"),
        ("FCSP_SIM_MEM", "-1G"),
        ("FCSP_SIM_SMS", "0"),
        ("FCSP_SIM_KERNEL_US", "spin=fast"),
        ("FCSP_SIM_KERNEL_US", "=5"),
        ("FCSP_SIM_DIR", "/nonexistent/fcsp-sim"),
    ],
)
def test_bad_env_gives_one_clear_line(sim, var, value):
    p = sim.run("init", "alloc", "1M", env={var: value}, check=False)
    assert p.returncode == 1
    assert p.stdout.splitlines()[0] == "init fail err=CUDA_ERROR_INVALID_VALUE"
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and var in err[0] and value in err[0] and "expected" in err[0], err
    script = "import pynvml as n\ntry:\n    n.nvmlInit()\nexcept n.NVMLError as e:\n    print(e.value)\n"
    pytest.importorskip("pynvml")
    q = subprocess.run(
        [sys.executable, "-c", script], env=sim.environ({var: value}), capture_output=True, text=True
    )
    assert q.stdout.strip() == "2" and len(q.stderr.strip().splitlines()) == 1  # NVML_ERROR_INVALID_ARGUMENT


def test_state_file_is_private_and_checked(sim):
    sim.run("init")
    state = sim.state_dir / "sim-state"
    assert state.stat().st_mode & 0o777 == 0o600
    other = sim.state_dir / "other"
    other.mkdir()
    (other / "sim-state").write_bytes(b"not a simulator state")
    p = sim.run("init", env={"FCSP_SIM_DIR": str(other)}, check=False)
    assert p.returncode == 1 and "init fail" in p.stdout and len(p.stderr.strip().splitlines()) == 1


def test_state_file_of_another_layout_is_refused(sim):
    """A state file of the right size and magic but another build's layout (its fingerprint, the 8 bytes after
    the magic and the size) is refused with one line, not misread."""
    sim.run("init")
    state = sim.state_dir / "sim-state"
    data = bytearray(state.read_bytes())
    data[16] ^= 0xFF
    state.write_bytes(bytes(data))
    p = sim.run("init", check=False)
    assert p.returncode == 1 and "init fail" in p.stdout
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "another version of the simulator" in err[0], err


def test_private_state_without_dir(sim_build):
    sim_dir, probe = sim_build
    env = {"LD_LIBRARY_PATH": str(sim_dir), "FCSP_SIM_MEM": "2G"}
    p = subprocess.run(
        [str(probe), "init", "alloc", "1G", "stats", "free", "stats"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    lines = [fields(line) for line in p.stdout.splitlines()]
    assert lines[2]["live_bytes"] == str(GiB) and lines[4]["live_bytes"] == "0"


def test_probe_usage(sim):
    assert sim.run("bogus", check=False).returncode == 2
    assert sim.run("alloc", check=False).returncode == 2
    assert sim.run("graph", "spin", "1", "32", "2", check=False).returncode == 2
    assert sim.run("launchloop", "spin", "1", "32", "0", check=False).returncode == 2
    assert sim.run("funcname", check=False).returncode == 2
    assert "usage" in sim.run("--help").stdout


def _cc():
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        pytest.skip("a C compiler is needed")
    return cc


def test_api_corner_cases(sim, tmp_path):
    """tests/native/sim_api_check.c: contexts, double free, VMM and module errors, cooperative limits,
    events."""
    exe = tmp_path / "sim_api_check"
    include = ROOT / "fcsp_core" / "native" / "include"
    src = ROOT / "tests" / "native" / "sim_api_check.c"
    subprocess.run(
        [_cc(), "-std=c11", "-Wall", "-Werror", "-I", str(include), "-o", str(exe), str(src), "-ldl"],
        check=True,
    )
    env = sim.environ({"FCSP_SIM_GPUS": "2", "FCSP_SIM_KERNEL_US": "spin=20000"})
    p = subprocess.run(
        [str(exe), str(sim.sim_dir / "libcuda.so.1")], env=env, capture_output=True, text=True, timeout=30
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("ok ") >= 40


def test_own_symbols_win_over_preloaded_wrappers(sim, tmp_path):
    """An interposer that defines cuMemAlloc_v2/cuMemFree_v2 must get the simulator's functions from
    cuGetProcAddress, and the simulator's cuMemFree must not call back into the interposer."""
    src = tmp_path / "wrap.c"
    src.write_text(
        "#include <stddef.h>\n"
        "int cuMemAlloc_v2(unsigned long long *p, size_t n);\n"
        "int cuMemAlloc_v2(unsigned long long *p, size_t n) { (void)p; (void)n; return 999; }\n"
        "int cuMemFree_v2(unsigned long long p);\n"
        "int cuMemFree_v2(unsigned long long p) { (void)p; return 999; }\n"
    )
    so = tmp_path / "wrap.so"
    subprocess.run([_cc(), "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    out = sim.lines("resolve", "cuMemAlloc", "resolve", "cuMemFree", env={"LD_PRELOAD": str(so)})
    for res in out:
        assert Path(res["lib"]).resolve() == (sim.sim_dir / "libcuda.so.1").resolve(), res
