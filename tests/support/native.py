"""The native parts under test: the installed package's, or a sanitizer build of the CMake project
(FCSP_TEST_SANITIZE=address|undefined|thread; see tests/conftest.py)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SANITIZERS = ("address", "undefined", "thread")
SANITIZER_RUNTIMES = {"address": "libasan.so", "undefined": "libubsan.so", "thread": "libtsan.so"}
# Any report ends the process with a distinctive status, and says why on stderr.
SANITIZER_OPTIONS = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=66:print_stacktrace=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=67",
    "TSAN_OPTIONS": "halt_on_error=1:exitcode=68:report_signal_unsafe=0:second_deadlock_stack=1",
}


@dataclass(frozen=True)
class Native:
    lib_dir: Path  # holds libfcsp.so, sim/, fcsp-probe, include/fcsp_api.h
    libfcsp: Path
    sim_dir: Path  # libcuda.so.1 and libnvidia-ml.so.1 of the simulated driver
    probe: Path  # fcsp-probe
    sanitizer: str | None
    preload: (
        str  # the LD_PRELOAD value that puts libfcsp.so (after the sanitizer runtime, if any) in a process
    )

    @property
    def sanitizer_runtime(self) -> str:
        """The sanitizer runtime alone ('' without one): what an unsanitized program (python) must preload to
        load the sanitized libraries."""
        return self.preload.split(" ")[0] if self.sanitizer else ""


def requested_sanitizer() -> str | None:
    name = os.environ.get("FCSP_TEST_SANITIZE", "").strip()
    if not name:
        return None
    if name not in SANITIZERS:
        raise pytest.UsageError(
            f"FCSP_TEST_SANITIZE={name!r}: expected one of {', '.join(SANITIZERS)} or empty"
        )
    return name


def sanitizer_runtime_path(name: str) -> str:
    lib = SANITIZER_RUNTIMES[name]
    cc = os.environ.get("CC") or shutil.which("gcc") or "cc"
    try:
        out = subprocess.run(
            [cc, f"-print-file-name={lib}"], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"FCSP_TEST_SANITIZE={name}: cannot ask {cc} for {lib}: {exc}")
    path = out.stdout.strip()
    if not os.path.isabs(path) or not Path(path).exists():
        pytest.fail(f"FCSP_TEST_SANITIZE={name}: {cc} has no {lib} (install gcc's sanitizer runtimes)")
    return str(Path(path).resolve())


def run_step(cmd: list[str], what: str, log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # compilers run unsanitized
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=1800, check=False)
    if done.returncode != 0:
        tail = log.read_text()[-8000:]
        pytest.fail(
            f"sanitizer build: {what} failed (exit {done.returncode}); log {log}:\n{tail}", pytrace=False
        )


def build_sanitized(name: str) -> Path:
    """Configure, build and install the project with FCSP_SANITIZE=name; returns the install's lib dir."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail(f"FCSP_TEST_SANITIZE={name} needs cmake on PATH (apt-get install cmake)", pytrace=False)
    build = REPO / "build" / f"san-{name}"
    prefix = REPO / "build" / f"san-{name}-install"
    build.mkdir(parents=True, exist_ok=True)
    log = REPO / "build" / f"san-{name}.log"
    with (REPO / "build" / f"san-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (parallel sessions)
        log.write_text("")
        configure = [
            cmake, "-S", str(REPO), "-B", str(build), f"-DFCSP_SANITIZE={name}", "-DCMAKE_BUILD_TYPE=Release",
            "-DFCSP_INSTALL_DIR=lib",
        ]  # fmt: skip
        run_step(configure, "configure", log)
        run_step([cmake, "--build", str(build), "-j2"], "build", log)
        run_step([cmake, "--install", str(build), "--prefix", str(prefix)], "install", log)
    return prefix / "lib"


def installed_lib_dir() -> Path:
    override = os.environ.get("FCSP_LIB_DIR")
    if override:
        return Path(override).resolve()
    try:
        from fcsp_core import paths
    except ImportError as exc:
        pytest.skip(f"fcsp_core is not installed ({exc}): pip install '.[test]' and run `pytest`")
    return paths.lib_dir()


PYTHON_HOST_HINT = {
    "address": "start pytest with LD_PRELOAD=$(gcc -print-file-name=libasan.so), as .ci/run does",
    "thread": "start pytest with LD_PRELOAD=$(gcc -print-file-name=libtsan.so); .ci/run does not: shells "
    "crash under TSan",
}


def python_can_host(sanitizer: str) -> bool:
    """Whether this Python process can load libraries built with sanitizer: UBSan's runtime loads at any
    time; ASan's and TSan's only when preloaded (they are then in our maps)."""
    if sanitizer == "undefined":
        return True
    runtime = SANITIZER_RUNTIMES[sanitizer]
    try:
        return runtime in Path("/proc/self/maps").read_text()
    except OSError:
        return False
