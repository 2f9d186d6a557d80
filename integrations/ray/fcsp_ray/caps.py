"""What a task's fcsp_* resources mean as caps.

`fcsp_mem_gb: 8` is an 8 GiB cap on the GPU the task runs on (on each GPU it uses, if it has several);
`fcsp_sm: 40` is a 40% SM share there. A node advertises the sum over its GPUs (resources.py), so Ray's
scheduler never packs more fcsp memory onto a node than it has. How the SM share is kept is not a resource:
`sm_mode="spatial"` (`options(sm=40, sm_mode="spatial")`, or `runtime_env={"fcsp": {"sm_mode": "spatial"}}`)
asks for an MPS partition on nodes running `fcsp node --mps`, "time" (the default) for time slices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MEM_RESOURCE = "fcsp_mem_gb"
SM_RESOURCE = "fcsp_sm"
PLUGIN_KEY = "fcsp"  # the runtime_env key the driver hook adds and the plugin acts on
GIB = 1 << 30
SM_MODES = ("time", "spatial")


class CapsError(ValueError):
    """A task's fcsp request is not valid (one line: the value and what is accepted)."""


class Caps(BaseModel):
    """A task's caps: memory in GiB (fractions allowed: Ray's granularity is 0.0001) and SM percent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mem_gb: float | None = Field(default=None, gt=0)
    sm: int | None = Field(default=None, ge=1, le=100)
    sm_mode: Literal["time", "spatial"] | None = None  # None: time slices

    @model_validator(mode="after")
    def _spatial_needs_a_share(self) -> Caps:
        if self.sm_mode == "spatial" and self.sm is None:
            raise ValueError('sm_mode="spatial" needs an SM share to partition: resources={"fcsp_sm": PCT}')
        return self

    @classmethod
    def parse(cls, value: Any) -> Caps:
        """Caps.model_validate, with a bad value as one CapsError line naming it and what is accepted."""
        if isinstance(value, Mapping) and value.get("sm_mode") not in (None, *SM_MODES):
            raise CapsError(f"fcsp: sm_mode={value['sm_mode']!r} is not valid: use time or spatial")
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            msg = first["msg"].removeprefix("Value error, ")
            raise CapsError(f"fcsp: {where}={first['input']!r}: {msg}" if where else f"fcsp: {msg}") from None

    @property
    def empty(self) -> bool:
        return self.mem_gb is None and self.sm is None

    @property
    def mem_bytes(self) -> int | None:
        return None if self.mem_gb is None else int(self.mem_gb * GIB)

    def to_runtime_env(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def to_env(self) -> dict[str, str]:
        """FCSP_MEM_LIMIT (bytes) and FCSP_SM_LIMIT (percent), for the caps that are set, and
        FCSP_SM_MODE=spatial when asked for."""
        env: dict[str, str] = {}
        if self.mem_bytes is not None:
            env["FCSP_MEM_LIMIT"] = str(self.mem_bytes)
        if self.sm is not None:
            env["FCSP_SM_LIMIT"] = str(self.sm)
        if self.sm_mode == "spatial":
            env["FCSP_SM_MODE"] = "spatial"
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


def options(
    mem_gb: float | None = None, sm: int | None = None, sm_mode: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Keyword arguments for `.options(**fcsp_ray.options(mem_gb=8, sm=40, sm_mode="spatial"))` or
    `@ray.remote(**...)`: the plain `resources={"fcsp_mem_gb": 8, "fcsp_sm": 40}`, merged with any
    `resources` in extra, and the mode as `runtime_env={"fcsp": {"sm_mode": ...}}`, merged with any
    `runtime_env` in extra. A bad value raises CapsError (one line)."""
    Caps.parse({k: v for k, v in {"mem_gb": mem_gb, "sm": sm, "sm_mode": sm_mode}.items() if v is not None})
    resources = dict(extra.pop("resources", None) or {})
    if mem_gb is not None:
        resources[MEM_RESOURCE] = mem_gb
    if sm is not None:
        resources[SM_RESOURCE] = sm
    if sm_mode is not None:
        runtime_env = dict(extra.pop("runtime_env", None) or {})
        runtime_env[PLUGIN_KEY] = {**(runtime_env.get(PLUGIN_KEY) or {}), "sm_mode": sm_mode}
        extra["runtime_env"] = runtime_env
    return {**extra, "resources": resources}
