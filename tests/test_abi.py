"""The ABI cross-check: our declarations of NVIDIA's ABI against NVIDIA's own headers.

libfcsp.so and the simulated driver are built without a CUDA toolkit, from include/fcsp/cuda_abi.h and
nvml_abi.h, and the hooked prototypes live in interposer/hook_table.h. Where NVIDIA's headers are present
(this machine kind has /usr/local/cuda/include; `pip install nvidia-nvml-dev` brings nvml.h), these tests:

- compile tests/native/abi_hooks.c, which expands the hook table against cuda.h/cudaTypedefs.h (and
  nvml.h): every hooked prototype must be NVIDIA's PFN_<base>_v<since><variant> and the declared type of the
  symbol, and every driver/NVML function fcsp calls must have NVIDIA's prototype;
- parse our header, generate one line per enum constant, object-like #define, typedef and struct member, build
  tests/native/abi_dump.c once against our header and once against NVIDIA's, run both and compare every value,
  size, alignment, offset and type class. Anything NVIDIA's header lacks is a mismatch too.

FCSP_CUDA_INCLUDE / FCSP_NVML_INCLUDE name the directories of cuda.h / nvml.h explicitly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NATIVE = REPO / "fcsp_core" / "native"
OUR_INCLUDE = NATIVE / "include"
HOOK_TABLE_DIR = NATIVE / "interposer"
TEST_NATIVE = Path(__file__).resolve().parent / "native"
CC = os.environ.get("CC", "cc")


# ----------------------------------------------------------------------------------------------------
# Finding NVIDIA's headers


def _site_dirs() -> list[Path]:
    """Where pip puts NVIDIA's header packages (nvidia/<pkg>/include): each sys.path entry's nvidia/."""
    dirs = []
    for entry in sys.path:
        candidate = Path(entry or ".") / "nvidia"
        if candidate.is_dir():
            dirs.append(candidate)
    return dirs


def _find_include(
    env_var: str, header: str, system_dirs: list[str], also: tuple[str, ...] = ()
) -> Path | None:
    """The first directory holding header (and the also files): $env_var, system_dirs, then pip's nvidia/*."""
    override = os.environ.get(env_var)
    if override:
        return Path(override)
    candidates = [Path(d) for d in system_dirs]
    for base in _site_dirs():
        candidates += sorted(base.glob("*/include")) + sorted(base.glob("*/*/include"))
    for directory in candidates:
        if (directory / header).is_file() and all((directory / name).is_file() for name in also):
            return directory
    return None


def cuda_include() -> Path | None:
    return _find_include(
        "FCSP_CUDA_INCLUDE", "cuda.h", ["/usr/local/cuda/include", "/usr/include"], also=("cudaTypedefs.h",)
    )


def nvml_include() -> Path | None:
    return _find_include(
        "FCSP_NVML_INCLUDE", "nvml.h", ["/usr/local/cuda/include", "/usr/include", "/usr/include/nvidia/gdk"]
    )


@pytest.fixture(scope="module")
def cuda_inc() -> Path:
    found = cuda_include()
    if found is None or not (found / "cuda.h").is_file():
        pytest.skip(
            "NVIDIA's cuda.h/cudaTypedefs.h not found (looked in $FCSP_CUDA_INCLUDE, "
            "/usr/local/cuda/include, "
            "/usr/include and pip's nvidia/*/include): the ABI cross-check needs a CUDA toolkit's headers"
        )
    if shutil.which(CC) is None:
        pytest.skip(f"no C compiler ({CC}) for the ABI cross-check")
    return found


@pytest.fixture(scope="module")
def nvml_inc() -> Path:
    found = nvml_include()
    if found is None or not (found / "nvml.h").is_file():
        pytest.skip(
            "NVIDIA's nvml.h not found (looked in $FCSP_NVML_INCLUDE, /usr/local/cuda/include, "
            "/usr/include and pip's nvidia/*/include; `pip install nvidia-nvml-dev` provides it): "
            "NVML half of the ABI check skipped"
        )
    if shutil.which(CC) is None:
        pytest.skip(f"no C compiler ({CC}) for the ABI cross-check")
    return found


