"""The node daemon's configuration: a TOML file (deploy/fcsp-node.toml documents every key) overridden by
command-line flags, parsed once into NodeConfig."""

from __future__ import annotations

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


class ConfigError(ValueError):
    """A configuration file or flag the daemon cannot use; str() is one line saying which and why."""


def _size(value: Any) -> Any:
    """Sizes may be written as in `fcsp run --mem` ("8G", "1.5GiB") or as bytes."""
    if isinstance(value, str):
        return parse_size_bytes(value)
    return value


SizeBytes = Annotated[int, BeforeValidator(_size), Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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
    address: str = "0.0.0.0"
    port: int = Field(default=DEFAULT_METRICS_PORT, ge=0, le=65535)  # 0: any free port (logged)


class DcgmConfig(_Model):
    """dcgm-exporter's HPC job-mapping directory ([dcgm]); None = not maintained."""

    job_map_dir: Path | None = None


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
    mps: MpsConfig = Field(default_factory=MpsConfig)
    policy: list[NodePolicy] = Field(default_factory=list, max_length=256)


def _one_line(source: str, exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    return f"fcsp node: {source}: " + "; ".join(parts)


def load(path: Path | None, overrides: dict[str, Any] | None = None) -> NodeConfig:
    """The configuration of `path` (None: defaults only) with `overrides` (dotted keys, e.g. "metrics.port")
    applied on top; ConfigError with one line on a bad file or value."""
    data: dict[str, Any] = {}
    source = "flags"
    if path is not None:
        source = str(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"fcsp node: cannot read {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"fcsp node: {path} is not valid TOML: {exc}") from None
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
    except ValidationError as exc:
        raise ConfigError(_one_line(source, exc)) from None
    except ValueError as exc:  # a size the C parser refused
        raise ConfigError(f"fcsp node: {source}: {exc}") from None


__all__ = ["ConfigError", "DcgmConfig", "MetricsConfig", "MpsConfig", "NodeConfig", "NodePolicy", "load"]
