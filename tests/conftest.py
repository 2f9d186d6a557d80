"""Shared fixtures: the native parts under test, simulated-node environments, the probe and its output.

Run the tests with the `pytest` command against the installed package (`pip install '.[test]' && pytest`).

FCSP_TEST_SANITIZE=address|undefined|thread builds the CMake project with that sanitizer into
build/san-<name>-install (once per session; cmake rebuilds only what changed) and runs everything against
it: preloads put the sanitizer's runtime first, sim_env's environments set FCSP_LIB_DIR there (so `fcsp`
subprocesses use the sanitized libraries), and so does the session's os.environ when this pytest process can
host the sanitized library (UBSan; ASan or TSan when pytest itself was started with the runtime in
LD_PRELOAD, as .ci/run does for ASan); otherwise fcsp_core in the pytest process keeps the installed library
and a warning says so. Sanitizer reports are fatal (exit codes 66 address, 67 undefined, 68 thread).

Fixtures (all tests may use them):
  native      Native(lib_dir, libfcsp, sim_dir, probe, sanitizer, preload), session scope
  sim_env     make_env(gpus=1, mem="8G", sms=132, kernel_us=None, preload=True, **extra) -> env dict
  run_probe   run_probe(env, *args, timeout=120, input=None, check=True) -> CompletedProcess[str]
  parse_probe parse_probe(stdout) -> [{"cmd": ..., "status": ..., key: value, ...}]
  sim_stats   sim_stats(env, dev=0) -> (live_bytes, peak_bytes) of the simulated GPU
  node_daemon start(env, *args, metrics=True, ready=True) -> NodeDaemon: a running `fcsp node`
  two_uids    (LocalUser, LocalUser): two real users created as root (skipped otherwise), session scope
  public_lib_dir  a copy of native.lib_dir every uid can read; public_tmp: a 0755 temp directory
The last three are also plain functions here (run_probe needs the probe's path: it reads native's).
Plain helpers shared by the tests live in tests/support (`from support.probe import start_holder`).
Tests marked @pytest.mark.gpu run only where /dev/nvidiactl exists and FCSP_SIM_ONLY is unset.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/support, importable as `support`
from support.commands import fcsp_command  # noqa: E402  (also conftest.fcsp_command, for tests that load conftest)
from support.probe import parse_probe  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SANITIZERS = ("address", "undefined", "thread")
SANITIZER_RUNTIMES = {"address": "libasan.so", "undefined": "libubsan.so", "thread": "libtsan.so"}
# Any report ends the process with a distinctive status, and says why on stderr.
SANITIZER_OPTIONS = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=66:print_stacktrace=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=67",
    "TSAN_OPTIONS": "halt_on_error=1:exitcode=68:report_signal_unsafe=0:second_deadlock_stack=1",
}
# FCSP_* variables a test environment keeps from the outside (everything else FCSP_* is dropped).
KEPT_FCSP_VARS = ("FCSP_LIB_DIR",)


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


# ----------------------------------------------------------------------------------------------------
# pytest hooks


def pytest_configure(config: pytest.Config) -> None:
    requested_sanitizer()  # a bad value is a usage error before anything runs


def _have_gpu() -> bool:
    return Path("/dev/nvidiactl").exists() and "FCSP_SIM_ONLY" not in os.environ


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _have_gpu():
        return
    why = "needs a real NVIDIA GPU (/dev/nvidiactl absent)"
    if Path("/dev/nvidiactl").exists():
        why = "FCSP_SIM_ONLY is set"
    skip = pytest.mark.skip(reason=why)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    san = requested_sanitizer()
    return (
        f"fcsp: sanitizer={san or 'none'}, FCSP_LIB_DIR={os.environ.get('FCSP_LIB_DIR', '(package lib dir)')}"
    )


# ----------------------------------------------------------------------------------------------------
# The native parts


def _sanitizer_runtime(name: str) -> str:
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


def _run_step(cmd: list[str], what: str, log: Path) -> None:
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
        _run_step(configure, "configure", log)
        _run_step([cmake, "--build", str(build), "-j2"], "build", log)
        _run_step([cmake, "--install", str(build), "--prefix", str(prefix)], "install", log)
    return prefix / "lib"


def _installed_lib_dir() -> Path:
    override = os.environ.get("FCSP_LIB_DIR")
    if override:
        return Path(override).resolve()
    try:
        from fcsp_core import paths
    except ImportError as exc:
        pytest.skip(f"fcsp_core is not installed ({exc}): pip install '.[test]' and run `pytest`")
    return paths.lib_dir()


@pytest.fixture(scope="session")
def native_lib_dir() -> Path:
    """The directory of the native parts under test (built first with a sanitizer), not checked for content:
    tests that need only some of the parts (tests/test_exports.py) start here."""
    sanitizer = requested_sanitizer()
    if sanitizer:
        lib_dir = build_sanitized(sanitizer).resolve()
        for var, value in SANITIZER_OPTIONS.items():
            os.environ.setdefault(var, value)
        if python_can_host(sanitizer):
            os.environ["FCSP_LIB_DIR"] = str(lib_dir)  # for the package (in-process) and `fcsp` subprocesses
        else:
            warnings.warn(
                f"FCSP_TEST_SANITIZE={sanitizer}: this pytest process cannot load the sanitized libfcsp.so "
                f"({PYTHON_HOST_HINT[sanitizer]}), so fcsp_core in this process keeps the installed library; "
                "preloaded processes and the probe use the sanitized build",
                stacklevel=1,
            )
        return lib_dir
    return _installed_lib_dir()


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


@pytest.fixture(scope="session")
def native(native_lib_dir: Path) -> Native:
    sanitizer = requested_sanitizer()
    lib_dir = native_lib_dir
    libfcsp = lib_dir / "libfcsp.so"
    sim_dir = lib_dir / "sim"
    probe = lib_dir / "fcsp-probe"
    missing = [
        str(p)
        for p in (libfcsp, sim_dir / "libcuda.so.1", sim_dir / "libnvidia-ml.so.1", probe)
        if not p.is_file()
    ]
    if missing:
        where = f"the {sanitizer} build" if sanitizer else "the installed package (pip install '.[test]')"
        pytest.skip(f"native parts missing from {where}: {', '.join(missing)}")
    preload = str(libfcsp)
    if sanitizer:
        preload = f"{_sanitizer_runtime(sanitizer)} {libfcsp}"
    return Native(
        lib_dir=lib_dir, libfcsp=libfcsp, sim_dir=sim_dir, probe=probe, sanitizer=sanitizer, preload=preload
    )


# ----------------------------------------------------------------------------------------------------
# Simulated-node environments


def make_sim_env(
    native: Native,
    base_dir: Path,
    gpus: int = 1,
    mem: str = "8G",
    sms: int = 132,
    kernel_us: str | None = None,
    preload: bool = True,
    **extra: str,
) -> dict[str, str]:
    """os.environ for a process on the simulated node under base_dir (state in base_dir/sim, region in
    base_dir/region), with libfcsp.so preloaded unless preload=False; extra variables last, as given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FCSP_") or k in KEPT_FCSP_VARS}
    existing = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = f"{native.sim_dir}:{existing}" if existing else str(native.sim_dir)
    env["FCSP_SIM_GPUS"] = str(gpus)
    env["FCSP_SIM_MEM"] = str(mem)
    env["FCSP_SIM_SMS"] = str(sms)
    if kernel_us is not None:
        env["FCSP_SIM_KERNEL_US"] = str(kernel_us)
    sim_dir = base_dir / "sim"
    sim_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sim_dir.chmod(0o700)
    env["FCSP_SIM_DIR"] = str(sim_dir)
    env["FCSP_REGION_DIR"] = str(base_dir / "region")
    if preload:
        env["LD_PRELOAD"] = native.preload
    elif native.sanitizer:
        env["LD_PRELOAD"] = native.sanitizer_runtime  # unsanitized programs can still load the sanitized libs
    else:
        env.pop("LD_PRELOAD", None)
    if native.sanitizer:
        env.update(SANITIZER_OPTIONS)
        env["FCSP_LIB_DIR"] = str(native.lib_dir)  # `fcsp` (Python) here has the runtime preloaded
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def sim_env(native: Native, tmp_path: Path) -> Callable[..., dict[str, str]]:
    """make_env(gpus=1, mem="8G", sms=132, kernel_us=None, preload=True, **extra): the same simulated node and
    region for every call within one test."""

    def make_env(
        gpus: int = 1,
        mem: str = "8G",
        sms: int = 132,
        kernel_us: str | None = None,
        preload: bool = True,
        **extra: str,
    ) -> dict[str, str]:
        return make_sim_env(native, tmp_path, gpus, mem, sms, kernel_us, preload, **extra)

    return make_env