# ----------------------------------------------------------------------------------------------------
# Parsing our ABI headers (the C subset they are written in: enums, structs, unions, typedefs, #defines)


@dataclass
class AbiItems:
    consts: list[str] = field(default_factory=list)  # enum constants and object-like integer #defines
    string_consts: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)  # typedef names
    enum_types: set[str] = field(default_factory=set)
    # (typedef name, member path, element expression, member is an enum)
    fields: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"FCSP_ABI_CONST({c})" for c in self.consts]
        out += [f"FCSP_ABI_CONST_STR({c})" for c in self.string_consts]
        for t in self.types:
            out.append(f"FCSP_ABI_TYPE_ENUM({t})" if t in self.enum_types else f"FCSP_ABI_TYPE({t})")
        for t, member, elem, is_enum in self.fields:
            out.append(
                f"FCSP_ABI_FIELD_ENUM({t}, {member})" if is_enum else f"FCSP_ABI_FIELD({t}, {member}, {elem})"
            )
        return out


_IDENT = re.compile(r"[A-Za-z_]\w*")
_C_KEYWORDS = {
    "const", "volatile", "struct", "union", "enum", "unsigned", "signed", "char", "short", "int", "long",
    "float", "double", "void", "_Bool", "restrict",
}  # fmt: skip


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _split_top(text: str, sep: str) -> list[str]:
    """Split on sep outside (), [] and {}."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _braced(text: str) -> tuple[str, str, str]:
    """(before the first '{', inside the matching braces, after the '}')."""
    start = text.index("{")
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[:start], text[start + 1 : i], text[i + 1 :]
    raise ValueError(f"unbalanced braces in: {text[:80]}")


def _declarator_name(decl: str) -> tuple[str, int]:
    """The name a declarator declares and how many array dimensions it has."""
    func_ptr = re.search(r"\(\s*\*\s*([A-Za-z_]\w*)\s*\)", decl)
    if func_ptr:
        return func_ptr.group(1), 0
    dims = len(re.findall(r"\[[^\]]*\]", decl))
    bare = re.sub(r"\[[^\]]*\]", "", decl)
    bare = re.sub(r":\s*\d+\s*$", "", bare)  # bit-field width
    names = _IDENT.findall(bare)
    if not names:
        raise ValueError(f"no name in declarator {decl!r}")
    return names[-1], dims


def _enum_constants(body: str) -> list[str]:
    out = []
    for item in _split_top(body, ","):
        name = item.split("=")[0].strip()
        if _IDENT.fullmatch(name):
            out.append(name)
    return out


def _is_enum_type(type_text: str, items: AbiItems) -> bool:
    words = _IDENT.findall(type_text)
    return "enum" in words or any(w in items.enum_types for w in words)


def _members(typename: str, body: str, prefix: str, items: AbiItems) -> None:
    """Record the members of a struct/union body (nested anonymous aggregates as a.b paths)."""
    for decl in _split_top(body, ";"):
        if "{" in decl:
            head, inner, tail = _braced(decl)
            if re.search(r"\benum\b", head):
                items.consts += _enum_constants(inner)
            names = _split_top(tail, ",")
            if not names:  # C11 anonymous struct/union: its members belong to the enclosing one
                _members(typename, inner, prefix, items)
                continue
            for declarator in names:
                name, dims = _declarator_name(declarator)
                path = prefix + name
                items.fields.append((typename, path, path + "[0]" * dims, False))
                if dims == 0 and "*" not in declarator:
                    _members(typename, inner, path + ".", items)
            continue
        if re.search(r":\s*\d+\s*$", decl):
            continue  # bit-fields have no offsetof
        declarators = _split_top(decl, ",")
        first_name, _ = _declarator_name(declarators[0])
        type_text = declarators[0][: declarators[0].rfind(first_name)]
        type_text = re.sub(r"[*\s]+$", "", type_text)
        for declarator in declarators:
            name, dims = _declarator_name(declarator)
            pointer = "*" in declarator
            is_enum = not pointer and dims == 0 and _is_enum_type(type_text, items)
            path = prefix + name
            items.fields.append((typename, path, path + "[0]" * dims, is_enum))


def parse_abi_header(text: str) -> AbiItems:
    """Every constant, typedef and struct member our header declares."""
    items = AbiItems()
    text = _strip_comments(text)
    text = re.sub(r"\\\n", " ", text)
    text = re.sub(r"#\s*ifdef\s+__cplusplus.*?#\s*endif[^\n]*", "", text, flags=re.S)
    body_lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            body_lines.append(line)
            continue
        m = re.match(r"#\s*define\s+([A-Za-z_]\w*)(\(?)\s*(.*)$", stripped)
        if not m or m.group(2) == "(" or not m.group(3).strip():
            continue  # include guards, function-like macros, other directives
        name, value = m.group(1), m.group(3).strip()
        if name.startswith("FCSP_"):
            continue
        (items.string_consts if value.startswith('"') else items.consts).append(name)
    code = "\n".join(body_lines)
    for stmt in _split_top(code, ";"):
        stmt = " ".join(stmt.split())
        typedef = stmt.startswith("typedef ")
        if typedef:
            stmt = stmt[len("typedef ") :]
        if "{" in stmt:
            head, body, tail = _braced(stmt)
            kind = head.split()[0]
            names = _split_top(tail, ",") if typedef else []
            if kind == "enum":
                items.consts += _enum_constants(body)
            aggregate_names = []
            for declarator in names:
                name, _ = _declarator_name(declarator)
                items.types.append(name)
                if kind == "enum" and "*" not in declarator:
                    items.enum_types.add(name)
                elif "*" not in declarator and "[" not in declarator:
                    aggregate_names.append(name)
            if kind in ("struct", "union") and aggregate_names:
                _members(aggregate_names[0], body, "", items)
                for alias in aggregate_names[1:]:
                    _members(alias, body, "", items)
            continue
        if typedef:
            name, dims = _declarator_name(stmt)
            items.types.append(name)
            target = stmt[: stmt.rfind(name)]
            if "*" not in target and dims == 0 and _is_enum_type(target, items):
                items.enum_types.add(name)
    return items


# ----------------------------------------------------------------------------------------------------
# Building and running the dumps


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, **kw)


def _dump(
    header: str, include_dirs: list[Path], lines: list[str], workdir: Path, tag: str
) -> tuple[dict, dict]:
    """Build abi_dump.c against header with the given items; drop the items the header cannot compile.

    Returns ({"kind name": "value"}, {item: compiler error}) for what compiled and what did not.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    remaining = list(lines)
    failed: dict[str, str] = {}
    exe = workdir / f"dump-{tag}"
    for _ in range(20):
        inc = workdir / f"items-{tag}.inc"
        inc.write_text("".join(f"{line}\n" for line in remaining))
        cmd = [
            CC, "-std=gnu11", "-w", "-O0", f"-DFCSP_ABI_HEADER={header}", f'-DFCSP_ABI_ITEMS="{inc}"',
            *(f"-I{d}" for d in include_dirs), str(TEST_NATIVE / "abi_dump.c"), "-o", str(exe),
        ]  # fmt: skip
        built = _run(cmd)
        if built.returncode == 0:
            break
        bad_lines = {int(n) for n in re.findall(re.escape(inc.name) + r":(\d+)", built.stderr)}
        if not bad_lines:
            pytest.fail(
                f"abi_dump.c does not build against {header}:\n{' '.join(cmd)}\n{built.stderr[-6000:]}"
            )
        errors_by_line: dict[int, str] = {}
        for m in re.finditer(re.escape(inc.name) + r":(\d+):\d+: error: ([^\n]*)", built.stderr):
            errors_by_line.setdefault(int(m.group(1)), m.group(2))
        for n in sorted(bad_lines):
            failed[remaining[n - 1]] = errors_by_line.get(n, "does not compile")
        remaining = [line for i, line in enumerate(remaining, 1) if i not in bad_lines]
    else:
        pytest.fail(f"abi_dump.c: gave up building against {header}")
    ran = _run([str(exe)])
    assert ran.returncode == 0, f"{exe} failed: {ran.stderr}"
    facts = {}
    for line in ran.stdout.splitlines():
        kind, name, value = line.split(" ", 2)
        facts[f"{kind} {name}"] = value
    return facts, failed


