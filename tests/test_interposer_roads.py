"""Every road the driver offers past a memory cap (issue 12), walked by bench/gpu_bypass.c on the simulated
driver (the same program bench/gpu_bypass.sh runs on a real GPU): VMM handles released while mapped or
retained, pools that keep what they are given back, graph memory (explicit and captured), stream-ordered
allocation on another device's stream or pool, legacy IPC, many tiny allocations.

For each road: the simulator's memory of the tenant never passes the cap (after every step, and its peak),
fcsp's figure equals the simulator's after every step and when the process ends, and both are zero after it.
Without fcsp the same road passes the cap (it is a real road, not one the simulator closes by itself)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fcsp_core.region import read_snapshot

ROOT = Path(__file__).resolve().parent.parent
GiB = 1 << 30
MiB = 1 << 20


@pytest.fixture(scope="session")
def bypass(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for bench/gpu_bypass.c")
    exe = tmp_path_factory.mktemp("bypass") / "gpu_bypass"
    include = ROOT / "fcsp_core" / "native" / "include"
    subprocess.run(
        [cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(include), "-o", str(exe),
         str(ROOT / "bench" / "gpu_bypass.c"), "-ldl"],
        check=True,
    )  # fmt: skip
    return exe


def walk(bypass: Path, env: dict[str, str], *args: str) -> list[dict[str, str]]:
    """Run one road; its step lines as dicts (road, what, dev_index, rc, fcsp, dev, devtotal)."""
    done = subprocess.run([str(bypass), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"gpu_bypass {' '.join(args)} exited {done.returncode}\n{done.stdout}{done.stderr}"
    )
    steps = []
    for line in done.stdout.splitlines():
        words = line.split()
        if words and words[0] == "step":
            steps.append(dict(w.split("=", 1) for w in words[1:]))
    assert steps, done.stdout + done.stderr
    return steps


def check_road(steps: list[dict[str, str]], cap: int, dev_index: int = 0) -> None:
    """On device dev_index: the process never holds more than the cap, fcsp's charge is the driver's figure
    after every step, and nothing is left at the end."""
    mine = [s for s in steps if s["dev_index"] == str(dev_index) and s["road"] != "ipc-import"]
    for s in mine:
        assert int(s["dev"]) <= cap, f"the driver holds {s['dev']} bytes past the cap {cap} after {s}"
        assert int(s["fcsp"]) == int(s["dev"]), f"fcsp's charge differs from the driver's after {s}"
    assert mine[-1]["what"] == "end" and int(mine[-1]["dev"]) == 0 and int(mine[-1]["fcsp"]) == 0


def refused(steps: list[dict[str, str]], what: str) -> list[dict[str, str]]:
    return [s for s in steps if s["what"] == what and s["rc"] == "CUDA_ERROR_OUT_OF_MEMORY"]


def after_exit(env: dict[str, str], sim_stats, tenant: str, cap: int, dev: int = 0) -> None:
    live, peak = sim_stats(env, dev)
    assert live == 0
    assert peak <= cap, f"the simulated driver held {peak} bytes past the cap {cap}"
    assert read_snapshot(env["FCSP_REGION_DIR"]).tenant(tenant) is None, "the tenant left with its process"


def without_fcsp_passes_the_cap(bypass: Path, sim_env, *args: str, gpus: int = 1, cap: int = GiB) -> None:
    steps = walk(bypass, sim_env(gpus=gpus, mem="16G", preload=False), *args)
    assert max(int(s["dev"]) for s in steps if s["dev_index"] == "0") > cap, (
        "the road is not one past the cap"
    )


def test_vmm_handle_released_while_mapped_stays_charged(bypass, sim_env, sim_stats):
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="road-vmm")
    steps = walk(bypass, env, "vmm", "512")
    check_road(steps, GiB)
    made = [s for s in steps if s["what"] == "create-map-release"]
    assert [s["rc"] for s in made[:3]] == ["CUDA_SUCCESS", "CUDA_SUCCESS", "CUDA_ERROR_OUT_OF_MEMORY"]
    assert int(made[1]["fcsp"]) == GiB, "two released-but-mapped handles are still charged"
    unmaps = [s for s in steps if s["what"] == "unmap"]
    assert [int(s["fcsp"]) for s in unmaps] == [512 * MiB, 0], "the charge ends with the last mapping"
    after_exit(env, sim_stats, "road-vmm", GiB)
    without_fcsp_passes_the_cap(bypass, sim_env, "vmm", "512")


def test_vmm_retained_handle_keeps_its_memory_charged(bypass, sim_env, sim_stats):
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="road-retain")
    steps = walk(bypass, env, "vmm-retain", "512")
    check_road(steps, GiB)
    charge = {s["what"]: int(s["fcsp"]) for s in steps}
    assert charge["release"] == charge["retain"] == charge["unmap"] == 512 * MiB
    assert charge["release-retained"] == 0
    after_exit(env, sim_stats, "road-retain", GiB)


def test_pools_are_charged_for_what_they_keep(bypass, sim_env, sim_stats):
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="road-pool")
    steps = walk(bypass, env, "pool", "768")
    check_road(steps, GiB)
    cycles = [s for s in steps if s["what"] == "pool-alloc-free"]
    assert cycles[0]["rc"] == "CUDA_SUCCESS" and int(cycles[0]["fcsp"]) == 768 * MiB, (
        "a freed pool block is kept"
    )
    assert len(refused(steps, "pool-alloc-free")) == 5, "the other pools cannot grow while the first keeps it"
    assert refused(steps, "default-pool-alloc-free") and refused(steps, "plain-alloc")
    trims = [s for s in steps if s["what"] == "pool-trim"]
    assert int(trims[0]["fcsp"]) == 0, "a trim gives the pool's charge back"
    assert next(s for s in steps if s["what"] == "plain-alloc-after-trim")["rc"] == "CUDA_SUCCESS"
    destroys = [s for s in steps if s["what"] == "pool-destroy"]
    assert int(destroys[0]["fcsp"]) == 0, "destroying a pool that keeps memory gives it back"
    after_exit(env, sim_stats, "road-pool", GiB)
    without_fcsp_passes_the_cap(bypass, sim_env, "pool", "768")


def test_graph_memory_is_charged_from_launch_to_trim(bypass, sim_env, sim_stats):
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="road-graph")
    steps = walk(bypass, env, "graph", "768")
    check_road(steps, GiB)
    instantiated = [s for s in steps if s["what"] == "instantiate"]
    assert all(int(s["fcsp"]) == 0 for s in instantiated), "instantiation allocates nothing"
    launches = [s for s in steps if s["what"] == "launch"]
    assert [s["rc"] for s in launches] == ["CUDA_SUCCESS"] * 4, "graphs that free what they allocate share"
    assert all(int(s["fcsp"]) == 768 * MiB for s in launches), "charged from the first launch on"
    by = {s["what"]: s for s in steps}
    assert by["relaunch-first"]["rc"] == "CUDA_SUCCESS"
    assert int(by["destroy"]["fcsp"]) == 768 * MiB, (
        "the pool keeps the memory of destroyed graphs until a trim"
    )
    assert all(int(s["fcsp"]) == 0 for s in steps if s["what"] == "trim"), "a trim gives it back"
    outliving = [s["rc"] for s in steps if s["what"] == "outliving-launch"]
    assert outliving == ["CUDA_SUCCESS", "CUDA_ERROR_OUT_OF_MEMORY"], "a launch past the cap fails"
    assert by["capture"]["rc"] == "CUDA_SUCCESS" and int(by["capture"]["fcsp"]) == 0, (
        "a captured alloc is a node"
    )
    assert by["captured-launch"]["rc"] == "CUDA_SUCCESS" and int(by["captured-launch"]["fcsp"]) == 768 * MiB
    after_exit(env, sim_stats, "road-graph", GiB)
    without_fcsp_passes_the_cap(bypass, sim_env, "graph", "768")


def test_stream_ordered_memory_is_charged_to_the_streams_device(bypass, sim_env, sim_stats):
    # Only GPU0 is capped; GPU1's context is current while GPU0's stream and pool allocate.
    env = sim_env(gpus=2, mem="16G", FCSP_MEM_LIMIT_0="1G", FCSP_TENANT="road-stream")
    steps = walk(bypass, env, "stream", "600")
    check_road(steps, GiB, dev_index=0)
    assert all(int(s["fcsp"]) == 0 for s in steps if s["dev_index"] == "1"), "nothing charged to GPU1"
    assert [s["rc"] for s in steps if s["what"].startswith("gpu0-")] == ["CUDA_SUCCESS"] + [
        "CUDA_ERROR_OUT_OF_MEMORY"
    ] * 3
    after_exit(env, sim_stats, "road-stream", GiB)
    assert sim_stats(env, 1)[1] == 0, "GPU1 never held any of it"
    without_fcsp_passes_the_cap(bypass, sim_env, "stream", "600", gpus=2)


def test_legacy_ipc_memory_stays_the_exporters(bypass, sim_env, sim_stats):
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="road-ipc")
    steps = walk(bypass, env, "ipc", "768")
    check_road(steps, GiB)
    imported = [s for s in steps if s["road"] == "ipc-import"]
    assert [s["rc"] for s in imported] == ["CUDA_SUCCESS", "CUDA_SUCCESS"]
    for s in imported:
        assert int(s["dev"]) == 0, "the driver charges the importer nothing"
        assert int(s["fcsp"]) == 768 * MiB, "the tenant is charged once, by the exporter"
        assert int(s["devtotal"]) == 768 * MiB
    after_exit(env, sim_stats, "road-ipc", GiB)


def test_tiny_allocations_are_charged_as_the_driver_rounds_them(bypass, sim_env, sim_stats):
    cap = 32 * MiB
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="32M", FCSP_TENANT="road-tiny")
    steps = walk(bypass, env, "granularity", "100000")
    check_road(steps, cap)
    tiny = next(s for s in steps if s["what"] == "tiny-allocs")
    assert tiny["rc"] == "CUDA_ERROR_OUT_OF_MEMORY" and int(tiny["fcsp"]) == cap, (
        "1-byte allocations fill the cap"
    )
    after_exit(env, sim_stats, "road-tiny", cap)


def test_a_gpu_past_the_regions_sixteen_is_refused_not_uncapped(sim_env, run_probe, parse_probe, tmp_path):
    """A node region tracks 16 GPUs. Two simulated nodes of 8 GPUs fill it; a process on a third node's GPU
    asked for a cap that fcsp cannot keep there: its allocations are refused with one line, never uncapped."""
    envs = []
    for name in ("node-a", "node-b", "node-c"):
        sim_dir = tmp_path / name
        sim_dir.mkdir(mode=0o700)
        envs.append(sim_env(gpus=8, FCSP_SIM_DIR=str(sim_dir), FCSP_MEM_LIMIT="1G", FCSP_TENANT="many"))
    every_gpu = [w for d in range(8) for w in ("init", str(d), "alloc", "1M")]
    for env in envs[:2]:
        rows = parse_probe(run_probe(env, *every_gpu).stdout)
        assert all(r["status"] == "ok" for r in rows if r["cmd"] == "alloc")
    done = run_probe(envs[2], "init", "0", "alloc", "1M", "alloc", "1M", "stats")
    rows = parse_probe(done.stdout)
    assert [r.get("err") for r in rows if r["cmd"] == "alloc"] == ["CUDA_ERROR_OUT_OF_MEMORY"] * 2
    assert int(next(r for r in rows if r["cmd"] == "stats")["live_bytes"]) == 0, "the driver was never asked"
    said = [line for line in done.stderr.splitlines() if "cannot identify CUDA device 0" in line]
    assert len(said) == 1 and "refused" in said[0], done.stderr


def test_mig_instances_are_capped_each_on_its_own(sim_env, run_probe, parse_probe, sim_stats):
    """On MIG, cuDeviceGetUuid gives every instance its GPU's UUID; fcsp identifies devices by
    cuDeviceGetUuid_v2 (the instance's own), so each instance has its own cap and its own total, never one
    counter shared by instances that are separate memories."""
    env = sim_env(gpus=2, mem="4G", FCSP_SIM_MIG="1", FCSP_MEM_LIMIT="1G", FCSP_TENANT="mig")
    rows = parse_probe(
        run_probe(env, "init", "0", "alloc", "800M", "init", "1", "alloc", "800M", "alloc", "800M").stdout
    )
    assert [r["status"] for r in rows if r["cmd"] == "alloc"] == ["ok", "ok", "fail"]
    assert sim_stats(env, 0)[1] <= GiB and sim_stats(env, 1)[1] <= GiB