# ----------------------------------------------------------------------------------------------------
# The probe and the simulator's counters

_PROBE: list[Path] = []  # set by the run_probe fixture, for the plain function


def _probe_path() -> Path:
    if _PROBE:
        return _PROBE[0]
    found = Path(os.environ["FCSP_LIB_DIR"]) / "fcsp-probe" if os.environ.get("FCSP_LIB_DIR") else None
    if found is None:
        from fcsp_core import paths

        found = paths.lib_dir() / "fcsp-probe"
    return found


def _status(returncode: int) -> str:
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
            f"fcsp-probe {' '.join(cmd[1:])} exited {_status(done.returncode)}\n"
            f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
        )
    return done


_SIM_STATS_SCRIPT = r"""
import ctypes, os, sys
lib = ctypes.CDLL(os.path.join(sys.argv[1], "libcuda.so.1"))
u64p = ctypes.POINTER(ctypes.c_ulonglong)
lib.fcspSimStats.argtypes = [ctypes.c_int, u64p, u64p]
lib.fcspSimStats.restype = ctypes.c_int
live, peak = ctypes.c_ulonglong(0), ctypes.c_ulonglong(0)
rc = lib.fcspSimStats(int(sys.argv[2]), ctypes.byref(live), ctypes.byref(peak))
if rc != 0:
    sys.exit(f"fcspSimStats({sys.argv[2]}) returned {rc}")
print(live.value, peak.value)
"""


