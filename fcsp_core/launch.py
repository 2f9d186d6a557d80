"""Starting jobs: the environment of a tenant (`fcsp run`) and of a simulated node (`fcsp sim`), and running a
command with signal forwarding.

Pure mechanics, no argument parsing: the CLI and the demo both use it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fcsp_core import region
from fcsp_core.config import SimSettings, TenantLimits

SIM_DEFAULT_GPUS = 1
SIM_DEFAULT_MEM_BYTES = 80 << 30
SIM_DEFAULT_SMS = 132

# Signals `fcsp run` / `fcsp sim` pass on to the command.
FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
_SI_KERNEL = 0x80  # si_code of a signal sent by the kernel, e.g. the terminal's ^C to the foreground group


def default_tenant_name() -> str:
    return f"run-{os.getpid()}"


_SANITIZER_RUNTIME = re.compile(r"^lib(a|hwa|t|ub|m|l)san\.so")


def prepend_preload(existing: str | None, lib: str) -> str:
    """LD_PRELOAD with `lib` first; the other entries stay, with their separator (spaces or colons).

    A sanitizer runtime (libasan.so, ...) stays ahead of `lib`: it must come first of all libraries.
    """
    if not existing or not existing.strip():
        return lib
    sep = " " if " " in existing.strip() else ":"
    entries = [p for p in existing.replace(":", " ").split() if p != lib]
    runtimes = [p for p in entries if _SANITIZER_RUNTIME.match(os.path.basename(p))]
    others = [p for p in entries if p not in runtimes]
    return sep.join([*runtimes, lib, *others])


def prepend_path(existing: str | None, directory: str) -> str:
    """A colon-separated search path (LD_LIBRARY_PATH) with `directory` first."""
    others = [p for p in (existing or "").split(":") if p and p != directory]
    return ":".join([directory, *others])


def tenant_env(
    base: Mapping[str, str], limits: TenantLimits, lib: Path, gpus: Sequence[int] | None = None
) -> dict[str, str]:
    """The environment of a job that runs as one tenant under `limits`, with libfcsp preloaded.

    With `gpus`, CUDA_VISIBLE_DEVICES selects them (the caps apply to each); see visible_devices.
    """
    env = dict(base)
    env["LD_PRELOAD"] = prepend_preload(env.get("LD_PRELOAD"), str(lib))
    env.update(limits.to_env())
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = visible_devices(env.get("CUDA_VISIBLE_DEVICES"), gpus)
    return env


def visible_devices(existing: str | None, gpus: Sequence[int]) -> str:
    """CUDA_VISIBLE_DEVICES for GPU indices as the caller sees them: positions in an existing
    CUDA_VISIBLE_DEVICES (a scheduler's allocation, e.g. "2,3" under Slurm), else physical indices.
    ValueError if an index is past the existing list."""
    if existing is None or not existing.strip():
        return ",".join(str(g) for g in gpus)
    visible = [d.strip() for d in existing.split(",") if d.strip()]
    past = [g for g in gpus if g >= len(visible)]
    if past:
        raise ValueError(
            f"GPU {past[0]} is not visible: CUDA_VISIBLE_DEVICES={existing!r} shows {len(visible)} GPU(s), "
            f"indices 0..{len(visible) - 1}"
        )
    return ",".join(visible[g] for g in gpus)


@dataclass(frozen=True)
class SimNode:
    """A simulated node: the driver's settings, where its state lives and the environment to run in it."""

    gpus: int
    mem_bytes: int
    sms: int
    kernel_us: str | None
    state_dir: Path
    region_dir: Path
    env: dict[str, str]
    owned: bool  # the state directory was made here (and is removed afterwards)


@contextmanager
def sim_node(base: Mapping[str, str], settings: SimSettings, driver_dir: Path) -> Iterator[SimNode]:
    """Enter a simulated node: the driver of `driver_dir` first on LD_LIBRARY_PATH, FCSP_SIM_* set.

    FCSP_SIM_DIR is a fresh private directory, removed on exit, unless already set (a nested `fcsp sim`
    shares its parent's node). FCSP_REGION_DIR is its `region` subdirectory unless already set: a simulated
    node never shares the real node's region.
    """
    env = dict(base)
    inherited = env.get("FCSP_SIM_DIR")
    owned = not inherited
    state_dir = Path(inherited) if inherited else Path(tempfile.mkdtemp(prefix="fcsp-sim-"))
    try:
        region_dir = Path(env["FCSP_REGION_DIR"]) if env.get("FCSP_REGION_DIR") else state_dir / "region"
        node = SimNode(
            gpus=settings.gpus or SIM_DEFAULT_GPUS,
            mem_bytes=settings.mem_bytes or SIM_DEFAULT_MEM_BYTES,
            sms=settings.sms or SIM_DEFAULT_SMS,
            kernel_us=settings.kernel_us,
            state_dir=state_dir,
            region_dir=region_dir,
            env=env,
            owned=owned,
        )
        env["LD_LIBRARY_PATH"] = prepend_path(env.get("LD_LIBRARY_PATH"), str(driver_dir))
        env["FCSP_SIM_GPUS"] = str(node.gpus)
        env["FCSP_SIM_MEM"] = str(node.mem_bytes)
        env["FCSP_SIM_SMS"] = str(node.sms)
        if node.kernel_us is not None:
            env["FCSP_SIM_KERNEL_US"] = node.kernel_us
        env["FCSP_SIM_DIR"] = str(state_dir)
        env["FCSP_REGION_DIR"] = str(region_dir)
        yield node
    finally:
        if owned:
            shutil.rmtree(state_dir, ignore_errors=True)


class CommandNotFoundError(OSError):
    """The command could not be started (exit 127: not found, 126: not executable)."""

    def __init__(self, command: str, reason: str, exit_code: int) -> None:
        super().__init__(f"{command}: {reason}")
        self.exit_code = exit_code


def run_forwarding(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run argv with env, pass FORWARDED_SIGNALS on to it, and return its exit code (128 + the signal if a
    signal killed it), like a shell.

    Signals are taken synchronously (sigtimedwait), so no Python handler runs in between. A signal the
    terminal sent to the whole foreground process group (si_code SI_KERNEL) already reached the command if
    it shares our group, so it is not sent twice.
    """
    waited = {*FORWARDED_SIGNALS, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        try:
            # The child gets our original mask back, and the default action for the signals Python ignores.
            pid = os.posix_spawnp(
                argv[0],
                list(argv),
                dict(env),
                setsigmask=old_mask,
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except FileNotFoundError:
            raise CommandNotFoundError(argv[0], "command not found", 127) from None
        except PermissionError:
            raise CommandNotFoundError(argv[0], "permission denied", 126) from None
        while True:
            info = signal.sigtimedwait(waited, 1.0)
            if info is not None and info.si_signo != signal.SIGCHLD:
                _forward(pid, info.si_signo, info.si_code)
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                break
        # Drain what arrived while we waited, so unblocking delivers nothing stale.
        while signal.sigtimedwait(waited, 0) is not None:
            pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _forward(pid: int, signo: int, si_code: int) -> None:
    if si_code == _SI_KERNEL:
        try:
            if os.getpgid(pid) == os.getpgrp():
                return  # the terminal sent it to the whole group: the command has it already
        except ProcessLookupError:
            return
    try:
        os.kill(pid, signo)
    except ProcessLookupError:
        pass  # already gone; waitpid reaps it


def remove_tenant_if_idle(name: str) -> str | None:
    """Remove tenant `name` from the node region if it exists and has no process left.

    Returns a warning for anything other than "no region", "no such tenant" or "still in use" (all normal).
    """
    try:
        with region.Region.open(create=False) as reg:
            reg.remove_tenant(name)
    except (region.FcspNotFoundError, region.FcspBusyError):
        return None
    except region.FcspError as exc:
        return f"could not remove tenant {name!r}: {exc.message}"
    return None