def compare_abi(our_header: str, nvidia_header: str, nvidia_dirs: list[Path], tmp: Path) -> list[str]:
    """Mismatches between our header and NVIDIA's, one line each ([] when they agree)."""
    items = parse_abi_header((OUR_INCLUDE / "fcsp" / our_header).read_text())
    lines = items.lines()
    assert items.consts and items.types, f"parsed nothing from {our_header}"
    ours, ours_failed = _dump(f'"fcsp/{our_header}"', [OUR_INCLUDE], lines, tmp, "ours")
    assert not ours_failed, (
        f"items parsed from {our_header} do not compile against it (parser bug?): {ours_failed}"
    )
    theirs, theirs_failed = _dump(f"<{nvidia_header}>", nvidia_dirs, lines, tmp, "nvidia")
    mismatches = [
        f"{item}: absent or different in NVIDIA's {nvidia_header} ({err})"
        for item, err in theirs_failed.items()
    ]
    for key, value in ours.items():
        if key not in theirs:
            continue  # its item failed to build: reported above
        if theirs[key] != value and not _reserved_tail_shrunk(key, value, theirs[key]):
            mismatches.append(f"{key}: ours {value} vs NVIDIA's {theirs[key]}")
    return mismatches


def _facts(value: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in value.split() if "=" in part)


