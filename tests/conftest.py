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
The plain functions behind them live in tests/support (importable as `support`; run_probe finds the probe
the native fixture chose), also under the same names here.
Tests marked @pytest.mark.gpu run only where /dev/nvidiactl exists and FCSP_SIM_ONLY is unset.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/support, importable as `support`
# The plain helpers are also conftest's names, for tests that load conftest (tests/test_dashboards.py).
from support.commands import fcsp_command  # noqa: E402
from support.daemon import NodeDaemon  # noqa: E402
from support.native import (  # noqa: E402
    PYTHON_HOST_HINT,
    REPO,
    SANITIZER_OPTIONS,
    Native,
    build_sanitized,
    installed_lib_dir,
    python_can_host,
    requested_sanitizer,
    sanitizer_runtime_path,
)
from support.probe import parse_probe, run_probe, use_probe  # noqa: E402
from support.simnode import make_sim_env, sim_stats  # noqa: E402
from support.users import TEST_USER_NAMES, LocalUser, ensure_user  # noqa: E402

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
    return installed_lib_dir()


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
        preload = f"{sanitizer_runtime_path(sanitizer)} {libfcsp}"
    return Native(
        lib_dir=lib_dir, libfcsp=libfcsp, sim_dir=sim_dir, probe=probe, sanitizer=sanitizer, preload=preload
    )


# ----------------------------------------------------------------------------------------------------
# Simulated-node environments


@pytest.fixture
def sim_env(native: Native, tmp_path: Path) -> Callable[..., dict[str, str]]:
    """make_env(gpus=1, mem="8G", sms=132, kernel_us=None, preload=True, **extra) (support.simnode's
    make_sim_env on this test's directory): the same simulated node and region for every call in one test."""
    return functools.partial(make_sim_env, native, tmp_path)


# ----------------------------------------------------------------------------------------------------
# The probe and the simulator's counters


@pytest.fixture(name="run_probe")
def run_probe_fixture(native: Native) -> Callable[..., subprocess.CompletedProcess[str]]:
    use_probe(native.probe)
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


@pytest.fixture(scope="session")
def two_uids() -> tuple[LocalUser, LocalUser]:
    """Two real users (fcsp-test-a, fcsp-test-b), created once as root; the test is skipped when not root."""
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd to create two test users")
    lock_path = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
    with open(lock_path / "fcsp-test-users.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs must not race useradd
        users = tuple(ensure_user(n) for n in TEST_USER_NAMES)
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
