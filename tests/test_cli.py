"""The `fcsp` command, run as real processes from the installed package (run with `pytest`, not
`python -m pytest`: the tests must import the installed fcsp_core, which has the built native parts)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.commands import fcsp_command

from fcsp_core import fmt, launch, paths
from fcsp_core.config import MemLimit, TenantLimits
from fcsp_core.demo import parse_probe_line

GiB = 1 << 30
MiB = 1 << 20
SUBCOMMANDS = ["run", "sim", "status", "lib-path", "demo", "node", "ray", "slurm"]


FCSP = fcsp_command()
SANITIZER_PRELOAD = [
    p for p in os.environ.get("LD_PRELOAD", "").replace(":", " ").split() if "san.so" in Path(p).name
]


@pytest.fixture
def env(tmp_path):
    """The environment of every command: `fcsp` on PATH, a private region, no inherited fcsp settings (but
    FCSP_LIB_DIR and a preloaded sanitizer runtime, for sanitizer runs: see conftest.py)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FCSP_", "LD_PRELOAD", "CUDA_VISIBLE"))}
    if "FCSP_LIB_DIR" in os.environ:
        base["FCSP_LIB_DIR"] = os.environ["FCSP_LIB_DIR"]
    if SANITIZER_PRELOAD:
        base["LD_PRELOAD"] = " ".join(SANITIZER_PRELOAD)
    base["PATH"] = f"{Path(FCSP).parent}:{base.get('PATH', '')}"
    region = tmp_path / "region"
    region.mkdir(mode=0o700)
    base["FCSP_REGION_DIR"] = str(region)
    return base


def fcsp(*args: str, env: dict[str, str], timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FCSP, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False, **kw
    )


def probe_lines(stdout: str):
    return [p for p in map(parse_probe_line, stdout.splitlines()) if p is not None]


# ---------------------------------------------------------------------------------------------------
# Help and lib-path
# ---------------------------------------------------------------------------------------------------


def test_help_lists_every_command(env):
    out = fcsp("--help", env=env)
    assert out.returncode == 0, out.stderr
    for name in SUBCOMMANDS:
        assert name in out.stdout


def test_the_core_imports_no_integration_until_asked(env):
    """fcsp_core.cli finds `fcsp ray` and `fcsp slurm` through entry points: importing it loads neither."""
    code = (
        "import sys, fcsp_core.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith(('fcsp_ray', 'fcsp_slurm'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for name in ("ray", "slurm"):
        sub = fcsp(name, "--help", env=env)
        assert sub.returncode == 0 and f"fcsp {name}" in sub.stdout, sub.stderr


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("run", ["--mem", "--sm", "--gpu", "--tenant", "LD_PRELOAD", "FCSP_MEM_LIMIT", "FCSP_REGION_DIR"]),
        ("sim", ["--gpus", "--mem", "--sms", "--kernel-us", "FCSP_SIM_DIR", "LD_LIBRARY_PATH"]),
        ("status", ["--json", "--dir", "FCSP_REGION_DIR", "_bytes"]),
        ("lib-path", ["LD_PRELOAD", "FCSP_LIB_DIR"]),
        ("demo", ["--sim", "simulated", "train", "greedy"]),
    ],
)
def test_subcommand_help_explains_options_env_and_examples(env, name, words):
    out = fcsp(name, "--help", env=env)
    assert out.returncode == 0, out.stderr
    assert "example" in out.stdout
    for word in words:
        assert word in out.stdout, f"{name} --help does not mention {word}"


def test_lib_path(env):
    out = fcsp("lib-path", env=env)
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.is_absolute() and path.is_file() and path.name == "libfcsp.so"
    assert path == paths.libfcsp_path()


# ---------------------------------------------------------------------------------------------------
# fcsp run
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--mem", "abc"], ["--mem", "abc", "8G"]),
        (["--mem", "0"], ["--mem", "'0'"]),
        (["--sm", "150"], ["--sm", "150", "100"]),
        (["--sm", "x"], ["--sm", "'x'"]),
        (["--gpu", "z"], ["--gpu", "'z'", "0..15"]),
        (["--tenant", "bad name"], ["--tenant", "bad name"]),
    ],
)
def test_run_bad_values_exit_2_with_one_line(env, tmp_path, args, words):
    marker = tmp_path / "ran"
    out = fcsp("run", *args, "--", "touch", str(marker), env=env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("fcsp run: ")
    for word in words:
        assert word in lines[0]
    assert not marker.exists(), "the command ran despite a bad option"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("FCSP_MEM_LIMIT", "lots"),
        ("FCSP_SM_LIMIT", "150"),
        ("FCSP_MEM_LIMIT_1", "8Q"),
        ("FCSP_SM_LIMIT_0", "0"),
    ],
)
def test_run_refuses_a_bad_inherited_value_before_cmd(env, tmp_path, var, value):
    marker = tmp_path / "ran"
    out = fcsp("run", "--", "touch", str(marker), env={**env, var: value})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fcsp run: in the environment, ") and var in lines[0], (
        lines
    )
    assert f"'{value}'" in lines[0]
    assert not marker.exists(), "the command ran despite a bad inherited value"


