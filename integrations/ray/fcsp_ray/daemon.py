"""Keep `fcsp node` running on this node while the Ray node runs.

Started by the plugin in Ray's runtime-env agent (one per node, fate-shared with the raylet). A supervisor
thread runs `fcsp node` and restarts it when it exits (after `FCSP_RAY_RESTART_S`, default 1 s); the daemon
gets SIGTERM when the agent dies (PR_SET_PDEATHSIG). Nodes without a GPU (NVML sees none) run no daemon.
Whenever no daemon is started, the reason is the log file's last line (and a warning in the agent's log), so
whoever finds no metrics reads why there.

Environment read: FCSP_RAY_NODE_DAEMON=0 (run none), FCSP_RAY_METRICS_PORT (default 9478; 0: any free
port), FCSP_RAY_NODE_LOG (the daemon's log file; default <ray session dir>/logs/fcsp-node.log when known,
else <region dir>/fcsp-node.log), FCSP_REGION_DIR.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fcsp_ray.resources import NvmlError, gpu_memory_bytes

log = logging.getLogger(__name__)
_STARTED: list[threading.Thread] = []
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def fcsp_command() -> list[str]:
    beside = Path(sys.executable).parent / "fcsp"
    found = str(beside) if beside.exists() else shutil.which("fcsp")
    return [found] if found else [sys.executable, "-m", "fcsp_core"]


def log_path() -> Path:
    explicit = os.environ.get("FCSP_RAY_NODE_LOG")
    if explicit:
        return Path(explicit)
    session = Path("/tmp/ray/session_latest/logs")
    return session / "fcsp-node.log" if session.is_dir() else Path.cwd() / "fcsp-node.log"


def _last_line(log_file: Path) -> str:
    """The daemon's own last words (its error line when it could not start)."""
    try:
        with log_file.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError as exc:
        return f"its log {log_file} is unreadable: {exc}"
    return lines[-1].strip() if lines else "it printed nothing"


def _supervise(argv: list[str], log_file: Path, restart_s: float) -> None:
    starts = 0
    while True:
        starts += 1
        with log_file.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        log.info("fcsp: started the node daemon (pid %d, start %d)", proc.pid, starts)
        code = proc.wait()
        last = _last_line(log_file)
        log.warning("fcsp: the node daemon exited with %d (%s); restarting in %.1f s", code, last, restart_s)
        time.sleep(restart_s)


NOT_STARTED = "fcsp: the node daemon was not started: "  # the prefix of the log line that says why


def note(log_file: Path, line: str) -> None:
    """Append one line to the daemon's log, where `fcsp demo --ray` and operators look for it."""
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a") as out:
            out.write(line + "\n")
    except OSError as exc:
        log.warning("fcsp: cannot write %s: %s", log_file, exc)


def _why_not() -> str | None:
    """Why this node runs no daemon, or None when it should run one."""
    if os.environ.get("FCSP_RAY_NODE_DAEMON", "1") == "0":
        return "FCSP_RAY_NODE_DAEMON=0"
    try:
        gpu_memory_bytes()
    except NvmlError as exc:
        return str(exc)
    return None


def ensure_started() -> bool:
    """Start the supervisor once per process if this node has GPUs; True when it runs. When it does not,
    the reason goes to the daemon's log file and the agent's log."""
    if _STARTED:
        return True
    log_file = log_path()
    reason = _why_not()
    if reason is not None:
        note(log_file, NOT_STARTED + reason)
        log.warning("%s%s", NOT_STARTED, reason)
        return False
    port = os.environ.get("FCSP_RAY_METRICS_PORT", "9478")
    argv = [*fcsp_command(), "node", "--metrics-port", port]
    restart_s = float(os.environ.get("FCSP_RAY_RESTART_S", "1"))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    thread = threading.Thread(
        target=_supervise, args=(argv, log_file, restart_s), name="fcsp-node-supervisor", daemon=True
    )
    thread.start()
    _STARTED.append(thread)
    return True
