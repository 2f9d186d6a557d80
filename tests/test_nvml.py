"""The one NVML reader (fcsp_core.node.nvml.list_gpus) as the Ray and Slurm integrations use it, against the
simulated NVML: what `fcsp ray resources` advertises and what `fcsp slurm gres` writes come from the same
GPUs, and a node without pynvml or a driver gets one line saying so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GiB = 1 << 30
LIST_GPUS = (
    "import dataclasses, json\n"
    "from fcsp_core.node.nvml import list_gpus\n"
    "print(json.dumps([dataclasses.asdict(g) for g in list_gpus()]))\n"
)


def _fcsp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fcsp_core", *args], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def test_list_gpus_reads_every_simulated_gpu(sim_env):
    env = sim_env(gpus=3, mem="6G", preload=False)
    out = subprocess.run(
        [sys.executable, "-c", LIST_GPUS], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    gpus = json.loads(out.stdout)
    assert [g["index"] for g in gpus] == [0, 1, 2]
    assert [g["minor"] for g in gpus] == [0, 1, 2]
    assert all(g["total_bytes"] == 6 * GiB for g in gpus)
    assert len({g["uuid"] for g in gpus}) == 3 and all(g["uuid"].startswith("GPU-") for g in gpus)


def test_ray_and_slurm_see_the_same_gpus(sim_env):
    env = sim_env(gpus=2, mem="8G", preload=False)
    resources = _fcsp(env, "ray", "resources")
    assert resources.returncode == 0, resources.stderr
    assert json.loads(resources.stdout) == {"fcsp_mem_gb": 16.0, "fcsp_sm": 200.0}
    gres = _fcsp(env, "slurm", "gres", "--shards-per-gpu", "4")
    assert gres.returncode == 0, gres.stderr
    lines = gres.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("Name=gpu")] == [
        "Name=gpu File=/dev/nvidia0",
        "Name=gpu File=/dev/nvidia1",
    ]
    assert sum(ln.startswith("Name=shard Count=4 ") for ln in lines) == 2
    assert any("Gres=gpu:2,shard:8" in ln for ln in lines)
    assert sum(ln.endswith(" 8192 MiB") for ln in lines) == 2


def test_slurm_gres_without_pynvml_says_which_package(sim_env, tmp_path: Path):
    shadow = tmp_path / "no-pynvml"
    shadow.mkdir()
    (shadow / "pynvml.py").write_text("raise ImportError('No module named pynvml')\n")
    env = sim_env(preload=False)
    env["PYTHONPATH"] = f"{shadow}:{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(shadow)
    out = _fcsp(env, "slurm", "gres")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("fcsp slurm gres: ") and "pip install nvidia-ml-py" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_slurm_gres_without_a_driver_says_so(sim_env):
    env = sim_env(preload=False)
    env["LD_LIBRARY_PATH"] = "/nonexistent"  # no libnvidia-ml.so.1 to load: a CPU node
    out = _fcsp(env, "slurm", "gres")
    if out.returncode == 0:
        pytest.skip("this machine has a real NVIDIA driver on the loader's path")
    assert out.returncode == 1 and "no NVIDIA driver answers here" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
