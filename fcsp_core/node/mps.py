"""Spatial mode: the node's MPS control daemon (`mps.enabled = true` / `fcsp node --mps`).

The manager starts `nvidia-cuda-mps-control -d` with its pipe directory at <region dir>/mps (where
libfcsp's FCSP_SM_MODE=spatial points jobs) and its logs at <region dir>/mps-log, watches it and restarts it
when it stops answering, and each poll (every second):
  - gives each MPS server the SM share of its user as the server's active thread percentage (the largest
    sm_limit_pct of that uid's spatial policy entries; uids without one get the configured default): a
    client's CUDA_MPS_ACTIVE_THREAD_PERCENTAGE can only lower the server's limit (measured on an H200), so a
    job cannot raise its share;
  - lists the clients of its servers in <region dir>/mps-clients (root's; libfcsp leaves a spatial job's
    share to MPS only once it is listed there, so a job's own MPS daemon buys it nothing);
  - fences the pipe directory to the uid whose server runs (the classic control daemon serves one uid at a
    time: a client of a second uid would wait, measured, until every client of the first has exited): other
    uids cannot reach it, their clients run without MPS, and libfcsp keeps their share by time slices;
  - reads the server log for clients the server tore down after a fatal GPU error (under MPS one client's
    fault kills the other clients of the GPU: measured, the victim exited 1) and counts them
    (fcsp_mps_client_faults_total); a server that is gone after a fault is recovered by restarting the control
    daemon (the H200's recovered on its own: the next client was served at once).
Stopping `fcsp node` leaves the MPS daemon running (jobs under it run on); a new daemon adopts it."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fcsp_core.node.config import MpsConfig

log = logging.getLogger("fcsp.node")

DEFAULT_CONTROL_DIRS = ("/usr/local/nvidia/bin", "/usr/bin")
# Lines of nvidia-cuda-mps-server's log (driver 580) after a client's fault.
FATAL = re.compile(r"Client \{PID: (\d+), Context(?: ID)?: \d+\} encountered a fatal GPU error")
TORN_DOWN = re.compile(r"Client \{PID: (\d+), Context ID: \d+\} on device \d+ to be torn down")


def find_control(name: str) -> str | None:
    """The control binary: a path as given, else on PATH or in the driver's usual directories."""
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    for d in DEFAULT_CONTROL_DIRS:
        p = Path(d, name)
        if os.access(p, os.X_OK):
            return str(p)
    return None


def process_uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot): with the pid, names one process for good."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class MpsState:
    up: bool = False
    restarts: int = 0
    client_faults: int = 0
    servers: dict[int, tuple[int | None, int]] = field(default_factory=dict)  # pid -> (uid, pct)