def sim_stats(env: dict[str, str], dev: int = 0, sim_dir: Path | str | None = None) -> tuple[int, int]:
    """(live_bytes, peak_bytes) of simulated GPU dev on the node of env ($FCSP_SIM_DIR), read without libfcsp.

    sim_dir: the simulator's libcuda.so.1 directory (the fixture passes native.sim_dir); by default the first
    LD_LIBRARY_PATH entry of env that holds a libcuda.so.1."""
    child = dict(env)
    preload = child.pop("LD_PRELOAD", "")
    # Keep a sanitizer runtime (unsanitized Python needs it first to load sanitized libraries), drop libfcsp.
    runtime = [p for p in preload.split() if "san.so" in Path(p).name]
    if runtime:
        child["LD_PRELOAD"] = " ".join(runtime)
    if sim_dir is None:
        ld_path = child.get("LD_LIBRARY_PATH", "").split(":")
        entries = [d for d in ld_path if d and (Path(d) / "libcuda.so.1").is_file()]
        if not entries:
            raise AssertionError("sim_stats: no libcuda.so.1 on env's LD_LIBRARY_PATH (use sim_env's env)")
        sim_dir = entries[0]
    done = subprocess.run(
        [sys.executable, "-c", _SIM_STATS_SCRIPT, str(sim_dir), str(dev)],
        env=child,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"sim_stats failed (exit {_status(done.returncode)}):\n{done.stdout}\n{done.stderr}"
        )
    live, peak = done.stdout.split()
    return int(live), int(peak)


@pytest.fixture(name="run_probe")
def run_probe_fixture(native: Native) -> Callable[..., subprocess.CompletedProcess[str]]:
    _PROBE[:] = [native.probe]
    return run_probe


@pytest.fixture(name="parse_probe")
def parse_probe_fixture() -> Callable[[str], list[dict[str, str]]]:
    return parse_probe


@pytest.fixture(name="sim_stats")
def sim_stats_fixture(native: Native) -> Callable[..., tuple[int, int]]:
    def stats(env: dict[str, str], dev: int = 0) -> tuple[int, int]:
        return sim_stats(env, dev, sim_dir=native.sim_dir)

    return stats


