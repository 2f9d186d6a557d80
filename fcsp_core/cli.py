"""The `fcsp` command: run jobs under caps, simulate a node, show the node's state.

Layers point down: this module parses arguments and prints; launch.py starts processes; region.py talks to
libfcsp.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from fcsp_core import __version__, launch, paths, region, views
from fcsp_core.config import (
    MAX_GPUS,
    MEM_LIMIT_ACCEPTS,
    SIM_MAX_GPUS,
    SIM_MAX_SMS,
    SIZE_ACCEPTS,
    SM_LIMIT_ACCEPTS,
    EnvError,
    MemLimit,
    PolicyEntry,
    SimSettings,
    TenantLimits,
    check_env,
    check_tenant_name,
    parse_mem_limit,
    parse_size_bytes,
    parse_sm_limit,
    read_sim_env,
)
from fcsp_core.fmt import format_bytes
from fcsp_core.node import command as node_command

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad option value: printed as one line, exit 2."""


# ------------------------------------------------------------------------------------------------------
# Help texts
# ------------------------------------------------------------------------------------------------------

MAIN_EPILOG = """\
`fcsp COMMAND --help` explains each command's options, environment and examples.

environment (read by libfcsp in a job, or by fcsp):
  FCSP_MEM_LIMIT[_<gpu>]   memory cap of the job's tenant (all GPUs, or GPU <gpu>): 8G, 1.5GiB, 50%
  FCSP_SM_LIMIT[_<gpu>]    SM share, percent 1..100
  FCSP_TENANT              tenant name: your processes with the same name share one cap
  FCSP_REGION_DIR          the node region's directory (default /run/fcsp, or $XDG_RUNTIME_DIR/fcsp)
  FCSP_ON_INIT_FAILURE     for a job that asked for no cap: passthrough (the default) or fail; a job that
                           asked for caps is always refused (fail-closed) when fcsp cannot set up
  FCSP_SIM_GPUS, FCSP_SIM_MEM, FCSP_SIM_SMS, FCSP_SIM_KERNEL_US, FCSP_SIM_DIR
                           the simulated driver (set by `fcsp sim`)
  FCSP_LIB_DIR             take libfcsp.so, the simulated driver and fcsp-probe from this directory
Limits from the node's scheduler (the policy table) win over the environment, which may only lower them.

examples:
  fcsp demo
  fcsp run --mem 2G -- fcsp probe init meminfo fill     # try a cap with the bundled CUDA client
  fcsp run --mem 8G --sm 50 -- python train.py
  fcsp sim --gpus 2 -- fcsp run --mem 1G -- ./my_cuda_program
  fcsp status --json
"""

RUN_DESCRIPTION = """\
Run CMD (and every process it starts) as one tenant: all its processes share one device-memory cap and one
SM share on each GPU they use. libfcsp.so is preloaded into CMD (LD_PRELOAD) and enforces the caps: an
allocation past the cap fails with CUDA_ERROR_OUT_OF_MEMORY, and cuMemGetInfo / NVML report the cap as the
total memory.

Limits set by the node's scheduler (the policy table) win over these options."""

RUN_EPILOG = f"""\
values:
  --mem SIZE   {MEM_LIMIT_ACCEPTS}
  --sm PCT     {SM_LIMIT_ACCEPTS}

environment given to CMD:
  LD_PRELOAD            libfcsp.so, before what was already there
  FCSP_TENANT           the tenant name
  FCSP_MEM_LIMIT        the memory cap (with --mem)
  FCSP_SM_LIMIT         the SM share (with --sm)
  CUDA_VISIBLE_DEVICES  the GPUs (with --gpu); if already set (e.g. by Slurm), --gpu indices are
                        positions in it: under CUDA_VISIBLE_DEVICES=2,3, --gpu 1 selects GPU 3
  Without --mem/--sm, FCSP_MEM_LIMIT[_<gpu>] / FCSP_SM_LIMIT[_<gpu>] already set are kept.

environment read:
  FCSP_REGION_DIR       the node region's directory (default /run/fcsp as root or if it exists, else
                        $XDG_RUNTIME_DIR/fcsp)
  FCSP_LIB_DIR          where libfcsp.so is (default: the installed package)

An invalid FCSP_* value inherited from the environment (FCSP_MEM_LIMIT=lots) is refused like a bad option,
before CMD starts.

exit status: CMD's, or 128+N if signal N killed it; 2 for a bad option or FCSP_* value; 127 if CMD is not
found.
SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are passed on to CMD.

examples:
  fcsp run --mem 8G --sm 50 -- python train.py
  fcsp run --mem 25% --gpu 0 1 --tenant alice-nb -- jupyter lab
  fcsp sim -- fcsp run --mem 1G -- ./my_cuda_program
"""

