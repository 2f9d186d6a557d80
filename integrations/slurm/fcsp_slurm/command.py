"""`fcsp slurm plugstack|gres|check` (fcsp_core/cli.py finds it through the `fcsp.commands` entry point)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fcsp_core.node.nvml import NvmlError, list_gpus

PLUGIN_NAME = "fcsp_spank.so"
DEFAULT_REGION = "/run/fcsp"
DEFAULT_SHARDS = 8

DESCRIPTION = """\
Slurm integration. The SPANK plugin adds --fcsp-mem=SIZE, --fcsp-sm=PCT, --fcsp-sm-mode=time|spatial and
--fcsp-off to srun, sbatch and salloc, registers each job step as an fcsp tenant (slurm-<job>.<step>) with
those caps on its GPUs, turns --gres=shard:N into caps of N/(shards per GPU) of the GPU (an upper bound: a
shard step's --fcsp-mem/--fcsp-sm may only lower it, --fcsp-off is refused), and cleans up in the job epilog.
--fcsp-off is refused unless the site allows it (plugstack allow_opt_out=yes). --fcsp-sm-mode=spatial (or
plugstack sm_mode=spatial, the default for capped steps) keeps the step's SM share as an MPS partition on
nodes running `fcsp node --mps`; the mode is written into the step's policy entry, where the job cannot change
it.

  fcsp slurm plugstack   the plugstack.conf line for this install
  fcsp slurm gres        gres.conf and slurm.conf lines for this node's GPUs (NVML)
  fcsp slurm check       check this node's setup and say what is wrong
"""


def _lib_dir() -> Path:
    from fcsp_core import paths

    return paths.lib_dir()


def _fcsp_command() -> str:
    beside = Path(sys.executable).parent / "fcsp"
    return str(beside) if beside.exists() else (shutil.which("fcsp") or "fcsp")


def plugstack_line(
    region_dir: str,
    shards_per_gpu: int,
    default_mem: str | None,
    default_sm: str | None,
    opt_out: bool,
    sm_mode: str = "time",
) -> str:
    lib = _lib_dir()
    words = [
        "required",
        str(lib / PLUGIN_NAME),
        f"lib={lib / 'libfcsp.so'}",
        f"region_dir={region_dir}",
        f"shards_per_gpu={shards_per_gpu}",
        f"fcsp={_fcsp_command()}",
        f"allow_opt_out={'yes' if opt_out else 'no'}",
        f"sm_mode={sm_mode}",
    ]
    if default_mem or default_sm:
        words.append("default_gpu_cap=yes")
        if default_mem:
            words.append(f"default_mem={default_mem}")
        if default_sm:
            words.append(f"default_sm={default_sm}")
    return " ".join(words)


def gres_lines(shards_per_gpu: int, node: str) -> tuple[list[str], list[str]]:
    gpus = list_gpus()
    gres = [f"# {g.index}: {g.name} {g.uuid} {g.total_bytes >> 20} MiB" for g in gpus]
    gres += [f"Name=gpu File=/dev/nvidia{g.minor}" for g in gpus]
    if shards_per_gpu:
        gres += [f"Name=shard Count={shards_per_gpu} File=/dev/nvidia{g.minor}" for g in gpus]
    types = "gpu,shard" if shards_per_gpu else "gpu"
    node_gres = f"gpu:{len(gpus)}" + (f",shard:{len(gpus) * shards_per_gpu}" if shards_per_gpu else "")
    conf = [f"GresTypes={types}", f"NodeName={node} Gres={node_gres}  # add to your NodeName line"]
    return gres, conf


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None


def _plugstack_args(text: str) -> dict[str, str]:
    """key=value arguments of the fcsp plugin's plugstack.conf line (the last such line)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[1].endswith(PLUGIN_NAME):
            found = dict(w.split("=", 1) for w in words[2:] if "=" in w)
    return found


def _node_shards_per_gpu(node: str) -> tuple[int, int] | None:
    """(GPUs, shards) in slurm.conf's Gres of this node, or None when Slurm cannot say."""
    done = _run(["scontrol", "show", "node", node])
    if done is None or done.returncode != 0:
        return None
    gres = re.search(r"\bGres=(\S+)", done.stdout)
    if not gres:
        return None
    counts = {"gpu": 0, "shard": 0}
    for item in gres.group(1).split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] in counts and len(parts) >= 2 and parts[-1].isdigit():
            counts[parts[0]] += int(parts[-1])
    return counts["gpu"], counts["shard"]


def _shard_problems(args: dict[str, str], node: str) -> list[str]:
    """plugstack.conf shards_per_gpu against this node's shards per GPU (a smaller one widens each share)."""
    node_gres = _node_shards_per_gpu(node)
    if node_gres is None or node_gres[1] == 0:
        return []
    gpus, shards = node_gres
    configured = args.get("shards_per_gpu", "0")
    if configured in ("", "0"):
        return [
            f"this node has gres/shard ({shards} on {gpus} GPUs) but plugstack.conf has no shards_per_gpu: "
            "shard steps are not capped to their share"
        ]
    if gpus and configured.isdigit() and int(configured) * gpus != shards:
        return [
            f"plugstack.conf shards_per_gpu={configured} but this node has {shards} shards on {gpus} GPUs "
            f"({shards / gpus:g} per GPU): each shard step's share would be wrong"
        ]
    return []


