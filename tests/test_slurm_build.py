"""The SPANK plugin builds against other Slurm releases' headers: Debian 13 (trixie, Slurm 24.11) and Debian
testing (forky, whatever Slurm it ships now), with -Werror, and records that release's SLURM_VERSION_NUMBER
(the `plugin_version` Slurm reads from it).

libslurm-dev of that release is fetched with apt-get from a Debian mirror through a private sources list,
package lists and cache in a temporary directory (the system's apt sources, lists and packages are left as
they are), unpacked with dpkg -x, and the plugin is built against it with cmake. Needs apt-get, dpkg, cmake,
a C compiler and the mirror (FCSP_DEBIAN_MIRROR, default http://deb.debian.org/debian): skipped with the
reason when any is missing or the download fails."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MIRROR = os.environ.get("FCSP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def fetch_libslurm_dev(suite: str, tmp: Path) -> Path:
    """The include directory of `suite`'s libslurm-dev, unpacked under tmp (or skip with the reason)."""
    for tool in ("apt-get", "dpkg", "cmake", "cc"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not on PATH: cannot fetch Debian's libslurm-dev or build against it")
    if not KEYRING.is_file():
        pytest.skip(f"{KEYRING} is missing (debian-archive-keyring): cannot check Debian {suite}'s packages")
    apt_dir = tmp / "apt"
    for d in ("lists/partial", "cache/archives/partial", "sources.list.d", "download"):
        (apt_dir / d).mkdir(parents=True)
    (apt_dir / "sources.list").write_text(f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n")
    private = [
        "-o", f"Dir::Etc::SourceList={apt_dir / 'sources.list'}",
        "-o", f"Dir::Etc::SourceParts={apt_dir / 'sources.list.d'}",
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o", f"Dir::Cache={apt_dir / 'cache'}",
        "-o", f"APT::Sandbox::User={pwd.getpwuid(os.geteuid()).pw_name}",
        "-o", "Debug::NoLocking=1",  # private lists: the system's apt locks are not ours to take
        "-o", "Acquire::Retries=2",
    ]  # fmt: skip
    update = _run(["apt-get", "-q", *private, "update"])
    if update.returncode != 0 or not any((apt_dir / "lists").glob(f"*_dists_{suite}_*Packages*")):
        why = update.stderr.strip()[-600:]
        pytest.skip(f"cannot fetch Debian {suite}'s package lists from {MIRROR}: {why}")
    download = _run(["apt-get", "-q", *private, "download", "libslurm-dev"], cwd=apt_dir / "download")
    debs = list((apt_dir / "download").glob("libslurm-dev_*.deb"))
    if download.returncode != 0 or len(debs) != 1:
        pytest.skip(f"cannot download Debian {suite}'s libslurm-dev: {download.stderr.strip()[-600:]}")
    root = tmp / "root"
    unpack = _run(["dpkg", "-x", str(debs[0]), str(root)])
    assert unpack.returncode == 0, unpack.stderr
    include = root / "usr" / "include"
    assert (include / "slurm" / "spank.h").is_file(), f"{debs[0].name} has no slurm/spank.h"
    return include


def header_version(include: Path) -> int:
    text = (include / "slurm" / "slurm_version.h").read_text()
    found = re.search(r"#define\s+SLURM_VERSION_NUMBER\s+(0x[0-9a-fA-F]+)", text)
    assert found, "slurm_version.h has no SLURM_VERSION_NUMBER"
    return int(found.group(1), 16)


def recorded_version(plugin: Path) -> int:
    """The plugin's `plugin_version` (SPANK_PLUGIN stores SLURM_VERSION_NUMBER there), read from the ELF
    file."""
    symbols = _run(["nm", "-D", "--defined-only", str(plugin)])
    found = re.search(r"^([0-9a-f]+) [RrDd] plugin_version$", symbols.stdout, re.M)
    assert found, f"{plugin} exports no plugin_version:\n{symbols.stdout}"
    addr = int(found.group(1), 16)
    sections = _run(["readelf", "-S", "-W", str(plugin)]).stdout
    for m in re.finditer(r"\]\s+\S+\s+PROGBITS\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", sections):
        start, offset, size = (int(g, 16) for g in m.groups())
        if start <= addr < start + size:
            with plugin.open("rb") as f:
                f.seek(offset + addr - start)
                return int.from_bytes(f.read(4), "little")
    raise AssertionError(f"plugin_version at {addr:#x} is in no PROGBITS section of {plugin}")


@pytest.mark.parametrize(("suite", "release"), [("trixie", (24, 11)), ("forky", None)])
def test_spank_plugin_builds_against_debian_slurm(
    tmp_path: Path, suite: str, release: tuple[int, int] | None
) -> None:
    include = fetch_libslurm_dev(suite, tmp_path)
    version = header_version(include)
    major, minor = version >> 16, (version >> 8) & 0xFF
    if release:
        assert (major, minor) == release, f"Debian {suite} ships Slurm {major}.{minor:02d}, not {release}"
    build = tmp_path / "build"
    for cmd in (
        ["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
         f"-DFCSP_SLURM_INCLUDE_DIR={include}"],
        ["cmake", "--build", str(build), "--target", "fcsp_spank", "-j2"],
    ):  # fmt: skip
        done = _run(cmd, timeout=600)
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
    flags = (build / "spank" / "CMakeFiles" / "fcsp_spank.dir" / "flags.make").read_text()
    assert f"-I{include}" in flags, flags  # built against the fetched headers, not the system's
    plugin = build / "spank" / "fcsp_spank.so"
    assert recorded_version(plugin) == version, f"{plugin} records another Slurm than {suite}'s headers"
