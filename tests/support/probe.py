"""fcsp-probe's output and long-running probes, for tests that drive the driver API through it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

_PROBE_CMD = re.compile(r"[a-z][a-z0-9_-]*")


def parse_probe(stdout: str) -> list[dict[str, str]]:
    """Probe result lines as dicts: `alloc ok kind=mem size=1073741824` ->
    {"cmd": "alloc", "status": "ok", "kind": "mem", "size": "1073741824"}. Lines that do not start with a
    lower-case command word (blank lines, log lines) are left out; other bare words go to "args"."""
    rows = []
    for line in stdout.splitlines():
        words = line.split()
        if not words or not _PROBE_CMD.fullmatch(words[0]):
            continue
        row = {"cmd": words[0]}
        rest = words[1:]
        if rest and "=" not in rest[0]:
            row["status"] = rest[0]
            rest = rest[1:]
        bare = []
        for word in rest:
            if "=" in word:
                key, value = word.split("=", 1)
                row[key] = value
            else:
                bare.append(word)
        if bare:
            row["args"] = " ".join(bare)
        rows.append(row)
    return rows


# The probe commands that answer with a line of their own before `hold` (their arguments do not).
_ANSWERING = frozenset({"alloc", "launch"})


def start_holder(
    probe: Path | str, env: Mapping[str, str], *cmds: str, refused_ok: bool = False
) -> subprocess.Popen[str]:
    """fcsp-probe running `init CMDS... hold`: returns once init and each alloc/launch has answered `ok` (or,
    with refused_ok, CUDA_ERROR_OUT_OF_MEMORY), holding what it allocated until its stdin closes
    (p.communicate(input="") releases it)."""
    p = subprocess.Popen(
        [str(probe), "init", *cmds, "hold"],
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    for _ in range(1 + sum(1 for c in cmds if c in _ANSWERING)):
        line = p.stdout.readline()
        ok = " ok " in f"{line.rstrip()} " or (refused_ok and "CUDA_ERROR_OUT_OF_MEMORY" in line)
        if not ok:
            p.kill()
            _, err = p.communicate(timeout=60)
            raise AssertionError(f"fcsp-probe init {' '.join(cmds)} hold: {line!r}\n{err}")
    return p


_PROBE: list[Path] = []  # set by the run_probe fixture, for the plain function


def _probe_path() -> Path:
    if _PROBE:
        return _PROBE[0]
    found = Path(os.environ["FCSP_LIB_DIR"]) / "fcsp-probe" if os.environ.get("FCSP_LIB_DIR") else None
    if found is None:
        from fcsp_core import paths

        found = paths.lib_dir() / "fcsp-probe"
    return found


def exit_status(returncode: int) -> str:
    """An exit status as a person reads it: 1, or -11 (SIGSEGV)."""
    if returncode < 0:
        try:
            return f"{returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            pass
    meaning = {66: "AddressSanitizer report", 67: "UBSan report", 68: "ThreadSanitizer report"}.get(
        returncode
    )
    return f"{returncode} ({meaning})" if meaning else str(returncode)


def run_probe(
    env: dict[str, str], *args: str, timeout: float = 120, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run fcsp-probe with args under env; with check, a non-zero exit fails the test with both streams."""
    cmd = [str(_probe_path()), *map(str, args)]
    done = subprocess.run(
        cmd, env=env, input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"fcsp-probe {' '.join(cmd[1:])} exited {exit_status(done.returncode)}\n"
            f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
        )
    return done


def use_probe(path: Path) -> None:
    """The fcsp-probe run_probe runs (the native fixture's; by default the installed one)."""
    _PROBE[:] = [path]
