"""`fcsp ray`: `resources` (this node's --resources JSON), `env` (the variables that turn fcsp on) and
`start` (`ray start` with both). fcsp_core/cli.py finds it through the `fcsp.commands` entry point
(pyproject.toml) and imports it for every `fcsp` command, so importing it stays cheap."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

DESCRIPTION = """\
Ray integration. A task or actor declared with @ray.remote(resources={"fcsp_mem_gb": 8, "fcsp_sm": 40}) runs
under an 8 GiB memory cap and a 40% SM share on the GPU it runs on, once fcsp is on for the cluster:
  fcsp ray start -- --head ...      instead of `ray start --head ...` on every node
It advertises this node's fcsp_mem_gb (GiB of GPU memory, summed over its GPUs) and fcsp_sm (100 per GPU),
loads fcsp's runtime-env plugin (RAY_RUNTIME_ENV_PLUGINS), which preloads libfcsp into workers with caps and
keeps `fcsp node` running on the node, and sets RAY_RUNTIME_ENV_HOOK for drivers started there."""

EPILOG = """\
environment set by `fcsp ray start` (and printed by `fcsp ray env`):
  RAY_RUNTIME_ENV_PLUGINS  [{"class": "fcsp_ray.plugin.FcspPlugin"}]
  RAY_RUNTIME_ENV_HOOK     fcsp_ray.hook.runtime_env_hook (a driver started elsewhere sets it itself,
                           or calls fcsp_ray.enable() before submitting)
environment read by the plugin: FCSP_RAY_METRICS_PORT (9478), FCSP_RAY_NODE_DAEMON=0, FCSP_RAY_NODE_LOG

`fcsp ray resources` prints {} on a node without GPUs (and says why on stderr); without NVML's Python
binding (nvidia-ml-py, a dependency of fcsp) it says so and exits 1, as does `fcsp ray start`.

examples:
  fcsp ray resources                         # {"fcsp_mem_gb": 80.0, "fcsp_sm": 100.0}
  fcsp ray start -- --head --num-gpus 1
  fcsp ray start -- --address HEAD:6379
  eval "$(fcsp ray env)" && python driver.py  # a driver started elsewhere
"""


def register(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    p = sub.add_parser(
        "ray", help="Ray integration: fenced fcsp_mem_gb / fcsp_sm resources", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=formatter,
    )  # fmt: skip
    ray_sub = p.add_subparsers(dest="ray_command", metavar="SUBCOMMAND", required=True)
    ray_sub.add_parser("resources", help="print this node's --resources JSON (from NVML)")
    ray_sub.add_parser("env", help="print the variables that turn fcsp on (for eval)")
    start = ray_sub.add_parser("start", help="ray start with fcsp's resources, plugin and hook")
    start.add_argument("ray_args", nargs=argparse.REMAINDER, metavar="-- RAY_START_ARGS ...")


def _merge_resources(args: list[str], ours: dict[str, float]) -> list[str]:
    """ray start args with `ours` merged into (under) any --resources the caller gave."""
    out: list[str] = []
    given: dict[str, float] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--resources" and i + 1 < len(args):
            given = json.loads(args[i + 1])
            i += 2
            continue
        if arg.startswith("--resources="):
            given = json.loads(arg.split("=", 1)[1])
        else:
            out.append(arg)
        i += 1
    merged = {**ours, **given}
    return [*out, f"--resources={json.dumps(merged)}"] if merged else out


def _this_node_resources(prog: str) -> dict[str, float] | None:
    """This node's resources; {} on a node without GPUs (said on stderr); None when NVML is missing or
    fails."""
    from fcsp_ray.resources import NoGpuError, NvmlError, node_resources

    try:
        return node_resources()
    except NoGpuError as exc:
        print(f"{prog}: no fcsp resources on this node: {exc}", file=sys.stderr)
        return {}
    except NvmlError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    import fcsp_ray

    if args.ray_command == "resources":
        resources = _this_node_resources("fcsp ray resources")
        if resources is None:
            return 1
        print(json.dumps(resources))
        return 0
    if args.ray_command == "env":
        for key, value in fcsp_ray.cluster_env().items():
            print(f"export {key}='{value}'")
        return 0
    ray_args = list(args.ray_args)
    if ray_args and ray_args[0] == "--":
        ray_args = ray_args[1:]
    ray_bin = shutil.which("ray")
    if ray_bin is None:
        print("fcsp ray start: the `ray` command is not installed: pip install 'fcsp[ray]'", file=sys.stderr)
        return 127
    resources = _this_node_resources("fcsp ray start")
    if resources is None:
        return 1
    env = {**os.environ, **fcsp_ray.cluster_env()}
    argv = [ray_bin, "start", *_merge_resources(ray_args, resources)]
    print(f"fcsp ray start: {' '.join(argv)}", file=sys.stderr, flush=True)
    os.execve(ray_bin, argv, env)
    return 0  # not reached
