"""How applications reach the driver: cuGetProcAddress(_v2) at several CUDA versions and stream flavours,
dlsym by handle and RTLD_DEFAULT, RTLD_NEXT from another library, unknown names forwarded."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NATIVE = REPO / "fcsp_core" / "native"
HERE = Path(__file__).resolve().parent / "native"


def _cc(out: Path, *args: str) -> Path:
    subprocess.run(["cc", "-std=c11", "-O2", "-Wall", "-Werror", "-o", str(out), *args], check=True)
    return out


@pytest.fixture(scope="session")
def resolve_check(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("resolve")
    return _cc(
        d / "resolve_check", f"-I{NATIVE / 'include'}", f"-I{NATIVE}", str(HERE / "resolve_check.c"), "-ldl"
    )


@pytest.fixture(scope="session")
def next_program(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("next")
    _cc(d / "libnext_a.so", "-shared", "-fPIC", str(HERE / "next_a.c"), "-ldl")
    _cc(d / "libnext_b.so", "-shared", "-fPIC", str(HERE / "next_b.c"))
    # --no-as-needed: main never calls into libnext_b, yet it must be loaded, after libnext_a
    return _cc(
        d / "next_main",
        str(HERE / "next_main.c"),
        f"-L{d}",
        "-Wl,--no-as-needed",
        "-lnext_a",
        "-lnext_b",
        f"-Wl,-rpath,{d}",
    )


def _lines(env: dict[str, str], exe: Path) -> dict[str, str]:
    out = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    rows = {}
    for line in out.splitlines():
        key, _, value = line.rpartition(" ")
        rows[key] = value
    return rows


def test_get_proc_address_resolves_like_the_driver(sim_env, resolve_check):
    plain = _lines(sim_env(preload=False), resolve_check)
    hooked = _lines(sim_env(FCSP_MEM_LIMIT="1G"), resolve_check)
    assert plain.keys() == hooked.keys()
    checked = 0
    for key, driver_answer in plain.items():
        ours = hooked[key]
        if not key.startswith("proc"):
            continue
        if driver_answer == "null":
            assert ours == "null", key
            continue
        driver_obj, driver_sym = driver_answer.split(":")
        our_obj, our_sym = ours.split(":")
        assert our_sym == driver_sym, f"{key}: driver gave {driver_sym}, we gave {our_sym}"
        name = key.split()[1]
        if name in {"cuModuleGetFunction", "cuCtxGetDevice"}:
            assert our_obj == driver_obj == "libcuda.so.1", (
                f"{key}: unhooked name must be forwarded untouched"
            )
        else:
            assert our_obj.startswith("libfcsp"), f"{key}: expected our wrapper, got {ours}"
            checked += 1
    # every hooked base name at 5 versions x 2 flavours x 2 entry points
    assert checked > 300


def test_dlsym_hands_out_wrappers_for_hooked_names_only(sim_env, resolve_check):
    hooked = _lines(sim_env(FCSP_MEM_LIMIT="1G"), resolve_check)
    for key, value in hooked.items():
        if not key.startswith("dlsym"):
            continue
        name = key.split()[1]
        if name in {"cuModuleGetFunction", "cuGetExportTable"}:
            assert value.startswith("libcuda.so.1:"), key
        elif name == "nosuch":
            assert value == "null"
        else:
            assert value.startswith("libfcsp"), f"{key}: {value}"


def test_rtld_next_stays_relative_to_the_caller(native, next_program):
    plain = subprocess.run([str(next_program)], capture_output=True, text=True, check=True, timeout=30)
    assert plain.stdout.strip() == "2"
    plain = subprocess.run([str(next_program)], capture_output=True, text=True, check=True, timeout=30)
    assert plain.stdout.strip() == "2"
    env = {"LD_PRELOAD": native.preload, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([str(next_program)], env=env, capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "2", (
        "dlsym(RTLD_NEXT) from a library must find the definition after that library"
    )


@pytest.mark.parametrize("api", ["proc:11080", "proc:12080", "proc:13000", "dlsym"])
@pytest.mark.parametrize("ptsz", [False, True])
def test_allocations_through_every_resolution_path_are_capped(sim_env, run_probe, parse_probe, api, ptsz):
    env = sim_env(mem="8G", FCSP_MEM_LIMIT="1G")
    args = [f"--api={api}"] + (["--ptsz"] if ptsz else [])
    cmds = ["init", "alloc", "768M", "alloc", "512M", "alloc", "256M", "async", "meminfo", "free", "all"]
    rows = parse_probe(run_probe(env, *args, *cmds).stdout)
    allocs = [r for r in rows if r["cmd"] == "alloc"]
    assert [a["status"] for a in allocs] == ["ok", "fail", "ok"]
    assert allocs[1]["err"] == "CUDA_ERROR_OUT_OF_MEMORY"
    meminfo = next(r for r in rows if r["cmd"] == "meminfo")
    assert int(meminfo["total_bytes"]) == 1 << 30
    assert int(meminfo["free_bytes"]) == 0


def test_both_abis_of_the_memory_queries_show_the_cap(sim_env, tmp_path):
    """cuDeviceTotalMem and cuMemGetInfo have a 32-bit ABI beside _v2: each shows the cap as the total (and
    the room under it as free), whichever the application reaches by name."""
    program = _cc(
        tmp_path / "legacy_mem_abi", f"-I{NATIVE / 'include'}", str(HERE / "legacy_mem_abi.c"), "-ldl"
    )
    cap = 768 << 20
    out = subprocess.run(
        [str(program)], env=sim_env(mem="8G", FCSP_MEM_LIMIT=str(cap)), capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    rows = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert rows == {
        "cuDeviceTotalMem": str(cap),
        "cuDeviceTotalMem_v2": str(cap),
        "cuMemGetInfo": f"{cap} {cap}",
        "cuMemGetInfo_v2": f"{cap} {cap}",
    }, out.stdout + out.stderr
