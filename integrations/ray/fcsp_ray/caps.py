"""What a task's fcsp_* resources mean as caps.

`fcsp_mem_gb: 8` is an 8 GiB cap on the GPU the task runs on (on each GPU it uses, if it has several);
`fcsp_sm: 40` is a 40% SM share there. A node advertises the sum over its GPUs (resources.py), so Ray's
scheduler never packs more fcsp memory onto a node than it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MEM_RESOURCE = "fcsp_mem_gb"
SM_RESOURCE = "fcsp_sm"
PLUGIN_KEY = "fcsp"  # the runtime_env key the driver hook adds and the plugin acts on
GIB = 1 << 30


class Caps(BaseModel):
    """A task's caps: memory in GiB (fractions allowed: Ray's granularity is 0.0001) and SM percent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mem_gb: float | None = Field(default=None, gt=0)
    sm: int | None = Field(default=None, ge=1, le=100)

    @property
    def empty(self) -> bool:
        return self.mem_gb is None and self.sm is None

    @property
    def mem_bytes(self) -> int | None:
        return None if self.mem_gb is None else int(self.mem_gb * GIB)

    def to_runtime_env(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def to_env(self) -> dict[str, str]:
        """FCSP_MEM_LIMIT (bytes) and FCSP_SM_LIMIT (percent), for the caps that are set."""
        env: dict[str, str] = {}
        if self.mem_bytes is not None:
            env["FCSP_MEM_LIMIT"] = str(self.mem_bytes)
        if self.sm is not None:
            env["FCSP_SM_LIMIT"] = str(self.sm)
        return env


def caps_from_resources(resources: Mapping[str, float] | None) -> Caps:
    """The caps a task's `resources=` ask for (empty Caps if none). SM shares round up to a whole percent."""
    resources = resources or {}
    mem = resources.get(MEM_RESOURCE)
    sm = resources.get(SM_RESOURCE)
    return Caps(
        mem_gb=float(mem) if mem else None,
        sm=min(100, max(1, -int(-float(sm) // 1))) if sm else None,
    )


def options(mem_gb: float | None = None, sm: int | None = None, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for `.options(**fcsp_ray.options(mem_gb=8, sm=40))` or `@ray.remote(**...)`:
    the plain `resources={"fcsp_mem_gb": 8, "fcsp_sm": 40}`, merged with any `resources` in extra."""
    Caps(mem_gb=mem_gb, sm=sm)  # validates
    resources = dict(extra.pop("resources", None) or {})
    if mem_gb is not None:
        resources[MEM_RESOURCE] = mem_gb
    if sm is not None:
        resources[SM_RESOURCE] = sm
    return {**extra, "resources": resources}
