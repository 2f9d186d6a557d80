"""The cffi (ABI mode) binding of libfcsp.so: the lowest Python layer, used by config.py and region.py.

The cdef is the block of fcsp_api.h between `/* FCSP_CDEF_BEGIN */` and `/* FCSP_CDEF_END */`,
read at run time, so the C header stays the one definition of the API. The library is opened on first
use, so commands that do not need it (`fcsp --help`) work without it.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import cffi

from fcsp_core import c_constants, paths
from fcsp_core.c_constants import read_cdef

_C = c_constants.constants()  # fcsp_api.h's and limits.h's #defines, read by cffi from the headers
ERR_LEN: int = _C.FCSP_ERR_LEN

_lock = threading.Lock()


@dataclass(frozen=True)
class Native:
    ffi: cffi.FFI
    lib: Any  # the cffi library object: attributes are the C functions and #define constants


@functools.cache
def _load() -> Native:
    header = paths.api_header_path()
    library = paths.libfcsp_path()
    ffi = cffi.FFI()
    ffi.cdef(read_cdef(header.read_text(encoding="utf-8")))
    try:
        lib = ffi.dlopen(str(library))
    except OSError as exc:
        raise paths.NativeMissingError(
            f"fcsp: cannot load {library}: {exc}; reinstall with pip install ."
        ) from exc
    return Native(ffi=ffi, lib=lib)


def native() -> Native:
    """The loaded library (thread-safe, loaded once)."""
    with _lock:
        return _load()


def err_buffer() -> Any:
    """A char[FCSP_ERR_LEN] for the C functions' err/errlen arguments."""
    return native().ffi.new(f"char[{ERR_LEN}]")


def c_string(value: Any) -> str:
    """A NUL-terminated C char array or pointer as str (empty for NULL)."""
    ffi = native().ffi
    if value == ffi.NULL:
        return ""
    raw = ffi.string(value)
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

ERROR_NAMES: dict[int, str] = {code: name for name, code in c_constants.named("FCSP_E").items() if code < 0}


class FcspError(Exception):
    """A libfcsp call failed: `code` is the FCSP_E* value, the message is the C library's."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        return ERROR_NAMES.get(self.code, f"FCSP_E({self.code})")


class FcspInvalidError(FcspError, ValueError):
    """FCSP_EINVAL: a bad argument or value."""


class FcspNotFoundError(FcspError):
    """FCSP_ENOENT: no such region, policy file or tenant."""


class FcspStaleError(FcspError):
    """FCSP_ESTALE: a region or policy file of another magic, version or size (refused, not trusted)."""


class FcspFullError(FcspError):
    """FCSP_EFULL: no free slot."""


class FcspPermissionError(FcspError):
    """FCSP_EPERM: permission or ownership refused."""


class FcspIOError(FcspError):
    """FCSP_EIO: a system call failed."""


class FcspBusyError(FcspError):
    """FCSP_EBUSY: in use (e.g. removing a tenant that still has processes)."""


_ERROR_CLASSES: dict[int, type[FcspError]] = {
    _C.FCSP_EINVAL: FcspInvalidError,
    _C.FCSP_ENOENT: FcspNotFoundError,
    _C.FCSP_ESTALE: FcspStaleError,
    _C.FCSP_EFULL: FcspFullError,
    _C.FCSP_EPERM: FcspPermissionError,
    _C.FCSP_EIO: FcspIOError,
    _C.FCSP_EBUSY: FcspBusyError,
}


def make_error(code: int, message: str, context: str) -> FcspError:
    """The typed exception for a negative return code; `context` names the call when C gave no message."""
    text = message or f"{context} failed ({ERROR_NAMES.get(code, code)})"
    return _ERROR_CLASSES.get(code, FcspError)(code, text)


def check(code: int, err: Any, context: str) -> int:
    """Return a non-negative result, or raise the typed error carrying the C message in `err`."""
    if code >= 0:
        return code
    raise make_error(code, c_string(err) if err is not None else "", context)
