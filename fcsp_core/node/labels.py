"""Labels of a tenant's series: `tenant`, `job_id`, `user`, `scheduler`.

job_id and scheduler come from the tenant name, by the conventions of fcsp's integrations:

| tenant name                    | scheduler | job_id     |
| ------------------------------ | --------- | ---------- |
| `slurm-<jobid>` or `slurm-<jobid>.<step>` | `slurm` | `<jobid>` |
| `ray-<id>`                     | `ray`     | `<id>`     |
| `run-<pid>` (`fcsp run`)       | `run`     | `<pid>`    |
| anything else                  | ``        | ``         |

user is the name of the tenant's uid (the uid itself when it has no name). Every value comes from a tenant of
the region (at most 256 at a time), so no label takes unbounded values; the caches below are bounded too.
"""

from __future__ import annotations

import pwd
import re
from dataclasses import dataclass

_CACHE_MAX = 4096
_PATTERNS = (
    (re.compile(r"^slurm-(\d+)(?:\.[A-Za-z0-9_+-]+)?$"), "slurm"),
    (re.compile(r"^ray-([A-Za-z0-9_.:+-]+)$"), "ray"),
    (re.compile(r"^run-(\d+)$"), "run"),
)


@dataclass(frozen=True)
class TenantLabels:
    tenant: str
    job_id: str
    user: str
    scheduler: str


def scheduler_and_job(name: str) -> tuple[str, str]:
    """(scheduler, job_id) by the naming conventions above; ("", "") for other names."""
    for pattern, scheduler in _PATTERNS:
        m = pattern.match(name)
        if m:
            return scheduler, m.group(1)
    return "", ""


class LabelCache:
    """Tenant labels by (name, uid), user names by uid: looked up once, kept while few."""

    def __init__(self) -> None:
        self._users: dict[int, str] = {}
        self._tenants: dict[tuple[str, int], TenantLabels] = {}

    def user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            if len(self._users) >= _CACHE_MAX:
                self._users.clear()
            self._users[uid] = name
        return name

    def tenant(self, name: str, uid: int) -> TenantLabels:
        key = (name, uid)
        labels = self._tenants.get(key)
        if labels is None:
            scheduler, job_id = scheduler_and_job(name)
            labels = TenantLabels(tenant=name, job_id=job_id, user=self.user(uid), scheduler=scheduler)
            if len(self._tenants) >= _CACHE_MAX:
                self._tenants.clear()
            self._tenants[key] = labels
        return labels