def test_run_without_command(env):
    out = fcsp("run", "--mem", "1G", env=env)
    assert out.returncode == 2 and "no command" in out.stderr


def test_run_sets_the_tenant_environment(env):
    env = {**env, "LD_PRELOAD": " ".join([*SANITIZER_PRELOAD, "libm.so.6"])}
    out = fcsp("run", "--mem", "1.5G", "--sm", "40%", "--gpu", "0,1", "--tenant", "t1", "--", "env", env=env)
    assert out.returncode == 0, out.stderr
    child = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    lib = str(paths.libfcsp_path())
    assert child["LD_PRELOAD"].replace(":", " ").split() == [*SANITIZER_PRELOAD, lib, "libm.so.6"]
    assert child["FCSP_TENANT"] == "t1"
    assert child["FCSP_MEM_LIMIT"] == str(3 * GiB // 2)
    assert child["FCSP_SM_LIMIT"] == "40"
    assert child["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_run_gpu_indices_within_visible_devices(env):
    env = {**env, "CUDA_VISIBLE_DEVICES": "2,3"}
    out = fcsp("run", "--gpu", "1", "--", "env", env=env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^CUDA_VISIBLE_DEVICES=3$", out.stdout, re.M)
    out = fcsp("run", "--gpu", "2", "--", "env", env=env)
    assert out.returncode == 2 and "not visible" in out.stderr and len(out.stderr.splitlines()) == 1


def test_run_default_tenant_name(env):
    out = fcsp("run", "--", "env", env=env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^FCSP_TENANT=run-\d+$", out.stdout, re.M)
    assert "FCSP_MEM_LIMIT=" not in out.stdout


def test_run_exit_codes(env):
    assert fcsp("run", "--", "sh", "-c", "exit 3", env=env).returncode == 3
    assert fcsp("run", "--", "sh", "-c", "kill -TERM $$", env=env).returncode == 128 + signal.SIGTERM
    missing = fcsp("run", "--", "fcsp-no-such-command", env=env)
    assert missing.returncode == 127 and "not found" in missing.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_forwards_signals(env, sig):
    proc = subprocess.Popen(
        [FCSP, "run", "--", "sh", "-c", "echo started; exec sleep 30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        start = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert code == 128 + sig, proc.stderr.read() if proc.stderr else ""
    assert time.monotonic() - start < 5
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


# ---------------------------------------------------------------------------------------------------
# fcsp sim
# ---------------------------------------------------------------------------------------------------


def test_sim_environment_and_cleanup(env):
    env = {k: v for k, v in env.items() if k != "FCSP_REGION_DIR"}
    script = 'env; test -d "$FCSP_SIM_DIR" && echo STATE_DIR_EXISTS'
    out = fcsp("sim", "--gpus", "2", "--mem", "16G", "--sms", "64", "--", "sh", "-c", script, env=env)
    assert out.returncode == 0, out.stderr
    child = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert child["FCSP_SIM_GPUS"] == "2"
    assert child["FCSP_SIM_MEM"] == str(16 * GiB)
    assert child["FCSP_SIM_SMS"] == "64"
    assert "FCSP_SIM_KERNEL_US" not in child
    assert child["LD_LIBRARY_PATH"].split(":")[0] == str(paths.sim_dir())
    assert child["FCSP_REGION_DIR"] == f"{child['FCSP_SIM_DIR']}/region"
    assert "STATE_DIR_EXISTS" in out.stdout
    assert not Path(child["FCSP_SIM_DIR"]).exists(), "the simulated node's state was not removed"
    line = out.stderr.strip().splitlines()[0]
    assert line == (
        f"fcsp sim: simulated driver, 2 GPU(s) x 16 GiB, 64 SMs each (state in {child['FCSP_SIM_DIR']})"
    )


def test_sim_defaults_and_nesting(env, tmp_path):
    out = fcsp("sim", "--", "fcsp", "sim", "--", "env", env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and all("1 GPU(s) x 80 GiB, 132 SMs each" in ln for ln in lines)
    # The inner sim reuses the outer node (same state directory) and keeps the region directory given.
    assert lines[0].split("state in ")[1] == lines[1].split("state in ")[1]
    child = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert child["FCSP_REGION_DIR"] == env["FCSP_REGION_DIR"]
    assert child["LD_LIBRARY_PATH"].split(":").count(str(paths.sim_dir())) == 1


@pytest.mark.parametrize(
    ("args", "option"), [(["--gpus", "9"], "--gpus"), (["--mem", "50%"], "--mem"), (["--sms", "0"], "--sms")]
)
def test_sim_bad_values(env, args, option):
    out = fcsp("sim", *args, "--", "true", env=env)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and option in out.stderr


def test_sim_run_probe_is_capped(env):
    probe = str(paths.probe_path())
    out = fcsp(
        "sim", "--", "fcsp", "run", "--mem", "1G", "--",
        probe, "init", "meminfo", "alloc", "768M", "alloc", "512M",
        env=env,
    )  # fmt: skip
    results = probe_lines(out.stdout)
    assert [r.command for r in results] == ["init", "meminfo", "alloc", "alloc"], out.stdout + out.stderr
    init, meminfo, first, second = results
    assert init.ok
    assert meminfo.int_field("total_bytes") == GiB
    assert meminfo.int_field("free_bytes") <= GiB
    assert first.ok and first.int_field("size") == 768 * MiB
    assert second.ok is False and second.fields["err"] == "CUDA_ERROR_OUT_OF_MEMORY"


def test_probe_runs_the_installed_probe_under_a_cap(env):
    out = fcsp(
        "sim", "--", "fcsp", "run", "--mem", "1G", "--", "fcsp", "probe", "init", "meminfo", "fill", env=env
    )
    results = {r.command: r for r in probe_lines(out.stdout)}
    assert results["meminfo"].int_field("total_bytes") == GiB, out.stdout + out.stderr
    fill = next(ln.split() for ln in out.stdout.splitlines() if ln.startswith("fill "))
    assert "allocated_bytes=1073741824" in fill and "err=CUDA_ERROR_OUT_OF_MEMORY" in fill, fill


def test_probe_help(env):
    out = fcsp("probe", "--help", env=env)
    assert out.returncode == 0
    assert str(paths.probe_path()) in out.stdout and "fcsp run --mem 2G -- fcsp probe" in out.stdout
    assert "usage: fcsp-probe" in out.stdout + out.stderr
    assert "probe" in fcsp("--help", env=env).stdout


def test_limit_without_region_says_start_fcsp_node(env, tmp_path):
    out = fcsp("limit", "t", "--mem", "1G", "--dir", str(tmp_path / "nothing"), env=env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "fcsp node" in lines[0] and str(tmp_path / "nothing") in lines[0], lines


# ---------------------------------------------------------------------------------------------------
# fcsp status
# ---------------------------------------------------------------------------------------------------


def test_status_without_region(env, tmp_path):
    missing = tmp_path / "no-region-here"
    out = fcsp("status", "--dir", str(missing), env=env)
    assert out.returncode == 0, out.stderr
    assert "no region" in out.stdout and str(missing) in out.stdout
    out = fcsp("status", "--json", "--dir", str(missing), env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["exists"] is False and doc["region_dir"] == str(missing)
    assert doc["gpus"] == doc["tenants"] == doc["processes"] == []


def test_status_shows_a_live_tenant(env):
    region_dir = env["FCSP_REGION_DIR"]
    holder = subprocess.Popen(
        [FCSP, "sim", "--", "fcsp", "run", "--mem", "2G", "--tenant", "holder", "--",
         str(paths.probe_path()), "init", "alloc", "512M", "hold", "free", "all"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdin is not None
        seen = []
        while not any(r.command == "alloc" for r in seen):
            line = holder.stdout.readline()
            assert line, f"the probe ended early: {seen} {holder.stderr.read() if holder.stderr else ''}"
            seen += probe_lines(line)
        assert seen[-1].ok

        out = fcsp("status", "--json", env=env)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["exists"] is True and doc["region_dir"] == region_dir
        assert doc["gpus"][0]["total_bytes"] == 80 * GiB
        assert doc["gpus"][0]["used_bytes"] == 512 * MiB
        tenant = next(t for t in doc["tenants"] if t["name"] == "holder")
        assert tenant["nprocs"] == 1 and tenant["uid"] == os.getuid()
        assert tenant["gpus"][0]["used_bytes"] == 512 * MiB
        assert tenant["gpus"][0]["limit_bytes"] == 2 * GiB
        assert tenant["gpus"][0]["peak_bytes"] == 512 * MiB
        assert tenant["used_bytes"] == 512 * MiB
        proc = next(p for p in doc["processes"] if p["tenant"] == "holder")
        assert proc["used_bytes"] == 512 * MiB and proc["pid"] > 0
        assert proc["heartbeat_age_ms"] is None or proc["heartbeat_age_ms"] < 60_000

        text = fcsp("status", env=env)
        assert text.returncode == 0, text.stderr
        row = next(line for line in text.stdout.splitlines() if line.strip().startswith("holder"))
        assert "512 MiB" in row and "2 GiB" in row
        assert str(proc["pid"]) in text.stdout

        holder.stdin.close()
        assert holder.wait(timeout=30) == 0, holder.stderr.read() if holder.stderr else ""
    finally:
        holder.kill()
        holder.wait()
    # The tenant is gone once its last process left.
    doc = json.loads(fcsp("status", "--json", env=env).stdout)
    assert all(t["name"] != "holder" for t in doc["tenants"])


# ---------------------------------------------------------------------------------------------------
# fcsp demo
# ---------------------------------------------------------------------------------------------------


def test_demo(env):
    start = time.monotonic()
    out = fcsp("demo", env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    if not Path("/dev/nvidiactl").exists():
        assert "no NVIDIA GPU found: using the simulated driver" in out.stdout
    for word in ("train", "infer", "greedy", "CUDA_ERROR_OUT_OF_MEMORY", "fcsp status", "Every cap held"):
        assert word in out.stdout
    assert time.monotonic() - start < 60


def test_status_into_a_closed_pipe(env, tmp_path):
    # `fcsp status | head -1` style: no traceback when the reader goes away.
    out = subprocess.run(
        f"'{FCSP}' status --help | head -1", shell=True, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.startswith("usage:") and "Traceback" not in out.stderr
    out = subprocess.run(
        f"'{FCSP}' demo --sim | head -1", shell=True, env=env, capture_output=True, text=True, timeout=120
    )
    assert "simulated driver" in out.stdout and "Traceback" not in out.stderr


def test_demo_forced_sim(env):
    out = fcsp("demo", "--sim", env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "simulated driver" in out.stdout


# ---------------------------------------------------------------------------------------------------
# Helpers (in-process)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, "/l/libfcsp.so"),
        ("", "/l/libfcsp.so"),
        ("/a.so", "/l/libfcsp.so:/a.so"),
        ("/a.so:/b.so", "/l/libfcsp.so:/a.so:/b.so"),
        ("/a.so /b.so", "/l/libfcsp.so /a.so /b.so"),
        ("/l/libfcsp.so:/a.so", "/l/libfcsp.so:/a.so"),
        ("/a.so /l/libfcsp.so", "/l/libfcsp.so /a.so"),
        ("/a.so /usr/lib/libasan.so.8", "/usr/lib/libasan.so.8 /l/libfcsp.so /a.so"),
    ],
)
def test_prepend_preload(existing, expected):
    assert launch.prepend_preload(existing, "/l/libfcsp.so") == expected


def test_visible_devices():
    assert launch.visible_devices(None, [0, 1]) == "0,1"
    assert launch.visible_devices("", [3]) == "3"
    assert launch.visible_devices("GPU-a,GPU-b", [1]) == "GPU-b"
    with pytest.raises(ValueError, match="not visible"):
        launch.visible_devices("5", [1])


def test_prepend_path():
    assert launch.prepend_path(None, "/sim") == "/sim"
    assert launch.prepend_path("/a::/b", "/sim") == "/sim:/a:/b"
    assert launch.prepend_path("/sim:/a", "/sim") == "/sim:/a"


def test_tenant_env_keeps_the_rest():
    limits = TenantLimits(tenant="x", mem_limit=MemLimit(limit_pct=25))
    env = launch.tenant_env({"HOME": "/h"}, limits, Path("/l/libfcsp.so"), gpus=[2])
    assert env == {
        "HOME": "/h",
        "LD_PRELOAD": "/l/libfcsp.so",
        "FCSP_TENANT": "x",
        "FCSP_MEM_LIMIT": "25%",
        "CUDA_VISIBLE_DEVICES": "2",
    }


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [(80 * GiB, "80 GiB"), (3 * GiB // 2, "1.5 GiB"), (768 * MiB, "768 MiB"), (512, "512 B"), (0, "0 B")],
)
def test_format_bytes(nbytes, text):
    assert fmt.format_bytes(nbytes) == text


def test_parse_probe_line():
    line = parse_probe_line("alloc fail kind=mem size=1073741824 err=CUDA_ERROR_OUT_OF_MEMORY\n")
    assert line is not None and line.command == "alloc" and line.ok is False
    assert line.int_field("size") == GiB and line.fields["err"] == "CUDA_ERROR_OUT_OF_MEMORY"
    meminfo = parse_probe_line("meminfo free_bytes=1 total_bytes=2")
    assert meminfo is not None and meminfo.ok is None and meminfo.int_field("total_bytes") == 2
    assert parse_probe_line("fcsp: some log line") is None
