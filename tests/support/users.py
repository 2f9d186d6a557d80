"""Two real local users for the trust-boundary tests (created as root by the two_uids fixture)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class LocalUser:
    """A real local user created by the tests (as root); runs commands as its uid and gid, no other groups."""

    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, object]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def run(self, cmd: list[str], env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 120)
        kwargs.setdefault("check", False)
        return subprocess.run(cmd, env=env, **self.popen_kwargs(), **kwargs)  # type: ignore[call-overload]

    def popen(self, cmd: list[str], env: dict[str, str], **kwargs: object) -> subprocess.Popen[str]:
        kwargs.setdefault("text", True)
        return subprocess.Popen(cmd, env=env, **self.popen_kwargs(), **kwargs)  # type: ignore[call-overload]


TEST_USER_NAMES = ("fcsp-test-a", "fcsp-test-b")


def ensure_user(name: str) -> LocalUser:
    import pwd

    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
            timeout=60,
        )
        pw = pwd.getpwnam(name)
    return LocalUser(name=name, uid=pw.pw_uid, gid=pw.pw_gid)
