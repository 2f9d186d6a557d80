"""Fuzz the shared size and percentage parsers (fcsp_parse_mem_limit, fcsp_parse_sm_limit: the interposer's,
the SPANK plugin's and Python's one grammar) with libFuzzer under ASan and UBSan, for a bounded time.

Needs clang with its libFuzzer runtime (Debian 12: apt-get install clang libclang-rt-14-dev; .ci/run does):
the test skips with the reason when they are missing. Nothing is installed here."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NATIVE = REPO / "fcsp_core" / "native"
FUZZ = Path(__file__).resolve().parent / "fuzz"
SECONDS = int(os.environ.get("FCSP_FUZZ_SECONDS", "30"))

pytestmark = pytest.mark.slow


def _compile(out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        "clang", "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
        f"-I{NATIVE / 'include'}", f"-I{NATIVE}", "-D_GNU_SOURCE", str(FUZZ / "fuzz_parse.c"),
        str(NATIVE / "common" / "parse.c"), str(NATIVE / "common" / "log.c"), "-lm", "-o", str(out),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)


def test_fuzz_parsers(tmp_path: Path) -> None:
    binary = tmp_path / "fuzz_parse"
    if not shutil.which("clang"):
        pytest.skip("clang is not on PATH: apt-get install clang libclang-rt-14-dev (as .ci/run does)")
    done = _compile(binary)
    if done.returncode != 0 and "libclang_rt.fuzzer" in done.stderr:
        pytest.skip("clang has no libFuzzer runtime: apt-get install libclang-rt-14-dev (as .ci/run does)")
    assert done.returncode == 0, f"building the fuzzer failed:\n{done.stderr[-4000:]}"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    run = subprocess.run(
        [str(binary), f"-max_total_time={SECONDS}", "-timeout=5", "-rss_limit_mb=1024", "-max_len=64",
         f"-artifact_prefix={tmp_path}/", str(corpus), str(FUZZ / "corpus")],
        capture_output=True, text=True, timeout=SECONDS + 120, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0, f"the fuzzer found a problem (artifacts in {tmp_path}):\n{run.stderr[-6000:]}"
    assert "Done" in run.stderr, run.stderr[-2000:]
