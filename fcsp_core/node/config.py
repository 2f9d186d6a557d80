"""The node daemon's configuration: a TOML file (deploy/fcsp-node.toml documents every key) overridden by
command-line flags, parsed once into NodeConfig."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from fcsp_core.config import PolicyEntry, SmPctOrNone, TenantName, parse_size_bytes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_METRICS_PORT = 9478
# Every interface by default: the endpoint exists to be scraped by a central Prometheus (and through the
# container port under KubeRay), which a loopback default would silently break. What it exposes is read-only
# (tenant, user and job names, as squeue shows anyone), and a client cannot hurt the daemon through it
# (connections are capped and time out; the reaper and the audit run on threads of their own). A site that
# scrapes locally, or through a proxy, sets [metrics] address = "127.0.0.1".
DEFAULT_METRICS_ADDRESS = "0.0.0.0"
MAX_CONFIG_BYTES = 1 << 20  # a configuration file is a few KiB; past this it is not one
# Context memory the driver charges each process (~520 MiB per process on an H200, driver 580: FACTS.md),
# plus headroom for lazily loaded kernel images (cuBLAS, cuDNN): what a tenant may hold over its cap per
# process in NVML's figures before the audit calls it an escape.
DEFAULT_CONTEXT_ALLOWANCE = 768 << 20
MAX_BYTES = (1 << 63) - 1


class ConfigError(ValueError):
    """A configuration file or flag the daemon cannot use; str() is one line saying which and why."""


def _size(value: Any) -> Any:
    """Sizes may be written as in `fcsp run --mem` ("8G", "1.5GiB") or as bytes."""
    if isinstance(value, str):
        return parse_size_bytes(value)
    return value


SizeBytes = Annotated[int, BeforeValidator(_size), Field(ge=0, le=MAX_BYTES)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class NodePolicy(_Model):
    """A tenant's limits that the daemon writes into the policy table at start ([[policy]] in the file)."""

    tenant: TenantName
    uid: int | None = Field(default=None, ge=0, lt=2**32)
    mem_limit_bytes: SizeBytes = 0  # 0 = no cap
    sm_limit_pct: SmPctOrNone = 0  # 0 = no cap
    sm_mode: Literal["time", "spatial"] = "time"  # spatial: the share is an MPS partition ([mps])

    def entry(self) -> PolicyEntry:
        return PolicyEntry(
            tenant=self.tenant,
            uid=self.uid,
            mem_limit_bytes=self.mem_limit_bytes,
            sm_limit_pct=self.sm_limit_pct,
            sm_mode=self.sm_mode,
        )


class MetricsConfig(_Model):
    """The Prometheus endpoint ([metrics])."""

    enabled: bool = True
    address: str = Field(default=DEFAULT_METRICS_ADDRESS, min_length=1, max_length=255)
    port: int = Field(default=DEFAULT_METRICS_PORT, ge=0, le=65535)  # 0: any free port (logged)
    max_connections: int = Field(default=64, ge=1, le=4096)  # open at once; more are closed at accept
    idle_timeout_seconds: float = Field(default=10.0, gt=0, le=600)  # a connection silent this long is closed


class DcgmConfig(_Model):
    """dcgm-exporter's HPC job-mapping directory ([dcgm]); None = not maintained."""

    job_map_dir: Path | None = None


AuditAction = Literal["auto", "report", "kill"]


class AuditConfig(_Model):
    """The driver-truth audit ([audit]): NVML's per-process memory against fcsp's accounting."""

    enabled: bool = True
    # auto: kill escapes in scheduler jobs and tenants (Slurm, Ray), report the others; kill: kill every
    # escape; report: kill none
    action: AuditAction = "auto"
    interval_ms: int = Field(default=200, ge=20, le=250)
    context_allowance_bytes: SizeBytes = DEFAULT_CONTEXT_ALLOWANCE


class MpsConfig(_Model):
    """Spatial mode ([mps]): fcsp node runs the MPS control daemon (fcsp_core/node/mps.py)."""

    enabled: bool = False
    control: str = "nvidia-cuda-mps-control"  # a path, or a name found on PATH or in the driver's bin dirs
    log_dir: Path | None = None  # None: <region dir>/mps-log
    default_active_thread_pct: int = Field(default=100, ge=1, le=100)  # uids without a policy share
    command_timeout_seconds: float = Field(default=5.0, gt=0, le=60)


class NodeConfig(_Model):
    """Everything `fcsp node` is told."""

    region_dir: Path | None = None  # None: the default (FCSP_REGION_DIR, /run/fcsp for root, ...)
    reap_interval_ms: int = Field(default=100, ge=10, le=1000)
    heartbeat_stale_ms: int = Field(default=300, ge=100, le=60_000)
    tenant_grace_seconds: float = Field(default=30.0, ge=0, le=7 * 86400)
    rebuild_retry_seconds: float = Field(default=5.0, gt=0, le=3600)
    check_interval_seconds: float = Field(default=10.0, gt=0, le=3600)
    sm_time_window_seconds: float = Field(default=5.0, gt=0, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    dcgm: DcgmConfig = Field(default_factory=DcgmConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    mps: MpsConfig = Field(default_factory=MpsConfig)
    policy: list[NodePolicy] = Field(default_factory=list, max_length=256)


def _one_line(source: str, exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    return f"fcsp node: {source}: " + "; ".join(parts)


def _read_file(path: Path) -> bytes:
    """The bytes of a configuration file: a regular file of at most MAX_CONFIG_BYTES (not /dev/zero, a FIFO
    or a directory, which would block or never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"fcsp node: cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"fcsp node: {path} is not a regular file (a configuration file is TOML text)")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"fcsp node: {path} is {st.st_size} bytes; a configuration file may have at most "
                f"{MAX_CONFIG_BYTES}"
            )
        chunks, total = [], 0
        while total <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > MAX_CONFIG_BYTES:
            raise ConfigError(f"fcsp node: {path} has more than {MAX_CONFIG_BYTES} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(f"fcsp node: cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def load(path: Path | None, overrides: dict[str, Any] | None = None) -> NodeConfig:
    """The configuration of `path` (None: defaults only) with `overrides` (dotted keys, e.g. "metrics.port")
    applied on top; ConfigError with one line on a bad file or value."""
    data: dict[str, Any] = {}
    source = "flags"
    if path is not None:
        source = str(path)
        text = _read_file(path)
        try:
            data = tomllib.loads(text.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"fcsp node: {path} is not UTF-8 text (byte {exc.start})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"fcsp node: {path} is not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"fcsp node: {path}: arrays or tables nested too deeply") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[leaf] = value
    try:
        return NodeConfig.model_validate(data)
    except RecursionError:
        raise ConfigError(f"fcsp node: {source}: values nested too deeply") from None
    except ValidationError as exc:
        raise ConfigError(_one_line(source, exc)) from None
    except ValueError as exc:  # a size the C parser refused
        raise ConfigError(f"fcsp node: {source}: {exc}") from None


__all__ = [
    "AuditConfig",
    "ConfigError",
    "DcgmConfig",
    "MetricsConfig",
    "MpsConfig",
    "NodeConfig",
    "NodePolicy",
    "load",
]
