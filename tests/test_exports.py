"""The exported-symbol check: libfcsp.so exports exactly the hooks and the API.

Exactly: every symbol of FCSP_CUDA_HOOKS and FCSP_NVML_HOOKS (interposer/hook_table.h), dlsym, and every
function of fcsp_api.h's FCSP_CDEF block; nothing else (an extra export could shadow a symbol of the
application or of the real driver). The simulated driver must export every symbol the interposer forwards to,
with the prototype, base name and since-version hook_table.h gives it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NATIVE = REPO / "fcsp_core" / "native"
HOOK_TABLE = NATIVE / "interposer" / "hook_table.h"
API_HEADER = NATIVE / "include" / "fcsp" / "fcsp_api.h"

# What a sanitizer's instrumentation adds to a library's dynamic symbols.
SANITIZER_SYMBOL = re.compile(r"^_*(asan|odr_asan|ubsan|tsan|lsan|sanitizer)", re.I)


def _macro_body(text: str, name: str) -> str:
    """The replacement text of the function-like macro name (continuation lines joined, comments removed)."""
    m = re.search(rf"^[ \t]*#[ \t]*define[ \t]+{name}\(X\)((?:[^\n]*\\\n)*[^\n]*)", text, re.M)
    assert m, f"{name} not found in {HOOK_TABLE}"
    body = m.group(1).replace("\\\n", " ")
    return re.sub(r"/\*.*?\*/", " ", body, flags=re.S)


def table_symbols(macro: str) -> list[str]:
    """The first argument of every X(...) in macro."""
    names = re.findall(r"\bX\(\s*([A-Za-z_]\w*)", _macro_body(HOOK_TABLE.read_text(), macro))
    assert names, f"no X(...) entries parsed from {macro}"
    return names


def api_functions() -> list[str]:
    """The functions declared in fcsp_api.h between /* FCSP_CDEF_BEGIN */ and /* FCSP_CDEF_END */."""
    text = API_HEADER.read_text()
    begin, end = text.find("/* FCSP_CDEF_BEGIN */"), text.find("/* FCSP_CDEF_END */")
    assert 0 <= begin < end, f"the FCSP_CDEF_BEGIN/END markers are not in {API_HEADER}"
    cdef = re.sub(r"/\*.*?\*/", " ", text[begin:end], flags=re.S)
    names = re.findall(r"\b(fcsp_\w+)\s*\(", cdef)
    assert names, "no fcsp_* functions parsed from the FCSP_CDEF block"
    return names


def dynamic_symbols(lib: Path) -> set[str]:
    """Defined dynamic symbols of lib (symbol versions stripped, version nodes left out)."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run(
        [nm, "-D", "--defined-only", str(lib)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    symbols = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[-2] == "A":
            continue
        symbols.add(parts[-1].split("@", 1)[0])
    return symbols


def _diff(what: str, actual: set[str], expected: set[str]) -> str:
    extra, missing = sorted(actual - expected), sorted(expected - actual)
    lines = [f"{what}:"]
    if missing:
        lines.append(f"  expected but not exported ({len(missing)}): {', '.join(missing)}")
    if extra:
        lines.append(f"  exported but not expected ({len(extra)}): {', '.join(extra)}")
    return "\n".join(lines)


def test_tables_parse():
    cuda = table_symbols("FCSP_CUDA_HOOKS")
    assert {"cuMemAlloc_v2", "cuGetProcAddress", "cuLaunchKernel_ptsz"} <= set(cuda)
    assert len(cuda) == len(set(cuda)), "a symbol is listed twice in FCSP_CUDA_HOOKS"
    assert {"nvmlDeviceGetMemoryInfo", "nvmlDeviceGetMemoryInfo_v2"} <= set(table_symbols("FCSP_NVML_HOOKS"))
    assert {"fcsp_version", "fcsp_region_open", "fcsp_parse_mem_limit"} <= set(api_functions())


def test_libfcsp_exports_exactly_the_hooks_and_the_api(native_lib_dir):
    lib = native_lib_dir / "libfcsp.so"
    if not lib.is_file():
        pytest.skip(f"{lib} not built (pip install '.[test]')")
    expected = set(table_symbols("FCSP_CUDA_HOOKS")) | set(table_symbols("FCSP_NVML_HOOKS"))
    expected |= {"dlsym"} | set(api_functions())
    actual = dynamic_symbols(lib)
    if os.environ.get("FCSP_TEST_SANITIZE", "").strip():  # the instrumentation's own symbols are not ours
        actual = {s for s in actual if not SANITIZER_SYMBOL.match(s)}
    assert actual == expected, _diff(f"{lib} exports", actual, expected)


def _sim_library(native_lib_dir: Path, library: str) -> Path:
    lib = native_lib_dir / "sim" / library
    if not lib.is_file():
        pytest.skip(f"the simulated {library} is not built yet ({lib})")
    return lib


@pytest.mark.parametrize(
    ("library", "table"), [("libcuda.so.1", "FCSP_CUDA_HOOKS"), ("libnvidia-ml.so.1", "FCSP_NVML_HOOKS")]
)
def test_simulated_driver_exports_every_hooked_symbol(native_lib_dir, library, table):
    """Every wrapper forwards to the real symbol: the simulated driver must have each of them."""
    lib = _sim_library(native_lib_dir, library)
    missing = set(table_symbols(table)) - dynamic_symbols(lib)
    assert not missing, f"{lib} lacks {table} symbols libfcsp.so forwards to: {', '.join(sorted(missing))}"


@pytest.mark.parametrize(
    ("library", "table"), [("libcuda.so.1", "FCSP_CUDA_USED"), ("libnvidia-ml.so.1", "FCSP_NVML_USED")]
)
def test_simulated_driver_exports_every_function_fcsp_calls(native_lib_dir, library, table):
    """The driver functions fcsp calls without wrapping them: without them in the simulator, the code paths
    that use them are never exercised by the tests."""
    lib = _sim_library(native_lib_dir, library)
    missing = set(table_symbols(table)) - dynamic_symbols(lib)
    assert not missing, f"{lib} lacks {table} functions libfcsp.so calls: {', '.join(sorted(missing))}"


def test_simulated_driver_declares_every_hook_as_the_table_does(tmp_path):
    """sim_exports.h and nvml_sim.h restate the prototypes of what fcsp hooks and calls;
    tests/native/sim_hooks_agree.c holds them to hook_table.h (same prototype, and for a hook the same
    cuGetProcAddress base name and since-version), with fcsp's own ABI headers only: compiling is the test."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        pytest.skip("a C compiler is needed")
    done = subprocess.run(
        [
            cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", f"-I{NATIVE / 'include'}",
            f"-I{NATIVE}", f"-I{NATIVE / 'sim'}", str(REPO / "tests" / "native" / "sim_hooks_agree.c"),
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, "\n".join(re.findall(r"error: ([^\n]*)", done.stderr)) or done.stderr[-6000:]
