"""Where the installed native parts live.

`pip install .` puts libfcsp.so, the simulated driver (sim/libcuda.so.1, sim/libnvidia-ml.so.1), the
probe program and the C API headers (include/fcsp_api.h, include/fcsp/limits.h) under fcsp_core/lib.
$FCSP_LIB_DIR replaces that directory (tests point it at sanitizer builds).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
LIB_DIR_ENV = "FCSP_LIB_DIR"
_REINSTALL = "reinstall with pip install ."


class NativeMissingError(FileNotFoundError):
    """A native part of fcsp (library, simulated driver, probe, header) is not where it should be."""


def lib_dir() -> Path:
    """$FCSP_LIB_DIR if set, else the package's lib directory."""
    override = os.environ.get(LIB_DIR_ENV)
    if override:
        return Path(override).resolve()
    return PACKAGE_DIR / "lib"


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        hint = f" (set by ${LIB_DIR_ENV})" if os.environ.get(LIB_DIR_ENV) else ""
        raise NativeMissingError(f"fcsp: {what} not found at {path}{hint}; {_REINSTALL}")
    return path


def libfcsp_path() -> Path:
    """The interposer and C API library, libfcsp.so."""
    return _existing(lib_dir() / "libfcsp.so", "libfcsp.so")


def sim_dir() -> Path:
    """The directory of the simulated driver: libcuda.so.1 and libnvidia-ml.so.1, for LD_LIBRARY_PATH."""
    directory = lib_dir() / "sim"
    _existing(directory / "libcuda.so.1", "the simulated driver libcuda.so.1")
    return directory


def probe_path() -> Path:
    """fcsp-probe, a small driver-API client used by the demo and the tests."""
    return _existing(lib_dir() / "fcsp-probe", "fcsp-probe")


def _header(installed: str) -> Path:
    """A C header installed under lib/include (`installed`, relative to it); in a source tree the same header
    is under native/include/fcsp."""
    candidates = [
        lib_dir() / "include" / installed,
        PACKAGE_DIR / "lib" / "include" / installed,
        PACKAGE_DIR / "native" / "include" / "fcsp" / Path(installed).name,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise NativeMissingError(f"fcsp: {Path(installed).name} not found at {candidates[0]}; {_REINSTALL}")


def api_header_path() -> Path:
    """fcsp_api.h, whose FCSP_CDEF block is the cffi cdef (lib/include/fcsp_api.h)."""
    return _header("fcsp_api.h")


def limits_header_path() -> Path:
    """limits.h, the fixed sizes (FCSP_MAX_GPUS, FCSP_NAME_LEN, ...) fcsp_api.h includes
    (lib/include/fcsp/limits.h)."""
    return _header("fcsp/limits.h")
