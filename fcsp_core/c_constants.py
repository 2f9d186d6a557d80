"""The integer constants of libfcsp's C headers as Python reads them, so no number is typed twice: limits.h's
sizes (FCSP_MAX_GPUS, FCSP_NAME_LEN, ...) and the #defines of fcsp_api.h's cffi block (error codes, flags),
parsed by cffi from the installed headers. Only the headers are read: libfcsp.so is not loaded (`fcsp --help`
works without it); _native.py loads the library when a command needs it."""

from __future__ import annotations

import functools
import re
from typing import Any

import cffi

from fcsp_core import paths

CDEF_BEGIN = "/* FCSP_CDEF_BEGIN */"
CDEF_END = "/* FCSP_CDEF_END */"

_DEFINE = re.compile(
    r"^[ \t]*#[ \t]*define[ \t]+(FCSP_[A-Z0-9_]+)[ \t]+(-?[0-9]+|0[xX][0-9a-fA-F]+)\b.*$", re.MULTILINE
)


def read_cdef(header_text: str) -> str:
    """The cffi cdef of fcsp_api.h: the text between its FCSP_CDEF markers."""
    start = header_text.find(CDEF_BEGIN)
    end = header_text.find(CDEF_END)
    if start < 0 or end < start:
        raise ValueError(f"fcsp_api.h has no {CDEF_BEGIN} ... {CDEF_END} block")
    return header_text[start + len(CDEF_BEGIN) : end]


def cdef(header_text: str) -> str:
    """The integer `#define FCSP_...` lines of a header (its include guard and comments left out)."""
    return "".join(f"#define {m.group(1)} {m.group(2)}\n" for m in _DEFINE.finditer(header_text))


@functools.cache
def _parsed() -> tuple[Any, tuple[str, ...]]:
    limits = paths.limits_header_path().read_text(encoding="utf-8")
    api = read_cdef(paths.api_header_path().read_text(encoding="utf-8"))
    text = cdef(limits) + cdef(api)
    ffi = cffi.FFI()
    ffi.cdef(text)
    # #define constants live in the cdef: any library object carries them, the process's own will do
    return ffi.dlopen(None), tuple(m.group(1) for m in _DEFINE.finditer(text))


def constants() -> Any:
    """An object whose attributes are the constants (constants().FCSP_MAX_GPUS == 16)."""
    return _parsed()[0]


def named(prefix: str) -> dict[str, int]:
    """The constants whose names start with prefix, by name (the negative ones of named("FCSP_E") are the
    error codes)."""
    lib, names = _parsed()
    return {name: int(getattr(lib, name)) for name in names if name.startswith(prefix)}