# ----------------------------------------------------------------------------------------------------
# The node daemon (`fcsp node`), for tests/test_node_*.py


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


@pytest.fixture
def node_daemon(native: Native, tmp_path: Path) -> Iterator[Callable[..., NodeDaemon]]:
    """start(env, *args, metrics=True, ready=True) -> NodeDaemon: `fcsp node` on env's region
    ($FCSP_REGION_DIR), serving metrics on a free port of 127.0.0.1; with ready, returns once it reaps. Every
    daemon started is stopped at the end of the test."""
    started: list[NodeDaemon] = []

    def start(env: dict[str, str], *args: str, metrics: bool = True, ready: bool = True) -> NodeDaemon:
        flags = ["--metrics-port", "0", "--metrics-address", "127.0.0.1"] if metrics else ["--no-metrics"]
        log_path = tmp_path / f"node-{len(started)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [fcsp_command(), "node", "--log-level", "info", *flags, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        daemon = NodeDaemon(proc=proc, log_path=log_path, region_dir=Path(env["FCSP_REGION_DIR"]))
        started.append(daemon)
        if ready:
            daemon.wait_log(r"reaping in ")
            if metrics:
                daemon.url = daemon.wait_log(r"serving metrics on (\S+)").group(1)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(timeout=30)


@pytest.fixture
def region_poke(tmp_path: Path) -> Callable[..., str]:
    """Build tests/native/region_poke.c (surgery on a region file) and return a runner."""
    exe = tmp_path / "region_poke"
    cc = os.environ.get("CC", "cc")
    subprocess.run(
        [cc, "-std=c11", "-O1", f"-I{REPO / 'fcsp_core/native/include'}",
         str(REPO / "tests/native/region_poke.c"), "-o", str(exe)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip

    def poke(region_file: str, *args: str) -> str:
        done = subprocess.run([str(exe), region_file, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return poke


# ----------------------------------------------------------------------------------------------------
# Two real uids, for the trust-boundary tests (a tenant of one uid must not affect another's)


@dataclass(frozen=True)
class LocalUser:
    """A real local user created by the tests (as root); runs commands as its uid and gid, no other groups."""

    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, object]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def run(self, cmd: list[str], env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 120)
        kwargs.setdefault("check", False)
        return subprocess.run(cmd, env=env, **self.popen_kwargs(), **kwargs)  # type: ignore[call-overload]

    def popen(self, cmd: list[str], env: dict[str, str], **kwargs: object) -> subprocess.Popen[str]:
        kwargs.setdefault("text", True)
        return subprocess.Popen(cmd, env=env, **self.popen_kwargs(), **kwargs)  # type: ignore[call-overload]


TEST_USER_NAMES = ("fcsp-test-a", "fcsp-test-b")


def _ensure_user(name: str) -> LocalUser:
    import pwd

    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
            timeout=60,
        )
        pw = pwd.getpwnam(name)
    return LocalUser(name=name, uid=pw.pw_uid, gid=pw.pw_gid)


@pytest.fixture(scope="session")
def two_uids() -> tuple[LocalUser, LocalUser]:
    """Two real users (fcsp-test-a, fcsp-test-b), created once as root; the test is skipped when not root."""
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd to create two test users")
    lock_path = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
    with open(lock_path / "fcsp-test-users.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs must not race useradd
        users = tuple(_ensure_user(n) for n in TEST_USER_NAMES)
    return users  # type: ignore[return-value]


@pytest.fixture(scope="session")
def public_lib_dir(native: Native, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of native.lib_dir that every uid can read and execute (the installed one may sit under a 0700
    home): point FCSP_LIB_DIR and LD_PRELOAD there for processes of the test users."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="fcsp-public-lib-"))
    base.chmod(0o755)
    dest = base / "lib"
    shutil.copytree(native.lib_dir, dest, symlinks=True)
    for path in [dest, *dest.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    return dest


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A fresh directory every uid can enter (0755, owned by root); removed at the end of the test."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="fcsp-public-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