class MpsManager:
    def __init__(self, cfg: MpsConfig, region_dir: Path, shares: Callable[[], dict[int, int]]) -> None:
        self.cfg = cfg
        self.region_dir = region_dir
        self.pipe_dir = region_dir / "mps"
        self.log_dir = Path(cfg.log_dir) if cfg.log_dir else region_dir / "mps-log"
        self.shares = shares
        self.state = MpsState()
        self.control = find_control(cfg.control)
        self._log_pos = 0
        self._log_ino: int | None = None
        self._fenced: int | None = -1  # uid the pipe directory is fenced to; None: open; -1: not set yet
        self._published: str | None = None

    # ---- talking to the control daemon ----

    def _env(self) -> dict[str, str]:
        return dict(
            os.environ, CUDA_MPS_PIPE_DIRECTORY=str(self.pipe_dir), CUDA_MPS_LOG_DIRECTORY=str(self.log_dir)
        )

    def ask(self, command: str) -> str | None:
        """One control command; its answer, or None when the daemon did not answer."""
        if self.control is None:
            return None
        try:
            out = subprocess.run(
                [self.control], input=command + "\n", env=self._env(), capture_output=True, text=True,
                timeout=self.cfg.command_timeout_seconds,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("mps: `%s` got no answer: %s", command, exc)
            return None
        if out.returncode != 0:
            return None
        return out.stdout.strip()

    def _start_daemon(self) -> bool:
        assert self.control is not None
        try:
            rc = subprocess.run(  # no pipes: the daemon it leaves behind would hold them open
                [self.control, "-d"],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=self.cfg.command_timeout_seconds,
            ).returncode  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("mps: cannot start %s: %s", self.control, exc)
            return False
        if rc != 0:
            log.error("mps: %s -d exited %d", self.control, rc)
            return False
        self.ask(f"set_default_active_thread_percentage {self._default_pct()}")
        return True

    def _default_pct(self) -> int:
        """A fresh server starts with this before the manager has seen its uid: the smallest share of the
        policy, so a job never starts above its share."""
        return min([self.cfg.default_active_thread_pct, *self.shares().values()])

    # ---- lifecycle ----

    def start(self) -> None:
        if self.control is None:
            log.error(
                "mps: %s not found: spatial mode is off on this node (jobs keep time slices)",
                self.cfg.control,
            )
            return
        self.pipe_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.log_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.ask("get_server_list") is not None:
            log.info("mps: adopting the running control daemon (pipe directory %s)", self.pipe_dir)
        elif self._start_daemon():
            log.info("mps: control daemon started (pipe directory %s, logs %s)", self.pipe_dir, self.log_dir)
        self.state.up = self.ask("get_server_list") is not None

    def poll(self) -> None:
        if self.control is None:
            return
        listing = self.ask("get_server_list")
        if listing is None:
            self.state.up = False
            log.error("mps: the control daemon does not answer: restarting it")
            if self._start_daemon():
                self.state.restarts += 1
            listing = self.ask("get_server_list")
            if listing is None:
                return
        self.state.up = True
        pids = [int(p) for p in listing.split() if p.isdigit()]
        self._read_log()
        shares = self.shares()
        servers: dict[int, tuple[int | None, int]] = {}
        for pid in pids:
            uid = process_uid(pid)
            pct = (
                shares.get(uid, self.cfg.default_active_thread_pct)
                if uid is not None
                else self._default_pct()
            )
            if self.state.servers.get(pid) != (uid, pct):
                answer = self.ask(f"set_active_thread_percentage {pid} {pct}")
                log.info("mps: server %d (uid %s): active thread percentage %d%s", pid, uid, pct,
                         "" if answer is not None else " (refused)")  # fmt: skip
            servers[pid] = (uid, pct)
        self.state.servers = servers
        uids = {uid for uid, _ in servers.values() if uid is not None}
        self._fence(uids.pop() if len(uids) == 1 else None)
        self._publish_clients(pids)

    def _publish_clients(self, servers: list[int]) -> None:
        """<region dir>/mps-clients: "pid start-time" of each client of our servers, the list libfcsp believes
        (root-owned, replaced whole) before it lets MPS keep a job's share instead of time slices."""
        lines = []
        for pid in servers:
            for client in (self.ask(f"get_client_list {pid}") or "").split():
                start = process_start_time(int(client)) if client.isdigit() else None
                if start is not None:
                    lines.append(f"{client} {start}\n")
        text = "".join(sorted(lines))
        if text == self._published:
            return
        path = self.region_dir / "mps-clients"
        tmp = path.with_name(f".mps-clients.{os.getpid()}")
        try:
            tmp.write_text(text)
            tmp.chmod(0o644)
            tmp.replace(path)
            self._published = text
        except OSError as exc:
            log.warning("mps: cannot write %s: %s", path, exc)

    def _fence(self, uid: int | None) -> None:
        """Only the uid whose server runs may reach the pipe directory; open to all while none runs."""
        if uid == self._fenced:
            return
        try:
            if uid is None:
                os.chown(self.pipe_dir, 0, 0)
                os.chmod(self.pipe_dir, 0o755)
            else:
                os.chown(self.pipe_dir, uid, -1)
                os.chmod(self.pipe_dir, 0o700)
            self._fenced = uid
        except OSError as exc:
            log.warning("mps: cannot fence %s: %s", self.pipe_dir, exc)

    def _read_log(self) -> None:
        path = self.log_dir / "server.log"
        try:
            st = path.stat()
            if st.st_ino != self._log_ino or st.st_size < self._log_pos:  # new or rotated
                self._log_ino, self._log_pos = st.st_ino, 0
            with path.open("rb") as fh:
                fh.seek(self._log_pos)
                data = fh.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # whole lines only
        self._log_pos += end
        text = data[:end].decode(errors="replace")
        faulted = FATAL.findall(text)
        torn = TORN_DOWN.findall(text)
        if torn:
            self.state.client_faults += len(torn)
            log.warning(
                "mps: the server tore down %d client(s) (pids %s) after a fatal GPU error of pid %s: "
                "spatial mode does not isolate faults", len(torn), ", ".join(torn), ", ".join(faulted) or "?",
            )  # fmt: skip
            if faulted and not any(Path(f"/proc/{p}").exists() for p in self.state.servers):
                log.error("mps: the server is gone after the fault: restarting the control daemon")
                self.ask("quit")
                if self._start_daemon():
                    self.state.restarts += 1

    # ---- metrics ----

    def families(self, hostname: str) -> list[Metric]:
        s = self.state
        up = GaugeMetricFamily(
            "fcsp_mps_up", "1 while the node's MPS control daemon answers", labels=["hostname"]
        )
        up.add_metric([hostname], 1 if s.up else 0)
        restarts = CounterMetricFamily(
            "fcsp_mps_daemon_restarts_total",
            "Times fcsp restarted the MPS control daemon",
            labels=["hostname"],
        )
        restarts.add_metric([hostname], s.restarts)
        faults = CounterMetricFamily(
            "fcsp_mps_client_faults_total",
            "MPS clients the server terminated after a fatal GPU error (of theirs or another client's)",
            labels=["hostname"],
        )
        faults.add_metric([hostname], s.client_faults)
        servers = GaugeMetricFamily(
            "fcsp_mps_server_active_thread_ratio",
            "The active thread share fcsp gave each running MPS server, 0..1",
            labels=["hostname", "uid", "pid"],
        )
        for pid, (uid, pct) in sorted(s.servers.items()):
            servers.add_metric([hostname, str(uid), str(pid)], pct / 100)
        return [up, restarts, faults, servers]

    def key(self) -> bytes:
        s = self.state
        return repr((s.up, s.restarts, s.client_faults, sorted(s.servers.items()))).encode()


def policy_shares(entries: list[object]) -> dict[int, int]:
    """uid -> the largest SM share of that uid's spatial policy entries (entries without a uid or a share, and
    time-slice entries, skipped: a time-slice tenant's larger share must not widen a spatial tenant's
    partition)."""
    out: dict[int, int] = {}
    for e in entries:
        uid = getattr(e, "uid", None)
        pct = int(getattr(e, "sm_limit_pct", 0) or 0)
        if uid is not None and 0 < pct and getattr(e, "sm_mode", "time") == "spatial":
            out[uid] = max(out.get(uid, 0), min(pct, 100))
    return out


__all__ = ["MpsManager", "MpsState", "find_control", "policy_shares", "process_start_time", "process_uid"]