SIM_DESCRIPTION = """\
Run CMD against fcsp's simulated CUDA driver and NVML (libcuda.so.1 and libnvidia-ml.so.1 first on
LD_LIBRARY_PATH), so fcsp can be tried and tested on a machine without a GPU. The simulated node keeps its
state (and its own fcsp region) in a private temporary directory, removed when CMD ends."""

SIM_EPILOG = f"""\
values:
  --mem SIZE   {SIZE_ACCEPTS}

environment given to CMD:
  LD_LIBRARY_PATH       the simulated driver's directory first
  FCSP_SIM_GPUS, FCSP_SIM_MEM (bytes), FCSP_SIM_SMS, FCSP_SIM_KERNEL_US
                        the settings below
  FCSP_SIM_DIR          the simulated node's state directory
  FCSP_REGION_DIR       $FCSP_SIM_DIR/region: a simulated node never shares the real node's region

environment read:
  FCSP_SIM_GPUS, FCSP_SIM_MEM, FCSP_SIM_SMS, FCSP_SIM_KERNEL_US
                        defaults for the options
  FCSP_SIM_DIR          if set (inside another `fcsp sim`), that node is used and kept
  FCSP_REGION_DIR       if set, kept

exit status: CMD's, or 128+N if signal N killed it; 2 for a bad option; 127 if CMD is not found.

examples:
  fcsp sim -- fcsp demo
  fcsp sim --gpus 2 --mem 16G -- fcsp run --mem 1G -- ./my_cuda_program
  fcsp sim -- sh -c 'fcsp run --mem 2G -- ./prog & fcsp status'
"""

STATUS_DESCRIPTION = """\
Show the node region: its GPUs (UUID, total memory, memory used by tenants), its tenants (processes, and per
GPU the memory used, cap, peak, refused allocations and SM share) and their processes (PID, tenant,
heartbeat age, memory used)."""

STATUS_EPILOG = """\
environment read:
  FCSP_REGION_DIR   the region's directory when --dir is not given (default /run/fcsp as root or if it
                    exists, else $XDG_RUNTIME_DIR/fcsp)

If there is no region yet, it says so (exit 0, empty status).

examples:
  fcsp status
  fcsp status --json | jq '.tenants[] | {name, used_bytes}'
  fcsp sim -- sh -c 'fcsp run --mem 1G -- ./prog & sleep 1; fcsp status'
"""

LIB_PATH_EPILOG = """\
environment read:
  FCSP_LIB_DIR   a directory to take libfcsp.so from instead of the installed package

example:
  LD_PRELOAD=$(fcsp lib-path) FCSP_MEM_LIMIT=4G ./my_cuda_program
"""

LIMIT_DESCRIPTION = """\
Set a tenant's caps in the node's policy table, or change them while it runs: its processes pick the change
up from their heartbeat within 100 ms, with no restart. Only root or the owner of the region directory may
write the table. A tenant with a policy entry takes its limits from it (under a scheduler, FCSP_SCHEDULER set,
its own FCSP_MEM_LIMIT/FCSP_SM_LIMIT may still lower them, never raise them). Options not given keep the
entry's current values."""

LIMIT_EPILOG = """\
examples:
  fcsp limit run-4242 --sm 75           raise a running `fcsp run` tenant's SM share to 75%
  fcsp limit train --mem 16G --sm 40
  fcsp limit train --remove
"""