def _reserved_tail_shrunk(key: str, ours: str, theirs: str) -> bool:
    """A newer header may carve new members out of the front of a `reserved` array: still the same ABI
    when NVIDIA's reserved bytes end where ours do and start no earlier (the struct's size is checked
    on its own)."""
    if not key.startswith("field ") or not key.rsplit(".", 1)[-1].startswith("reserved"):
        return False
    a, b = _facts(ours), _facts(theirs)
    try:
        a_off, a_size, b_off, b_size = int(a["offset"]), int(a["size"]), int(b["offset"]), int(b["size"])
    except (KeyError, ValueError):
        return False
    return a.get("class") == b.get("class") and a_off + a_size == b_off + b_size and b_off >= a_off


# ----------------------------------------------------------------------------------------------------
# Tests


def _check_hooks(include_dirs: list[Path], defines: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        CC, "-std=gnu11", "-fsyntax-only", *defines, *(f"-I{d}" for d in include_dirs), f"-I{HOOK_TABLE_DIR}",
        str(TEST_NATIVE / "abi_hooks.c"),
    ]  # fmt: skip
    return _run(cmd, cwd=tmp)


def _assertion_failures(stderr: str) -> str:
    found = re.findall(r"error: ([^\n]*)", stderr)
    return "\n".join(f"  {line}" for line in found) or stderr[-6000:]


def test_hook_prototypes_match_cuda_h(cuda_inc, tmp_path):
    """Every FCSP_CUDA_HOOKS prototype and since-version is NVIDIA's; FCSP_CUDA_USED too."""
    checked = _check_hooks([cuda_inc], [], tmp_path)
    assert checked.returncode == 0, (
        f"hook_table.h disagrees with {cuda_inc}/cuda.h or cudaTypedefs.h:\n"
        f"{_assertion_failures(checked.stderr)}"
    )


def test_nvml_hook_prototypes_match_nvml_h(cuda_inc, nvml_inc, tmp_path):
    """Every FCSP_NVML_HOOKS and FCSP_NVML_USED prototype is nvml.h's."""
    checked = _check_hooks([cuda_inc, nvml_inc], ["-DFCSP_ABI_HAVE_NVML"], tmp_path)
    assert checked.returncode == 0, (
        f"hook_table.h disagrees with {nvml_inc}/nvml.h:\n{_assertion_failures(checked.stderr)}"
    )


def test_cuda_abi_h_matches_cuda_h(cuda_inc, tmp_path):
    """Every constant, typedef size/alignment and member offset of cuda_abi.h is cuda.h's."""
    mismatches = compare_abi("cuda_abi.h", "cuda.h", [cuda_inc], tmp_path)
    assert not mismatches, "include/fcsp/cuda_abi.h differs from NVIDIA's cuda.h:\n" + "\n".join(mismatches)


def test_nvml_abi_h_matches_nvml_h(nvml_inc, tmp_path):
    """Every constant, typedef size/alignment and member offset of nvml_abi.h is nvml.h's."""
    mismatches = compare_abi("nvml_abi.h", "nvml.h", [nvml_inc], tmp_path)
    assert not mismatches, "include/fcsp/nvml_abi.h differs from NVIDIA's nvml.h:\n" + "\n".join(mismatches)


