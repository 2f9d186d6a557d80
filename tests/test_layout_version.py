"""A shared-memory layout never changes without a version bump.

Every struct of include/fcsp/region_layout.h (the accounting region's and the policy table's) is measured by a
small C program built here: each struct's size and alignment, each field's offset and size, and the values of
the header's enums and numeric defines. The digest of those figures is recorded in the header next to the
version (FCSP_REGION_LAYOUT_DIGEST, FCSP_POLICY_LAYOUT_DIGEST), and every (version, digest) pair ever released
is kept in tests/layout_history.txt: a changed layout fails here until its digest is recorded, and recording
it under a version that already had another digest fails too, so the only way through is a bump."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INCLUDE = REPO / "fcsp_core" / "native" / "include"
HEADER = INCLUDE / "fcsp" / "region_layout.h"
HISTORY = Path(__file__).resolve().parent / "layout_history.txt"
KINDS = {"region": ("FCSP_REGION_VERSION", "FCSP_REGION_LAYOUT_DIGEST"),
         "policy": ("FCSP_POLICY_VERSION", "FCSP_POLICY_LAYOUT_DIGEST")}  # fmt: skip
NOT_LAYOUT = {name for pair in KINDS.values() for name in pair}


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


def structs(text: str) -> dict[str, list[str]]:
    """struct name -> its field names, in order (from the header's text)."""
    out: dict[str, list[str]] = {}
    for m in re.finditer(r"struct\s+(fcsp_\w+)\s*\{(.*?)\};", _strip_comments(text), flags=re.S):
        fields = []
        for decl in m.group(2).split(";"):
            decl = re.sub(r"alignas\s*\([^)]*\)", "", decl).strip()
            if not decl:
                continue
            name = re.search(r"(\w+)\s*(\[[^\]]*\])*\s*$", decl)
            assert name, f"cannot parse a field of struct {m.group(1)}: {decl!r}"
            fields.append(name.group(1))
        out[m.group(1)] = fields
    return out


def constants(text: str) -> list[str]:
    """The header's enum constants and numeric defines (a changed state value is a changed layout too)."""
    body = _strip_comments(text)
    enums = re.findall(r"enum\s*\w*\s*\{(.*?)\}", body, flags=re.S)  # named or not
    # every enumerator, with or without an explicit value (a reordered implicit one changes values too)
    names = [m.group(1) for e in enums for item in e.split(",") if (m := re.match(r"\s*(\w+)", item))]
    names += [n for n in re.findall(r"#define\s+(FCSP_\w+)\s+\S", body) if n not in NOT_LAYOUT]
    return [n for n in names if not n.endswith("_H")]


def measure_program(text: str) -> dict[str, str]:
    """kind -> C source printing that kind's figures."""
    found = structs(text)
    progs = {}
    for kind in KINDS:
        names = [s for s in found if s.startswith("fcsp_policy") == (kind == "policy")]
        lines = []
        for s in names:
            lines.append(f'    printf("struct {s} %zu %zu\\n", sizeof(struct {s}), _Alignof(struct {s}));')
            for f in found[s]:
                lines.append(
                    f'    printf("{s}.{f} %zu %zu\\n", offsetof(struct {s}, {f}), '
                    f"sizeof(((struct {s} *)0)->{f}));"
                )
        for c in (c for c in constants(text) if ("POLICY" in c) == (kind == "policy")):
            lines.append(f'    printf("{c} %llu\\n", (unsigned long long)({c}));')
        progs[kind] = (
            '#include <stddef.h>\n#include <stdio.h>\n#include "fcsp/region_layout.h"\n'
            "int main(void)\n{\n" + "\n".join(lines) + "\n    return 0;\n}\n"
        )
    return progs


def recorded(text: str, name: str) -> str:
    m = re.search(rf"#define\s+{name}\s+(\S+)", text)
    assert m, f"region_layout.h defines no {name}"
    return m.group(1).strip('"u')


@pytest.fixture(scope="module")
def digests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    work = tmp_path_factory.mktemp("layout")
    out = {}
    for kind, source in measure_program(HEADER.read_text()).items():
        src, exe = work / f"{kind}.c", work / kind
        src.write_text(source)
        build = [cc, "-std=c11", "-Wall", "-Werror", f"-I{INCLUDE}", str(src), "-o", str(exe)]
        subprocess.run(build, check=True)
        figures = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
        out[kind] = hashlib.sha256(figures.encode()).hexdigest()[:16]
    return out


def history() -> dict[tuple[str, str], str]:
    pairs: dict[tuple[str, str], str] = {}
    for line in HISTORY.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            kind, version, digest = line.split()
            assert pairs.setdefault((kind, version), digest) == digest, f"{HISTORY}: {kind} {version} twice"
    return pairs


def test_every_struct_of_the_header_is_measured() -> None:
    found = structs(HEADER.read_text())
    for s in ("fcsp_gpu_entry", "fcsp_tenant_gpu", "fcsp_tenant", "fcsp_proc", "fcsp_region_header",
              "fcsp_region", "fcsp_policy_gpu", "fcsp_policy_entry", "fcsp_policy_header",
              "fcsp_policy"):  # fmt: skip
        assert found.get(s), f"struct {s} not found or has no fields"
    assert "cap_set" in found["fcsp_tenant_gpu"] and "used_bytes" in found["fcsp_proc"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_layout_matches_the_digest_recorded_with_its_version(digests: dict[str, str], kind: str) -> None:
    text = HEADER.read_text()
    version_name, digest_name = KINDS[kind]
    version, digest = recorded(text, version_name), recorded(text, digest_name)
    assert digests[kind] == digest, (
        f"the {kind} layout changed (digest {digests[kind]}, recorded {digest}): bump {version_name}, set "
        f'{digest_name} to "{digests[kind]}" and add "{kind} <new version> {digests[kind]}" to {HISTORY.name}'
    )
    past = history().get((kind, version))
    assert past is not None, f'add "{kind} {version} {digest}" to {HISTORY}'
    assert past == digest, (
        f"{version_name} {version} was released with layout {past}: a new layout needs a new version"
    )


def test_every_enumerator_is_measured() -> None:
    """Enumerators without an explicit value, and those of an unnamed enum, are layout too."""
    text = "enum fcsp_x { FCSP_A, FCSP_B = 2, FCSP_C };\nenum { FCSP_D = 1u << 3, FCSP_E };\n"
    assert constants(text) == ["FCSP_A", "FCSP_B", "FCSP_C", "FCSP_D", "FCSP_E"]


def test_a_changed_field_changes_the_digest(tmp_path: Path) -> None:
    """The check can see a change: resizing one field of struct fcsp_tenant_gpu (the kind of change that
    once kept version 2) gives another program, hence other figures."""
    text = HEADER.read_text()
    moved = text.replace("    _Atomic uint64_t peak_bytes;", "    _Atomic uint32_t peak_bytes;", 1)
    assert moved != text
    # the same program text: only the compiled figures can tell the two apart
    assert measure_program(moved)["region"] == measure_program(text)["region"]
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    (tmp_path / "fcsp").mkdir()
    shutil.copy(INCLUDE / "fcsp" / "limits.h", tmp_path / "fcsp" / "limits.h")
    figures = []
    for variant in (text, moved):
        (tmp_path / "fcsp" / "region_layout.h").write_text(variant)
        src, exe = tmp_path / "m.c", tmp_path / "m"
        src.write_text(measure_program(variant)["region"])
        subprocess.run([cc, "-std=c11", f"-I{tmp_path}", str(src), "-o", str(exe)], check=True)
        figures.append(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)
    assert figures[0] != figures[1]