PROBE_EPILOG = """\
Try a cap without a CUDA program of your own (the probe is a small CUDA driver-API client):
  fcsp run --mem 2G -- fcsp probe init meminfo fill            # sees 2 GiB, fills it, then is refused
  fcsp sim -- fcsp run --mem 1G -- fcsp probe init alloc 512M alloc 1G    # no GPU: the simulated driver
"""

DEMO_DESCRIPTION = """\
Three tenants with different caps share one GPU, at the same time:
  train   cap 6 GiB, one process allocating 4 x 1 GiB         -> all granted
  infer   cap 2 GiB, two processes allocating 768 MiB each    -> both granted (one shared cap)
  greedy  cap 1 GiB, one process allocating 512 MiB then 1 GiB -> the 1 GiB past its cap is refused
Each process is fcsp-probe, a small CUDA driver-API client. The demo prints what each tenant asked, got and
saw as total memory, and the `fcsp status` view while they hold their memory. Without an NVIDIA GPU (or
with --sim) it runs on the simulated driver and says so. Exit status 0 if the caps held as expected."""

DEMO_EPILOG = """\
environment read:
  FCSP_LIB_DIR   where libfcsp.so, fcsp-probe and the simulated driver are (default: the package)
  FCSP_SIM_DIR   if set (inside `fcsp sim`), the demo uses that simulated node

The demo uses a private region directory, never the node's.

examples:
  fcsp demo
  fcsp demo --sim
"""


# ------------------------------------------------------------------------------------------------------
# Parser
# ------------------------------------------------------------------------------------------------------


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=28, width=110)


COMMAND_ENTRY_POINTS = "fcsp.commands"  # pyproject.toml: a module with register(sub, formatter) and run(args)


def integration_commands() -> dict[str, ModuleType]:
    """The integrations' subcommands (`fcsp ray`, `fcsp slurm`), found through the installed package's entry
    points: the core never imports its integrations by name. One that cannot be imported is left out, with
    one line on stderr."""
    found: dict[str, ModuleType] = {}
    for point in sorted(entry_points(group=COMMAND_ENTRY_POINTS), key=lambda p: p.name):
        try:
            found[point.name] = point.load()
        except ImportError as exc:
            print(f"fcsp: `fcsp {point.name}` is unavailable ({point.value}: {exc})", file=sys.stderr)
    return found


