"""A running `fcsp node`, for tests/test_node_*.py (the node_daemon fixture starts them)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass
class NodeDaemon:
    """A running `fcsp node` (its output goes to log_path)."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    region_dir: Path
    url: str | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """The first match of pattern in the log (from character start on), waiting up to timeout."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.compile(pattern, re.M).search(self.log(), start)
            if m:
                return m
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"fcsp node: no {pattern!r} in its log within {timeout} s (exit {self.proc.poll()}):\n"
                    + self.log()
                )
            time.sleep(0.02)

    def scrape(self, timeout: float = 10.0) -> str:
        assert self.url, "started without metrics"
        with urllib.request.urlopen(self.url, timeout=timeout) as resp:
            return resp.read().decode()

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)
