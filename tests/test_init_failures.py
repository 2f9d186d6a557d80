"""Bad input never crashes a job silently: invalid env values, a corrupt or foreign region, an unsafe
directory. Each gives one clear line on stderr, then the failure policy: a process that asked for caps (a
limit variable, a scheduler) is refused (fail-closed, never uncapped); only one that asked for none may pass
through. And a process that never touches CUDA stays inert."""

from __future__ import annotations

import os
import struct
import subprocess

import pytest

GiB = 1 << 30


def _fcsp_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("fcsp[")]


@pytest.mark.parametrize(
    ("var", "value", "expect"),
    [
        ("FCSP_MEM_LIMIT", "abc", "not a valid memory size"),
        ("FCSP_MEM_LIMIT", "-3G", "not a valid memory size"),
        ("FCSP_MEM_LIMIT", "150%", "at most 100%"),
        ("FCSP_MEM_LIMIT", "0", "above 0"),
        ("FCSP_MEM_LIMIT_1", "8Q", "not a valid memory size"),
        ("FCSP_SM_LIMIT", "150", "1 to 100"),
        ("FCSP_SM_LIMIT", "4O", "1 to 100"),
        ("FCSP_ON_INIT_FAILURE", "maybe", "fail or passthrough"),
        ("FCSP_TENANT", "has space", "printable characters without spaces"),
    ],
)
def test_invalid_env_value_is_named_once_then_fail_closed(
    sim_env, run_probe, parse_probe, var, value, expect
):
    env = sim_env(mem="4G", **{var: value})
    if var != "FCSP_MEM_LIMIT":
        env["FCSP_MEM_LIMIT"] = "1G"
    out = run_probe(env, "init", "alloc", "2G", "alloc", "1G", "free", "all")
    lines = _fcsp_lines(out.stderr)
    named = [line for line in lines if f"{var}={value}" in line]
    assert len(named) == 1, out.stderr
    assert expect in named[0]
    assert any("never runs uncapped" in line for line in lines), out.stderr
    assert len(lines) == 2, f"one line for the value, one for the policy: {out.stderr}"
    allocs = [r for r in parse_probe(out.stdout) if r["cmd"] == "alloc"]
    assert allocs and all(a["status"] == "fail" for a in allocs), "it asked for caps: refused, not uncapped"


@pytest.mark.parametrize("policy", [None, "passthrough"])
def test_init_failure_without_caps_asked_passes_through(sim_env, run_probe, parse_probe, tmp_path, policy):
    """Only a process that asked for no cap (FCSP_TENANT alone: accounting) may run on when fcsp cannot set
    up."""
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    env = sim_env(mem="4G", FCSP_TENANT="acct", FCSP_REGION_DIR=str(d))
    if policy:
        env["FCSP_ON_INIT_FAILURE"] = policy
    out = run_probe(env, "init", "alloc", "2G")
    assert any("FCSP_ON_INIT_FAILURE=passthrough" in line for line in _fcsp_lines(out.stderr)), out.stderr
    assert next(r for r in parse_probe(out.stdout) if r["cmd"] == "alloc")["status"] == "ok"


