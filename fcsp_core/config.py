"""Config models for what the CLI and the node daemon parse, and the checks of the FCSP_* environment.

Values are parsed once, at the edge, into models whose field names carry their units (mem_limit_bytes,
sm_limit_pct). Memory and SM limits are parsed by libfcsp's own parsers (one grammar for C and Python).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from fcsp_core import _native, c_constants

MAX_GPUS: int = c_constants.constants().FCSP_MAX_GPUS
NAME_LEN: int = c_constants.constants().FCSP_NAME_LEN  # with the NUL
UUID_LEN: int = c_constants.constants().FCSP_UUID_LEN  # with the NUL
SIM_MAX_GPUS: int = c_constants.constants().FCSP_SIM_MAX_GPUS  # the simulated driver's limits
SIM_MAX_SMS: int = c_constants.constants().FCSP_SIM_MAX_SMS

MEM_LIMIT_ACCEPTS = (
    "bytes (8589934592), a binary unit (8G, 8192M, 1.5GiB, 512K) or a percentage of the GPU (50%)"
)
SIZE_ACCEPTS = "use bytes (8589934592) or a binary unit (8G, 8192M, 1.5GiB, 512K)"
SM_LIMIT_ACCEPTS = "a whole percentage from 1 to 100 (40 or 40%)"
TENANT_ACCEPTS = f"1 to {NAME_LEN - 1} printable ASCII characters, no spaces"


def check_tenant_name(value: str) -> str:
    """`value` if it is a valid tenant name (libfcsp's own check), else ValueError saying what is accepted."""
    nat = _native.native()
    err = _native.err_buffer()
    try:
        text = value.encode("utf-8")
    except UnicodeEncodeError:
        text = b"\x01"  # a lone surrogate: no name either, refused below with the value as given
    if b"\0" in text or nat.lib.fcsp_parse_tenant(text, err, _native.ERR_LEN) != 0:
        raise ValueError(f"'{value}' is not a valid tenant name: use {TENANT_ACCEPTS}")
    return value


TenantName = Annotated[str, AfterValidator(check_tenant_name)]  # libfcsp's own rule
SmPct = Annotated[int, Field(ge=1, le=100)]
SmPctOrNone = Annotated[int, Field(ge=0, le=100)]  # 0 = no cap, as in the C structs
GpuIndex = Annotated[int, Field(ge=0, lt=MAX_GPUS)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------------


class MemLimit(_Model):
    """A device-memory cap: an absolute size or a percentage of the GPU's memory (exactly one is set)."""

    limit_bytes: int | None = Field(default=None, gt=0)
    limit_pct: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _exactly_one(self) -> MemLimit:
        if (self.limit_bytes is None) == (self.limit_pct is None):
            raise ValueError("a memory limit is either limit_bytes or limit_pct, exactly one")
        return self

    def to_env(self) -> str:
        """The value for FCSP_MEM_LIMIT (re-parsed by the C library: bytes or a percentage)."""
        if self.limit_bytes is not None:
            return str(self.limit_bytes)
        return f"{self.limit_pct:g}%"

    def describe(self) -> str:
        """For people: '6 GiB' or '50% of the GPU'."""
        if self.limit_bytes is not None:
            from fcsp_core.fmt import format_bytes

            return format_bytes(self.limit_bytes)
        return f"{self.limit_pct:g}% of the GPU"


def parse_mem_limit(text: str) -> MemLimit:
    """Parse a memory limit with libfcsp's parser; ValueError carries the C message."""
    nat = _native.native()
    nbytes = nat.ffi.new("uint64_t *")
    percent = nat.ffi.new("double *")
    err = _native.err_buffer()
    rc = nat.lib.fcsp_parse_mem_limit(text.encode("utf-8"), nbytes, percent, err, _native.ERR_LEN)
    if rc != 0:
        raise ValueError(_native.c_string(err) or f"invalid memory limit {text!r}")
    if nbytes[0]:
        return MemLimit(limit_bytes=int(nbytes[0]))
    return MemLimit(limit_pct=float(percent[0]))


def parse_size_bytes(text: str) -> int:
    """Parse an absolute size (the memory-limit grammar without percentages)."""
    limit = parse_mem_limit(text)
    if limit.limit_bytes is None:
        raise ValueError(f"'{text}' is a percentage: {SIZE_ACCEPTS}")
    return limit.limit_bytes


def parse_sm_limit(text: str) -> int:
    """Parse an SM limit (a percentage 1..100) with libfcsp's parser; ValueError carries the C message."""
    nat = _native.native()
    pct = nat.ffi.new("uint32_t *")
    err = _native.err_buffer()
    rc = nat.lib.fcsp_parse_sm_limit(text.encode("utf-8"), pct, err, _native.ERR_LEN)
    if rc != 0:
        raise ValueError(_native.c_string(err) or f"invalid SM limit {text!r}")
    return int(pct[0])


class GpuLimits(_Model):
    """Per-GPU overrides (FCSP_MEM_LIMIT_<gpu>, FCSP_SM_LIMIT_<gpu>)."""

    mem_limit: MemLimit | None = None
    sm_limit_pct: SmPct | None = None


class TenantLimits(_Model):
    """What a job asks for: its tenant name and caps (on each GPU it sees, unless overridden per GPU)."""

    tenant: TenantName | None = None
    mem_limit: MemLimit | None = None
    sm_limit_pct: SmPct | None = None
    gpus: dict[GpuIndex, GpuLimits] = Field(default_factory=dict)

    def to_env(self) -> dict[str, str]:
        """The FCSP_* variables that ask libfcsp for these limits."""
        env: dict[str, str] = {}
        if self.tenant is not None:
            env["FCSP_TENANT"] = self.tenant
        if self.mem_limit is not None:
            env["FCSP_MEM_LIMIT"] = self.mem_limit.to_env()
        if self.sm_limit_pct is not None:
            env["FCSP_SM_LIMIT"] = str(self.sm_limit_pct)
        for index, gpu in sorted(self.gpus.items()):
            if gpu.mem_limit is not None:
                env[f"FCSP_MEM_LIMIT_{index}"] = gpu.mem_limit.to_env()
            if gpu.sm_limit_pct is not None:
                env[f"FCSP_SM_LIMIT_{index}"] = str(gpu.sm_limit_pct)
        return env


# --------------------------------------------------------------------------------------------------
# Policy table (limits set by the node manager; they win over the job's environment)
# --------------------------------------------------------------------------------------------------


class PolicyGpuLimit(_Model):
    """A policy's caps on one GPU, by UUID (0 = no cap)."""

    uuid: Annotated[str, StringConstraints(min_length=1, max_length=UUID_LEN - 1, pattern=r"^[\x21-\x7e]+$")]
    mem_limit_bytes: int = Field(default=0, ge=0)
    sm_limit_pct: SmPctOrNone = 0


class PolicyEntry(_Model):
    """One tenant's limits in the policy table (struct fcsp_policy_in). 0 = no cap; uid None = any uid."""

    tenant: TenantName
    uid: int | None = Field(default=None, ge=0, lt=2**32)
    mem_limit_bytes: int = Field(default=0, ge=0)
    sm_limit_pct: SmPctOrNone = 0
    gpus: list[PolicyGpuLimit] = Field(default_factory=list, max_length=MAX_GPUS)
    # How the SM share is kept: time slices, or an MPS partition (`fcsp node --mps`). Only the entry's writer
    # picks spatial: the job's own FCSP_SM_MODE=spatial is ignored for a tenant with an entry.
    sm_mode: Literal["time", "spatial"] = "time"


# --------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------


class EnvError(ValueError):
    """An invalid FCSP_* value; str() is one line naming the variable, the value and what is accepted (or
    `line`, the one libfcsp wrote about it)."""

    def __init__(
        self, name: str, value: str, reason: str = "", accepts: str | None = None, *, line: str | None = None
    ) -> None:
        reason = reason.rstrip(".")
        if line is not None:
            super().__init__(f"fcsp: {line}")
        elif accepts is None and f"'{value}'" in reason:
            # A C parser's message: it already quotes the value and says what is accepted.
            super().__init__(f"fcsp: {name}: {reason}")
        else:
            text = f"fcsp: {name}={value!r} is invalid: {reason}"
            super().__init__(f"{text}; accepted: {accepts}" if accepts else text)
        self.name = name
        self.value = value


class SimSettings(_Model):
    """The simulated driver's settings (FCSP_SIM_*); None = the simulator's default."""

    gpus: Annotated[int, Field(ge=1, le=SIM_MAX_GPUS)] | None = None
    mem_bytes: Annotated[int, Field(gt=0)] | None = None
    sms: Annotated[int, Field(ge=1, le=SIM_MAX_SMS)] | None = None
    kernel_us: str | None = None
    state_dir: Path | None = None


def _int_var(name: str, value: str, low: int, high: int | None) -> int:
    accepts = f"an integer {low}..{high}" if high is not None else f"an integer >= {low}"
    try:
        number = int(value.strip(), 10)
    except ValueError:
        raise EnvError(name, value, "not an integer", accepts) from None
    if number < low or (high is not None and number > high):
        raise EnvError(name, value, "out of range", accepts)
    return number


def read_sim_env(environ: Mapping[str, str] | None = None) -> SimSettings:
    """Parse the FCSP_SIM_* variables (the simulated driver's settings); EnvError on a bad value."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return env.get(name) or None  # set but empty counts as unset

    sim_mem: int | None = None
    sim_mem_text = get("FCSP_SIM_MEM")
    if sim_mem_text is not None:
        try:
            sim_mem = parse_size_bytes(sim_mem_text)
        except ValueError as exc:
            raise EnvError("FCSP_SIM_MEM", sim_mem_text, str(exc)) from None
    sim_gpus_text = get("FCSP_SIM_GPUS")
    sim_sms_text = get("FCSP_SIM_SMS")
    sim_dir_text = get("FCSP_SIM_DIR")
    return SimSettings(
        gpus=_int_var("FCSP_SIM_GPUS", sim_gpus_text, 1, SIM_MAX_GPUS) if sim_gpus_text is not None else None,
        mem_bytes=sim_mem,
        sms=_int_var("FCSP_SIM_SMS", sim_sms_text, 1, SIM_MAX_SMS) if sim_sms_text is not None else None,
        kernel_us=get("FCSP_SIM_KERNEL_US"),
        state_dir=Path(sim_dir_text) if sim_dir_text is not None else None,
    )


def check_env(environ: Mapping[str, str] | None = None) -> None:
    """What libfcsp will read from `environ` (default os.environ) in a job, checked by libfcsp's own reader:
    EnvError with the line the library would print for the first value it refuses."""
    env = os.environ if environ is None else environ
    nat = _native.native()
    items = [nat.ffi.new("char[]", os.fsencode(f"{k}={v}")) for k, v in env.items() if k.startswith("FCSP_")]
    envp = nat.ffi.new("char *[]", [*items, nat.ffi.NULL])
    err = _native.err_buffer()
    if nat.lib.fcsp_env_check(envp, err, _native.ERR_LEN) == 0:
        return
    message = _native.c_string(err) or "invalid FCSP_* configuration"
    name = message.split("=", 1)[0]
    raise EnvError(name, env.get(name, ""), line=message)