# The checks check themselves: a parser that finds nothing, or a comparison that cannot fail, proves nothing.


def test_parser_sees_every_kind_of_declaration():
    items = parse_abi_header((OUR_INCLUDE / "fcsp" / "cuda_abi.h").read_text())
    assert "CUDA_ERROR_OUT_OF_MEMORY" in items.consts
    assert "CU_STREAM_LEGACY" in items.consts
    assert {"CUresult", "CUdeviceptr", "CUcontext", "CUmemAllocationProp", "CUlaunchConfig"} <= set(
        items.types
    )
    assert "CUresult" in items.enum_types and "CUdeviceptr" not in items.enum_types
    paths = {(t, m) for t, m, _, _ in items.fields}
    assert ("CUmemAllocationProp_v1", "allocFlags.usage") in paths
    assert ("CUlaunchAttribute", "pad") in paths
    assert ("CUexecAffinityParam_v1", "param.smCount") in paths
    assert ("CUDA_ARRAY_DESCRIPTOR_v2", "Format", "Format", True) in items.fields


def test_comparison_catches_a_wrong_header(cuda_inc, tmp_path):
    """A deliberately wrong copy of cuda_abi.h must produce exactly the mismatches we planted."""
    original = (OUR_INCLUDE / "fcsp" / "cuda_abi.h").read_text()
    wrong = original.replace("CUDA_ERROR_OUT_OF_MEMORY = 2,", "CUDA_ERROR_OUT_OF_MEMORY = 3,")
    wrong = wrong.replace("    size_t maxSize;\n", "    unsigned int maxSize;\n")
    wrong = wrong.replace(
        "    CU_STREAM_NON_BLOCKING = 0x1\n", "    CU_STREAM_NON_BLOCKING = 0x1,\n    CU_NOT_NVIDIAS = 7\n"
    )
    assert wrong.count("\n") == original.count("\n") + 1
    fake_include = tmp_path / "include"
    (fake_include / "fcsp").mkdir(parents=True)
    (fake_include / "fcsp" / "cuda_abi.h").write_text(wrong)
    items = parse_abi_header(wrong)
    ours, _ = _dump('"fcsp/cuda_abi.h"', [fake_include], items.lines(), tmp_path / "w", "ours")
    theirs, failed = _dump("<cuda.h>", [cuda_inc], items.lines(), tmp_path / "w", "nvidia")
    assert set(failed) == {"FCSP_ABI_CONST(CU_NOT_NVIDIAS)"}
    differing = {k for k, v in ours.items() if k in theirs and theirs[k] != v}
    assert "const CUDA_ERROR_OUT_OF_MEMORY" in differing
    assert "field CUmemPoolProps_v1.maxSize" in differing
    assert "field CUmemPoolProps_v1.usage" in differing  # moved by the narrower maxSize


def test_hook_check_catches_a_wrong_table(cuda_inc, tmp_path):
    """A wrong since-version and a wrong parameter type in a copy of hook_table.h must both be reported."""
    table = (HOOK_TABLE_DIR / "hook_table.h").read_text()
    wrong = table.replace("X(cuMemAlloc_v2, cuMemAlloc, 3020,", "X(cuMemAlloc_v2, cuMemAlloc, 2000,")
    wrong = wrong.replace(
        "(CUmemoryPool pool, size_t minBytesToKeep)", "(CUmemoryPool pool, unsigned minBytesToKeep)"
    )
    assert wrong.count("2000,") == table.count("2000,") + 1 and "unsigned minBytesToKeep" in wrong
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "hook_table.h").write_text(wrong)
    cmd = [CC, "-std=gnu11", "-fsyntax-only", f"-I{cuda_inc}", f"-I{fake}", str(TEST_NATIVE / "abi_hooks.c")]
    checked = _run(cmd, cwd=tmp_path)
    assert checked.returncode != 0
    assert "cuMemAlloc_v2: prototype differs" in checked.stderr
    assert "cuMemPoolTrimTo: prototype differs" in checked.stderr
