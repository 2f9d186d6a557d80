"""Every road the driver offers past a memory cap (issue 12), walked by bench/gpu_bypass.c on the simulated
driver (the same program bench/gpu_bypass.sh runs on a real GPU): VMM handles released while mapped or
retained, pools that keep what they are given back, graph memory (explicit and captured), stream-ordered
allocation on another device's stream or pool, legacy IPC, many tiny allocations, module globals (PTX, cubin,
fatbin).

For each road: the simulator's memory of the tenant never passes the cap (after every step, and its peak),
fcsp's figure equals the simulator's after every step and when the process ends, and both are zero after it.
Without fcsp the same road passes the cap (it is a real road, not one the simulator closes by itself)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from fcsp_core.region import Region, read_snapshot
from fcsp_core.region_node import Reaper

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


# ---- module globals: the driver allocates a module's __device__ variables at its load (measured on the H200:
# a PTX module with a 1 GiB array took 1 GiB at cuModuleLoadData under a 1 GiB cap); fcsp reads the image,
# admits its globals before the driver loads it and gives them back at the unload ----


def ptx(globals_decl: str, entry: str = "touch") -> str:
    return (
        ".version 8.0\n.target sm_90\n.address_size 64\n"
        f"{globals_decl}\n.visible .entry {entry}()\n{{\n\tld.global.u32 %r1, [big];\n\tret;\n}}\n"
    )


def cubin(global_bytes: int, init_bytes: int = 16, kernel: str = "touch") -> bytes:
    """A minimal cubin-shaped ELF64: .nv.global (NOBITS) of global_bytes, .nv.global.init of init_bytes, one
    kernel section .text.<kernel>."""
    names = [b"", b".shstrtab", b".nv.global.init", b".nv.global", b".text." + kernel.encode()]
    strtab = b"\0".join(names) + b"\0"
    offs = [strtab.index(n + b"\0") if n else 0 for n in names]
    init = b"\x01" * init_bytes
    text = b"\0" * 16
    data_off = 64
    strtab_off = data_off
    init_off = strtab_off + len(strtab)
    text_off = init_off + len(init)
    sh_off = (text_off + len(text) + 7) & ~7
    body = bytearray(sh_off)
    body[strtab_off : strtab_off + len(strtab)] = strtab
    body[init_off : init_off + len(init)] = init
    body[text_off : text_off + len(text)] = text
    ident = b"\x7fELF" + bytes([2, 1, 1, 0x33, 7]) + b"\0" * 7
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 190, 1, 0, 0, sh_off, 0, 64, 0, 0, 64, 5, 1)
    body[0:64] = ehdr

    def sh(name, typ, off, size, align):
        return struct.pack("<IIQQQQIIQQ", name, typ, 0, 0, off, size, 0, 0, align, 0)

    shdrs = sh(0, 0, 0, 0, 0)
    shdrs += sh(offs[1], 3, strtab_off, len(strtab), 1)
    shdrs += sh(offs[2], 1, init_off, len(init), 8)
    shdrs += sh(offs[3], 8, 0, global_bytes, 256)  # SHT_NOBITS
    shdrs += sh(offs[4], 1, text_off, len(text), 128)
    return bytes(body) + shdrs


def fatbin(entries: list[tuple[int, bytes, int, int]]) -> bytes:
    """A fatbin container: entries of (kind 1 PTX / 2 ELF, payload, flags, uncompressed size)."""
    out = b""
    for kind, payload, flags, unpacked in entries:
        padded = payload + b"\0" * (-len(payload) % 8)
        head = struct.pack("<HHIQIIIIIIQQQ", kind, 0x0101, 64, len(padded), len(payload), 0, 90, 90, 0, 0,
                           flags, 0, unpacked)  # fmt: skip
        assert len(head) == 64
        out += head + padded
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(out)) + out


def test_module_globals_are_charged_from_load_to_unload(bypass, sim_env, sim_stats):
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="road-module")
    steps = walk(bypass, env, "module", "512")
    check_road(steps, GiB)
    charge = {s["what"]: (s["rc"], int(s["fcsp"])) for s in steps}
    assert charge["load"] == ("CUDA_SUCCESS", 512 * MiB), "the module's 512 MiB array is charged at its load"
    assert charge["load-past-cap"] == ("CUDA_ERROR_OUT_OF_MEMORY", 512 * MiB), "1 GiB more is refused"
    assert charge["unload"] == ("CUDA_SUCCESS", 0)
    after_exit(env, sim_stats, "road-module", GiB)
    without_fcsp_passes_the_cap(bypass, sim_env, "module", "512")


def test_a_module_larger_than_the_cap_is_refused_before_the_driver_loads_it(bypass, sim_env, sim_stats):
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="road-module-big")
    steps = walk(bypass, env, "module", "1100")
    check_road(steps, GiB)
    assert [s["rc"] for s in steps if s["what"].startswith("load")] == ["CUDA_ERROR_OUT_OF_MEMORY"] * 2
    live, peak = sim_stats(env, 0)
    assert live == 0 and peak == 0, "the driver never loaded it"


def walk_file(bypass: Path, env: dict[str, str], image: Path) -> dict[str, tuple[str, int]]:
    steps = walk(bypass, env, "module-file", str(image))
    check_road(steps, GiB)
    return {s["what"]: (s["rc"], int(s["fcsp"])) for s in steps}


def test_ptx_globals_are_sized_as_declared(bypass, sim_env, sim_stats, tmp_path):
    """Vectors, multi-dimensional arrays, alignment, several declarators, initializers, comments; `.extern`
    declarations and `ld.global` instructions take nothing."""
    decls = (
        "// .global .b8 commented[999999];\n"
        ".extern .global .align 8 .b8 elsewhere[1048576];\n"
        ".visible .global .align 4 .u32 counter = 7;\n"  # 4 bytes at 0
        ".global .align 256 .v4 .f32 table[1024][64];\n"  # 1 MiB at 256
        ".global .b8 pad;\n"  # 1 byte
        ".global .align 16 .u64 pair[2] = {1, 2}, big[131072];\n"  # 16 + 1 MiB at 16-byte alignment
    )
    expected = 256 + (1 << 20) + 1
    expected = (expected + 15) // 16 * 16 + 16 + (1 << 20)
    image = tmp_path / "globals.ptx"
    image.write_text(ptx(decls))
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="ptx-sizes")
    charge = walk_file(bypass, env, image)
    assert charge["load"] == ("CUDA_SUCCESS", expected)
    assert charge["library-load"] == ("CUDA_SUCCESS", expected)
    assert charge["unload"][1] == charge["library-unload"][1] == 0
    after_exit(env, sim_stats, "ptx-sizes", GiB)


def test_cubin_and_fatbin_globals_are_charged(bypass, sim_env, sim_stats, tmp_path):
    elf = cubin(600 * MiB)
    want = 600 * MiB + 256  # .nv.global.init (16 bytes), then .nv.global at its 256-byte alignment
    images = {
        "plain.cubin": elf,
        # the driver loads one entry: the largest readable one counts
        "mixed.fatbin": fatbin([(1, ptx(".global .b8 big[314572800];").encode(), 0, 0), (2, elf, 0, 0)]),
    }
    for name, data in images.items():
        path = tmp_path / name
        path.write_bytes(data)
        env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT=f"image-{name}")
        charge = walk_file(bypass, env, path)
        assert charge["load"] == ("CUDA_SUCCESS", want), name
        assert charge["library-load"] == ("CUDA_SUCCESS", want), name
        after_exit(env, sim_stats, f"image-{name}", GiB)
    big = tmp_path / "big.cubin"
    big.write_bytes(cubin(1100 * MiB))
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="image-big")
    charge = walk_file(bypass, env, big)
    assert charge["load"][0] == charge["library-load"][0] == "CUDA_ERROR_OUT_OF_MEMORY"
    live, peak = sim_stats(env, 0)
    assert live == 0 and peak < 1100 * MiB, "refused before the driver loaded it"


def test_a_fatbin_that_cannot_be_read_is_charged_what_the_load_took(bypass, sim_env, sim_stats, tmp_path):
    """Compressed entries cannot be read: fcsp charges the driver's free-memory drop across the load (the
    simulator allocates the entry's declared uncompressed size, its stand-in for the real driver); past the
    cap the module is unloaded again and the load refused."""
    fits = tmp_path / "compressed.fatbin"
    fits.write_bytes(fatbin([(2, b"\x28\xb5\x2f\xfd" + b"\0" * 60, 0x8000, 700 * MiB)]))
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="image-zstd")
    charge = walk_file(bypass, env, fits)
    assert charge["load"] == ("CUDA_SUCCESS", 700 * MiB)
    assert charge["library-load"] == ("CUDA_SUCCESS", 700 * MiB)
    after_exit(env, sim_stats, "image-zstd", GiB)

    past = tmp_path / "compressed-big.fatbin"
    past.write_bytes(fatbin([(2, b"\x28\xb5\x2f\xfd" + b"\0" * 60, 0x8000, 1100 * MiB)]))
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="image-zstd-big")
    steps = walk(bypass, env, "module-file", str(past))
    assert [s["rc"] for s in steps if "load" in s["what"]] == ["CUDA_ERROR_OUT_OF_MEMORY"] * 2
    assert all(int(s["fcsp"]) == int(s["dev"]) == 0 for s in steps), "unloaded again, nothing charged"
    live, peak = sim_stats(env, 0)
    assert live == 0 and peak == 1100 * MiB, "only while the load was measured did the driver hold it"


# ---- VMM memory shared between processes: exported to a POSIX fd, passed over a unix socket (SCM_RIGHTS),
# imported and mapped by another process ----


def share_steps(steps: list[dict[str, str]]) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    ours = [s for s in steps if s["road"].startswith("vmm-share")]
    importer = {s["what"]: s for s in ours if not s["road"].startswith("vmm-share-export")}
    exporter = {s["what"]: s for s in ours if s["road"].startswith("vmm-share-export")}
    return importer, exporter


def test_vmm_memory_shared_through_an_fd_stays_the_exporters(bypass, sim_env, sim_stats):
    """The importer maps the exporter's physical memory: the driver charges it nothing and neither does fcsp
    (the tenant pays once, through the exporter, until the exporter's own unmap and release). The memory
    outlives the exporter's hold while the importer maps it, and is freed with the importer's last hold."""
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="road-share")
    importer, exporter = share_steps(walk(bypass, env, "vmm-share", "512"))
    for what in ("import", "import-map", "import-fd-closed"):
        s = importer[what]
        assert s["rc"] == "CUDA_SUCCESS", s
        assert int(s["dev"]) == 0, "the driver charges the importer nothing"
        assert int(s["fcsp"]) == 512 * MiB, "the tenant is charged once, by the exporter"
        assert int(s["devtotal"]) == 512 * MiB, "one physical allocation"
    assert int(exporter["export"]["fcsp"]) == int(exporter["export"]["dev"]) == 512 * MiB
    gone = importer["exporter-exited"]
    assert int(gone["devtotal"]) == int(gone["dev"]) == 512 * MiB, (
        "the driver keeps the memory the importer maps, now held by the importer alone"
    )
    assert int(gone["fcsp"]) == 0, "the exporter's charge ended with its own unmap and release (see README)"
    assert int(importer["import-unmap"]["devtotal"]) == 512 * MiB, "the importer's handle still holds it"
    assert int(importer["import-release"]["devtotal"]) == 0
    assert importer["end"]["fcsp"] == importer["end"]["dev"] == "0"
    after_exit(env, sim_stats, "road-share", GiB)


def test_vmm_memory_shared_through_an_fd_outlives_a_killed_exporter(bypass, sim_env, sim_stats):
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="road-share-crash")
    importer, exporter = share_steps(walk(bypass, env, "vmm-share-crash", "512"))
    assert "export-let-go" not in exporter
    gone = importer["exporter-exited"]
    assert int(gone["devtotal"]) == int(gone["dev"]) == 512 * MiB, (
        "the driver reaps the exporter, not the memory the importer maps"
    )
    assert int(importer["import-release"]["devtotal"]) == 0
    with Region.open(env["FCSP_REGION_DIR"]) as region:
        Reaper(region).reap()  # the node daemon's pass: the killed exporter's charge goes with its slot
    after_exit(env, sim_stats, "road-share-crash", GiB)


def test_an_open_shareable_fd_alone_keeps_the_memory(bypass, sim_env, sim_stats):
    """The exporter unmaps, releases and exits before the import: the fd in flight is a reference too."""
    env = sim_env(mem="16G", FCSP_MEM_LIMIT="1G", FCSP_TENANT="road-share-fd")
    importer, exporter = share_steps(walk(bypass, env, "vmm-share-fd-only", "512"))
    assert int(exporter["export-let-go"]["devtotal"]) == 512 * MiB, "its exported fd still refers to it"
    held = importer["exporter-exited-fd-held"]
    assert int(held["devtotal"]) == 512 * MiB and int(held["dev"]) == 0
    assert importer["import-map"]["rc"] == "CUDA_SUCCESS"
    assert int(importer["import-map"]["dev"]) == 512 * MiB, "held by the importer's handle now"
    assert int(importer["import-release"]["devtotal"]) == 0, "fd closed, handle released: freed"
    after_exit(env, sim_stats, "road-share-fd", GiB)
