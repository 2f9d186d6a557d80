"""The installed `fcsp` command, for tests that run it as a real process."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


def fcsp_command() -> str:
    """The installed `fcsp` command (beside this Python, else on PATH)."""
    beside = Path(sys.executable).parent / "fcsp"
    found = str(beside) if beside.exists() else shutil.which("fcsp")
    if not found:
        pytest.fail("the fcsp command is not installed: pip install '.[test]'")
    return found
