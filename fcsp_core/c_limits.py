"""limits.h's fixed sizes (FCSP_MAX_GPUS, FCSP_NAME_LEN, FCSP_UUID_LEN, ...) as Python reads them: cffi parses
the header's integer #defines, so no size is typed twice. Only the constants: libfcsp.so is not loaded
(`fcsp --help` works without it); _native.py loads the library when a command needs it."""

from __future__ import annotations

import functools
import re
from typing import Any

import cffi

from fcsp_core import paths

_DEFINE = re.compile(r"^\s*#\s*define\s+FCSP_[A-Z0-9_]+\s+-?\d+\b.*$", re.MULTILINE)


def cdef(header_text: str) -> str:
    """The integer `#define FCSP_...` lines of a header (its include guard and comments left out)."""
    return "\n".join(m.group(0).split("/*")[0].rstrip() for m in _DEFINE.finditer(header_text)) + "\n"


@functools.cache
def limits() -> Any:
    """An object whose attributes are limits.h's constants (limits().FCSP_MAX_GPUS == 16)."""
    ffi = cffi.FFI()
    ffi.cdef(cdef(paths.limits_header_path().read_text(encoding="utf-8")))
    return ffi.dlopen(None)  # #define constants live in the cdef: any library object carries them