def check(plugstack: Path, region_dir: Path) -> list[str]:
    """Problems with this node's setup (empty: fine)."""
    problems: list[str] = []
    plugin = _lib_dir() / PLUGIN_NAME
    if not plugin.is_file():
        problems.append(
            f"{plugin} is missing: install libslurm-dev, then reinstall fcsp (pip install .) "
            "so the plugin is built"
        )
    if not plugstack.is_file():
        problems.append(f"{plugstack} does not exist: add the line of `fcsp slurm plugstack` to it")
    elif PLUGIN_NAME not in plugstack.read_text(errors="replace"):
        problems.append(f"{plugstack} does not load {PLUGIN_NAME}: add the line of `fcsp slurm plugstack`")
    else:
        args = _plugstack_args(plugstack.read_text(errors="replace"))
        problems += _shard_problems(args, os.uname().nodename.split(".")[0])
    if not shutil.which("srun"):
        problems.append("srun is not on PATH: Slurm's client tools are missing")
    else:
        done = _run(["srun", "--help"])
        if done is None or "--fcsp-mem" not in done.stdout:
            problems.append("srun --help does not list --fcsp-mem: the plugin is not loaded on this host")
    if region_dir.exists():
        st = region_dir.stat()
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problems.append(f"{region_dir} must be owned by root and not group/world-writable")
        lock = region_dir / "node.lock"
        if not lock.exists():
            problems.append(
                f"no node daemon has run on {region_dir}: start `fcsp node` (or set fcsp= in plugstack)"
            )
    else:
        problems.append(
            f"{region_dir} does not exist yet: start `fcsp node` (or the plugin's first job creates it)"
        )
    try:
        if not list_gpus():
            problems.append("NVML sees no GPU")
    except NvmlError as exc:
        problems.append(str(exc))
    scontrol = _run(["scontrol", "show", "config"])
    if scontrol is not None and scontrol.returncode == 0:
        conf = dict(
            (k.strip(), v.strip()) for k, _, v in (ln.partition("=") for ln in scontrol.stdout.splitlines())
        )
        if "gpu" not in conf.get("GresTypes", ""):
            problems.append("slurm.conf: GresTypes has no gpu (see `fcsp slurm gres`)")
    return problems


def run(args: argparse.Namespace) -> int:
    if args.slurm_command == "plugstack":
        print(
            plugstack_line(
                args.region_dir, args.shards_per_gpu, args.default_mem, args.default_sm, args.opt_out,
                args.sm_mode,
            )
        )
        return 0
    if args.slurm_command == "gres":
        try:
            gres, conf = gres_lines(args.shards_per_gpu, os.uname().nodename.split(".")[0])
        except NvmlError as exc:
            print(f"fcsp slurm gres: {exc}", file=sys.stderr)
            return 1
        print("# gres.conf")
        print("\n".join(gres))
        print("# slurm.conf")
        print("\n".join(conf))
        return 0
    problems = check(Path(args.plugstack), Path(args.region_dir))
    for p in problems:
        print(f"problem: {p}")
    if not problems:
        print("ok: the fcsp SPANK plugin is installed, loaded and has a region and GPUs")
    return 1 if problems else 0


def register(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    """Add `fcsp slurm ...` to fcsp's subparsers."""
    p = sub.add_parser(
        "slurm",
        help="Slurm: plugstack/gres lines, node check",
        description=DESCRIPTION,
        formatter_class=formatter,
    )
    s = p.add_subparsers(dest="slurm_command", metavar="SUBCOMMAND", required=True)
    ps = s.add_parser(
        "plugstack", help="print the plugstack.conf line for this install", formatter_class=formatter
    )
    ps.add_argument("--region-dir", default=DEFAULT_REGION, help=f"default {DEFAULT_REGION}")
    ps.add_argument("--shards-per-gpu", type=int, default=DEFAULT_SHARDS, help="gres/shard per GPU (0: off)")
    ps.add_argument("--default-mem", metavar="SIZE", help="cap GPU steps without fcsp options at SIZE")
    ps.add_argument("--default-sm", metavar="PCT", help="cap GPU steps without fcsp options at PCT")
    ps.add_argument(
        "--sm-mode",
        choices=("time", "spatial"),
        default="time",
        help="how capped steps without --fcsp-sm-mode keep their SM share: time slices (default) or spatial "
        "(an MPS partition; the node runs `fcsp node --mps`)",
    )
    ps.add_argument(
        "--allow-opt-out",
        dest="opt_out",
        action="store_true",
        help="honour --fcsp-off for steps without shards (default: refused; shard steps never opt out)",
    )
    g = s.add_parser(
        "gres", help="gres.conf/slurm.conf lines for this node's GPUs", formatter_class=formatter
    )
    g.add_argument("--shards-per-gpu", type=int, default=DEFAULT_SHARDS, help="0: no gres/shard")
    c = s.add_parser("check", help="check this node's setup", formatter_class=formatter)
    c.add_argument(
        "--plugstack", default="/etc/slurm/plugstack.conf", help="default /etc/slurm/plugstack.conf"
    )
    c.add_argument("--region-dir", default=DEFAULT_REGION, help=f"default {DEFAULT_REGION}")