def test_passthrough_policy_never_uncaps_a_capped_process(sim_env, run_probe, parse_probe, tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    env = sim_env(mem="4G", FCSP_MEM_LIMIT="1G", FCSP_ON_INIT_FAILURE="passthrough", FCSP_REGION_DIR=str(d))
    out = run_probe(env, "init", "alloc", "2G", "alloc", "64M")
    assert any("never runs uncapped" in line for line in _fcsp_lines(out.stderr)), out.stderr
    assert all(r["status"] == "fail" for r in parse_probe(out.stdout) if r["cmd"] == "alloc")


def test_invalid_env_under_a_scheduler_fails_closed(sim_env, run_probe, parse_probe):
    env = sim_env(mem="4G", FCSP_MEM_LIMIT="lots", FCSP_SCHEDULER="slurm")
    out = run_probe(env, "init", "alloc", "64M")
    alloc = next(r for r in parse_probe(out.stdout) if r["cmd"] == "alloc")
    assert alloc["status"] == "fail" and alloc["err"] == "CUDA_ERROR_NOT_PERMITTED"
    assert any("fail-closed" in line for line in _fcsp_lines(out.stderr)), out.stderr


def test_scheduler_tenant_without_policy_fails_closed(sim_env, run_probe, parse_probe):
    env = sim_env(mem="4G", FCSP_TENANT="job-1", FCSP_SCHEDULER="slurm")
    out = run_probe(env, "init", "alloc", "64M")
    alloc = next(r for r in parse_probe(out.stdout) if r["cmd"] == "alloc")
    assert alloc["status"] == "fail"
    assert any("no limits for tenant job-1" in line for line in _fcsp_lines(out.stderr)), out.stderr


def _region_path(env: dict[str, str]) -> str:
    d = env["FCSP_REGION_DIR"]
    os.makedirs(os.path.join(d, "users"), mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    return os.path.join(d, "users", f"{os.geteuid()}.region")


def _real_region_size(sim_env, run_probe) -> int:
    env = sim_env(mem="4G", FCSP_MEM_LIMIT="1G")
    run_probe(env, "init", "alloc", "1M")
    return os.path.getsize(_region_path(env))


@pytest.mark.parametrize("damage", ["wrong_magic", "wrong_version", "truncated", "empty", "symlink"])
def test_corrupt_or_foreign_region_is_refused_not_trusted(sim_env, run_probe, parse_probe, tmp_path, damage):
    size = _real_region_size(sim_env, run_probe)
    env = sim_env(mem="4G", FCSP_MEM_LIMIT="1G", FCSP_REGION_DIR=str(tmp_path / "bad"))
    path = _region_path(env)
    if os.path.exists(path):
        os.unlink(path)
    if damage == "wrong_magic":
        data = b"\x13" * size
    elif damage == "wrong_version":
        data = struct.pack("<QI", 0x3147455250534346, 99) + b"\0" * (size - 12)
    elif damage == "truncated":
        data = struct.pack("<Q", 0x3147455250534346) + b"\0" * 100
    else:
        data = b""
    if damage == "symlink":
        target = tmp_path / "elsewhere"
        target.write_bytes(b"\0" * size)
        os.symlink(target, path)
    else:
        with open(path, "wb") as f:
            f.write(data)
    before = open(path, "rb").read() if damage != "symlink" else None
    out = run_probe(env, "init", "alloc", "2G")
    lines = _fcsp_lines(out.stderr)
    assert len(lines) == 1 and "refused" in lines[0] and "never runs uncapped" in lines[0], out.stderr
    assert next(r for r in parse_probe(out.stdout) if r["cmd"] == "alloc")["status"] == "fail"
    if before is not None:
        assert open(path, "rb").read() == before, "a foreign region must never be rewritten"


def test_world_writable_region_dir_is_refused(sim_env, run_probe, tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    env = sim_env(mem="4G", FCSP_MEM_LIMIT="1G", FCSP_REGION_DIR=str(d))
    out = run_probe(env, "init", "alloc", "64M")
    assert any("world-writable" in line for line in _fcsp_lines(out.stderr)), out.stderr
    assert not (d / "users").exists()


def test_inert_without_configuration(native, sim_env, tmp_path):
    """Preloaded into shells and tools (Ray starts workers through bash): no region, no output, no thread."""
    env = sim_env(mem="4G")
    out = subprocess.run(["bash", "-c", "echo hi"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "hi\n" and out.stderr == ""
    probe = subprocess.run(
        [str(native.probe), "init", "alloc", "64M"], env=env, capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0 and "fcsp[" not in probe.stderr
    assert not os.path.exists(os.path.join(env["FCSP_REGION_DIR"], "users"))
