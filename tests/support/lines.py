"""Reading a running process's stdout line by line, with a deadline (tests that watch a job as it runs)."""

from __future__ import annotations

import os
import select
import subprocess
import time


class LineReader:
    """The lines of proc's stdout (a pipe), read as they come; lines not asked for are skipped."""

    def __init__(self, proc: subprocess.Popen[bytes], what: str) -> None:
        self.proc = proc
        self.what = what  # names the process in failure messages
        self._buf = b""

    @property
    def pending(self) -> bytes:
        """What was read from the pipe but not returned as a line yet."""
        return self._buf

    def line(self, prefix: str, timeout: float) -> str:
        """The next line starting with prefix (stripped), waiting at most timeout seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                line = raw.decode(errors="replace").strip()
                if line.startswith(prefix):
                    return line
            left = deadline - time.monotonic()
            chunk = os.read(fd, 65536) if left > 0 and select.select([fd], [], [], left)[0] else b""
            if not chunk:
                exited = self.proc.poll()
                err = ""
                if exited is not None and self.proc.stderr is not None:
                    err = ": " + self.proc.stderr.read().decode(errors="replace")
                raise AssertionError(
                    f"no line starting {prefix!r} from {self.what} within {timeout} s (exit {exited}){err}"
                )
            self._buf += chunk