def build_parser(integrations: dict[str, ModuleType] | None = None) -> argparse.ArgumentParser:
    """fcsp's argument parser, with the subcommands of `integrations` (default: integration_commands())."""
    parser = argparse.ArgumentParser(
        prog="fcsp",
        description="fcsp: fractional GPUs that are really fenced (memory caps and SM shares per job).",
        epilog=MAIN_EPILOG,
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"fcsp {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run a command as one tenant under caps",
        description=RUN_DESCRIPTION,
        epilog=RUN_EPILOG,
        formatter_class=_formatter,
        usage="fcsp run [--mem SIZE] [--sm PCT] [--gpu IDX ...] [--tenant NAME] -- CMD [ARG ...]",
    )
    run.add_argument("--mem", metavar="SIZE", help="device-memory cap on each GPU: 8G, 1.5GiB, 50%%, ...")
    run.add_argument("--sm", metavar="PCT", help="SM share on each GPU, percent 1..100")
    run.add_argument(
        "--gpu",
        metavar="IDX",
        nargs="+",
        action="extend",
        help="only these GPUs (CUDA_VISIBLE_DEVICES): --gpu 0 1 -- CMD or --gpu 0,1",
    )
    run.add_argument("--tenant", metavar="NAME", help="tenant name (default: run-<pid of fcsp run>)")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command to run")

    sim = sub.add_parser(
        "sim",
        help="run a command against the simulated driver",
        description=SIM_DESCRIPTION,
        epilog=SIM_EPILOG,
        formatter_class=_formatter,
        usage="fcsp sim [--gpus N] [--mem SIZE] [--sms N] [--kernel-us SPEC] -- CMD [ARG ...]",
    )
    sim.add_argument("--gpus", metavar="N", help=f"number of simulated GPUs, 1..{SIM_MAX_GPUS} (default 1)")
    sim.add_argument("--mem", metavar="SIZE", help="memory of each simulated GPU (default 80G)")
    sim.add_argument("--sms", metavar="N", help=f"SMs of each simulated GPU, 1..{SIM_MAX_SMS} (default 132)")
    sim.add_argument(
        "--kernel-us",
        metavar="SPEC",
        help="kernel wave time in us: a number, or name=us items (spin=200,noop=1,default=5); default 5",
    )
    sim.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command to run")

    status = sub.add_parser(
        "status",
        help="show the node's GPUs, tenants and processes",
        description=STATUS_DESCRIPTION,
        epilog=STATUS_EPILOG,
        formatter_class=_formatter,
    )
    status.add_argument("--json", action="store_true", help="print JSON (byte counts in *_bytes fields)")
    status.add_argument("--dir", metavar="DIR", help="the region's directory (default: see below)")

    sub.add_parser(
        "lib-path",
        help="print the path of libfcsp.so",
        description="Print the absolute path of libfcsp.so, the library to preload (LD_PRELOAD) into a job.",
        epilog=LIB_PATH_EPILOG,
        formatter_class=_formatter,
    )

    limit = sub.add_parser(
        "limit",
        help="set or change a tenant's caps in the policy table (applies live)",
        description=LIMIT_DESCRIPTION,
        epilog=LIMIT_EPILOG,
        formatter_class=_formatter,
    )
    limit.add_argument("tenant", metavar="TENANT", help="the tenant's name (FCSP_TENANT of its processes)")
    limit.add_argument("--mem", metavar="SIZE", help="device-memory cap on each GPU: 8G, 1.5GiB, 8589934592")
    limit.add_argument("--sm", metavar="PCT", help="SM share on each GPU, percent 1..100")
    limit.add_argument("--uid", metavar="UID", help="only processes of this uid may take these limits")
    limit.add_argument(
        "--remove", action="store_true", help="remove the tenant's entry from the policy table"
    )
    limit.add_argument("--dir", metavar="DIR", help="the region's directory (default: as for fcsp status)")

    demo = sub.add_parser(
        "demo",
        help="see tenants with different caps share one GPU",
        description=DEMO_DESCRIPTION,
        epilog=DEMO_EPILOG,
        formatter_class=_formatter,
    )
    demo.add_argument("--sim", action="store_true", help="use the simulated driver even if there is a GPU")
    demo.add_argument("--ray", action="store_true", help="the Ray demo (needs ray: pip install 'fcsp[ray]')")
    sub.add_parser(
        "probe",
        help="run fcsp-probe, a CUDA driver-API client, to try a cap (fcsp probe --help)",
        add_help=False,
    )
    node_command.register(sub, _formatter)
    for module in (integration_commands() if integrations is None else integrations).values():
        module.register(sub, _formatter)
    return parser


# ------------------------------------------------------------------------------------------------------
# Option values
# ------------------------------------------------------------------------------------------------------


def _command(args: argparse.Namespace, name: str) -> list[str]:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError(f"fcsp {name}: no command given; usage: fcsp {name} [options] -- CMD [ARG ...]")
    return command


def _c_message(cmd: str, option: str, text: str, exc: ValueError) -> str:
    """One line for a value a parser refused: its message quotes the value and says what is accepted."""
    if f"'{text}'" in str(exc):
        return f"fcsp {cmd}: {option}: {exc}"
    return f"fcsp {cmd}: {option} {text!r}: {exc}"


def _mem_option(cmd: str, text: str) -> MemLimit:
    try:
        return parse_mem_limit(text)
    except ValueError as exc:
        raise UsageError(_c_message(cmd, "--mem", text, exc)) from None


def _sm_option(cmd: str, text: str) -> int:
    try:
        return parse_sm_limit(text)
    except ValueError as exc:
        raise UsageError(_c_message(cmd, "--sm", text, exc)) from None


def _gpu_option(values: Sequence[str]) -> list[int]:
    gpus: list[int] = []
    for value in values:
        for part in value.split(","):
            if not part.strip().isdigit() or int(part) >= MAX_GPUS:
                raise UsageError(
                    f"fcsp run: --gpu {value!r} is invalid: use GPU indices 0..{MAX_GPUS - 1} "
                    "(--gpu 0 1 or --gpu 0,1)"
                )
            if int(part) not in gpus:
                gpus.append(int(part))
    return gpus


def _int_option(cmd: str, option: str, text: str, low: int, high: int) -> int:
    accepts = f"a whole number from {low} to {high}"
    try:
        value = int(text, 10)
    except ValueError:
        raise UsageError(f"fcsp {cmd}: {option} {text!r} is invalid: use {accepts}") from None
    if value < low or value > high:
        raise UsageError(f"fcsp {cmd}: {option} {text!r} is invalid: use {accepts}")
    return value


# ------------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    mem = _mem_option("run", args.mem) if args.mem is not None else None
    sm = _sm_option("run", args.sm) if args.sm is not None else None
    gpus = _gpu_option(args.gpu) if args.gpu else None
    tenant = args.tenant if args.tenant is not None else launch.default_tenant_name()
    try:
        check_tenant_name(tenant)
    except ValueError as exc:
        raise UsageError(_c_message("run", "--tenant", tenant, exc)) from None
    command = _command(args, "run")
    limits = TenantLimits(tenant=tenant, mem_limit=mem, sm_limit_pct=sm)
    try:
        env = launch.tenant_env(os.environ, limits, paths.libfcsp_path(), gpus)
    except ValueError as exc:
        raise UsageError(f"fcsp run: --gpu: {exc}") from None
    try:
        check_env(env)  # what libfcsp will read in CMD: an inherited bad value stops us here, not there
        read_sim_env(env)  # and the simulated driver, if CMD runs on it
    except EnvError as exc:
        text = str(exc).removeprefix("fcsp: ")
        raise UsageError(f"fcsp run: in the environment, {text}") from None
    try:
        return launch.run_forwarding(command, env)
    except launch.CommandNotFoundError as exc:
        print(f"fcsp run: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        warning = launch.remove_tenant_if_idle(tenant)
        if warning:
            print(f"fcsp run: warning: {warning}", file=sys.stderr)


def cmd_sim(args: argparse.Namespace) -> int:
    inherited = read_sim_env()
    mem_bytes = inherited.mem_bytes
    if args.mem is not None:
        try:
            mem_bytes = parse_size_bytes(args.mem)
        except ValueError as exc:
            raise UsageError(_c_message("sim", "--mem", args.mem, exc)) from None
    gpus = inherited.gpus if args.gpus is None else _int_option("sim", "--gpus", args.gpus, 1, SIM_MAX_GPUS)
    sms = inherited.sms if args.sms is None else _int_option("sim", "--sms", args.sms, 1, SIM_MAX_SMS)
    settings = SimSettings(
        gpus=gpus,
        mem_bytes=mem_bytes,
        sms=sms,
        kernel_us=args.kernel_us if args.kernel_us is not None else inherited.kernel_us,
    )
    command = _command(args, "sim")
    with launch.sim_node(os.environ, settings, paths.sim_dir()) as node:
        print(
            f"fcsp sim: simulated driver, {node.gpus} GPU(s) x {format_bytes(node.mem_bytes)}, "
            f"{node.sms} SMs each (state in {node.state_dir})",
            file=sys.stderr,
            flush=True,
        )
        try:
            return launch.run_forwarding(command, node.env)
        except launch.CommandNotFoundError as exc:
            print(f"fcsp sim: {exc}", file=sys.stderr)
            return exc.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    snapshot = region.read_snapshot(Path(args.dir) if args.dir else None)
    print(views.status_json(snapshot) if args.json else views.status_text(snapshot))
    return 0


def cmd_lib_path(args: argparse.Namespace) -> int:
    print(paths.libfcsp_path())
    return 0


def _node_hint(directory: Path | None) -> None:
    """Refuse, with what to do, when there is no region directory: no `fcsp node` (nor job) ever ran here."""
    where = directory if directory is not None else region.default_region_dir()
    if not where.is_dir():
        raise UsageError(
            f"fcsp limit: no fcsp region at {where}: start the node daemon first (as root: fcsp node; it "
            "creates the region and the policy table), or give --dir DIR"
        )


def cmd_limit(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else None
    _node_hint(directory)
    if args.remove:
        region.policy_remove(args.tenant, directory)
        print(f"fcsp limit: removed the policy entry of {args.tenant}")
        return 0
    if args.mem is None and args.sm is None:
        raise UsageError("fcsp limit: give --mem SIZE and/or --sm PCT (or --remove)")
    current = next((e for e in region.policy_list(directory) if e.tenant == args.tenant), None)
    mem_bytes = current.mem_limit_bytes if current else 0
    if args.mem is not None:
        mem = _mem_option("limit", args.mem)
        if mem.limit_bytes is None:
            raise UsageError(
                f"fcsp limit: --mem {args.mem!r}: a percentage needs the GPU's size; "
                "give bytes or a unit (8G)"
            )
        mem_bytes = mem.limit_bytes
    sm = (current.sm_limit_pct if current else 0) if args.sm is None else _sm_option("limit", args.sm)
    uid = current.uid if current else None
    if args.uid is not None:
        uid = _int_option("limit", "--uid", args.uid, 0, 2**32 - 1)
    try:
        entry = PolicyEntry(
            tenant=args.tenant,
            uid=uid,
            mem_limit_bytes=mem_bytes,
            sm_limit_pct=sm,
            gpus=current.gpus if current else [],
            sm_mode=current.sm_mode if current else "time",
        )
    except ValueError as exc:
        raise UsageError(f"fcsp limit: {exc}") from None
    region.policy_put(entry, directory)
    mem_text = format_bytes(mem_bytes) if mem_bytes else "uncapped"
    sm_text = f"{sm}%" if sm else "uncapped"
    print(
        f"fcsp limit: {args.tenant}: memory {mem_text}, SM {sm_text} (running processes apply it in 100 ms)"
    )
    return 0


def cmd_probe(argv: Sequence[str]) -> int:
    """Run the installed fcsp-probe with these arguments (exec: under `fcsp run`, the tenant's process)."""
    probe = paths.probe_path()
    if not argv or argv[0] in ("-h", "--help"):
        print(f"fcsp probe runs {probe} (fcsp-probe) with the same arguments:\n{PROBE_EPILOG}", flush=True)
    os.execv(probe, [str(probe), *argv])
    return 127  # not reached


def cmd_demo(args: argparse.Namespace) -> int:
    if args.ray:
        from fcsp_ray import demo as ray_demo

        return ray_demo.main(force_sim=args.sim)
    from fcsp_core import demo

    return demo.main(force_sim=args.sim)


COMMANDS = {
    "run": cmd_run,
    "sim": cmd_sim,
    "status": cmd_status,
    "lib-path": cmd_lib_path,
    "limit": cmd_limit,
    "demo": cmd_demo,
    "node": node_command.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `fcsp`; returns the exit status (and exits with it when run as a script)."""
    integrations = integration_commands()
    parser = build_parser(integrations)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["probe"]:  # every argument is the probe's, --help too
        try:
            return cmd_probe(argv[1:])
        except paths.NativeMissingError as exc:
            print(exc, file=sys.stderr)
            return 1
        except BrokenPipeError:  # `fcsp probe --help | head`
            return 128 + signal.SIGPIPE
    args = parser.parse_args(argv)
    try:
        command = COMMANDS.get(args.command_name)
        return command(args) if command else integrations[args.command_name].run(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except EnvError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except paths.NativeMissingError as exc:
        print(exc, file=sys.stderr)
        return 1
    except region.FcspError as exc:
        print(f"fcsp {args.command_name}: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`fcsp status | head`): stop quietly, as a shell tool killed by SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
