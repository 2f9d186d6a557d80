"""`fcsp node`: the subcommand's arguments and entry point (registered by fcsp_core/cli.py).

Importing this module stays cheap (argparse only): the daemon and prometheus_client load when the command
runs."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fcsp_core.node.config import DEFAULT_METRICS_PORT

DESCRIPTION = """\
The node daemon: run one per node (as root, from systemd: deploy/systemd/fcsp-node.service). It
  - owns the node region: creates the region directory (the same create path and modes as libfcsp:
    /run/fcsp 0755, users/ 1733 where each uid makes its own 0600 accounting file) and the policy table (with
    the [[policy]] entries of the configuration), maps every uid's file and removes files squatting another
    uid's name; a truncated, corrupt or other-version file is reported and rebuilt once no process maps it,
    never used;
  - reaps: a process that died without cleaning up (SIGKILL, OOM killer, abort) has its memory accounting and
    slot released at once (pidfds), logged as `reaped pid=N tenant=T bytes=B`; tenants whose processes are
    all gone are removed after a grace period unless the scheduler still holds them (a policy entry);
  - exports Prometheus metrics (GET /metrics): per GPU and per tenant memory used and cap, SM share, refused
    allocations, processes, reaped processes, memory held outside fcsp (NVML), with dcgm-exporter's labels
    (gpu, UUID, hostname) plus tenant, job_id, user, scheduler;
  - audits (every 200 ms): compares each GPU process's memory as the driver reports it (NVML) with what
    fcsp charged; a process of a fenced Slurm step or Ray worker holding more than a context allowance
    without fcsp (no LD_PRELOAD, a private region) or attached to another tenant, or one holding memory
    fcsp never charged while its tenant is over its cap plus the allowance per process (dlmopen or
    RTLD_DEEPBIND of libcuda), is an escape: logged, counted (fcsp_escapes_total), and killed (SIGKILL)
    in scheduler jobs, reported elsewhere (--audit-action);
  - optionally maintains dcgm-exporter's HPC job-mapping directory (--dcgm-job-map);
  - optionally (--mps, [mps] enabled) runs the MPS control daemon for spatial mode: each MPS server gets its
    user's SM share as active thread percentage, one user's server at a time, client faults counted.
A second instance on the node refuses to start and says which PID holds the node."""

EPILOG = f"""\
configuration file (TOML; deploy/fcsp-node.toml documents every key), flags win over it:
  region_dir, reap_interval_ms, heartbeat_stale_ms, tenant_grace_seconds, rebuild_retry_seconds,
  check_interval_seconds, sm_time_window_seconds, log_level, [metrics] enabled/address/port,
  [metrics] max_connections/idle_timeout_seconds, [audit] enabled/action/interval_ms/context_allowance_bytes,
  [dcgm] job_map_dir, [mps] enabled/control/log_dir/default_active_thread_pct/command_timeout_seconds,
  [[policy]] tenant/uid/mem_limit_bytes/sm_limit_pct/sm_mode

environment read:
  FCSP_REGION_DIR   the region directory when neither --region-dir nor region_dir is set (default
                    /run/fcsp as root; `fcsp sim` sets its own)
  FCSP_LIB_DIR      where libfcsp.so is (default: the installed package)

signals: SIGTERM, SIGINT and SIGHUP stop it (exit 0); killing it loses nothing: the accounting lives in the
region, and a restarted daemon picks up where it was.
exit status: 0 stopped by a signal (or --once done), 1 already running or cannot run, 2 bad configuration.

examples:
  fcsp node --config /etc/fcsp/fcsp-node.toml
  fcsp node --metrics-port {DEFAULT_METRICS_PORT} --grace 60 --dcgm-job-map /run/dcgm-job-map
  fcsp sim -- fcsp node --metrics-port 0
  fcsp node --once                       # one reap pass, then print the metrics and exit
"""


def register(sub: Any, formatter: Callable[[str], argparse.HelpFormatter]) -> None:
    """Add the `node` subcommand to fcsp's subparsers."""
    p = sub.add_parser(
        "node",
        help="the node daemon: region owner, crash reaper, Prometheus exporter",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=formatter,
    )
    p.add_argument("--config", metavar="FILE", help="TOML configuration file (see below)")
    p.add_argument(
        "--metrics-port", metavar="N", type=int, help=f"metrics port (default {DEFAULT_METRICS_PORT}; 0: any)"
    )
    p.add_argument(
        "--metrics-address", metavar="ADDR", help="address to serve metrics on (default 0.0.0.0: all)"
    )
    p.add_argument("--no-metrics", action="store_true", help="do not serve metrics")
    p.add_argument(
        "--region-dir", metavar="DIR", help="the region directory (default: $FCSP_REGION_DIR, /run/fcsp)"
    )
    p.add_argument(
        "--grace", metavar="SECONDS", type=float, help="idle tenants are removed after this (default 30)"
    )
    p.add_argument(
        "--reap-interval", metavar="MS", type=int, help="periodic reap pass interval (default 100)"
    )
    p.add_argument(
        "--audit-action",
        choices=["auto", "report", "kill"],
        help="what to do with an escape: auto (default) kills in Slurm/Ray jobs and tenants and reports the "
        "others, kill kills all, report kills none",
    )
    p.add_argument("--no-audit", action="store_true", help="do not audit processes against NVML")
    p.add_argument("--dcgm-job-map", metavar="DIR", help="maintain dcgm-exporter's job-mapping directory")
    p.add_argument(
        "--mps",
        action="store_true",
        help="spatial mode: run the MPS control daemon, SM shares as MPS active thread percentages",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default info")
    p.add_argument(
        "--once", action="store_true", help="one pass (reap, tenant GC, job map), print metrics, exit"
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {
        "metrics.port": args.metrics_port,
        "metrics.address": args.metrics_address,
        "metrics.enabled": False if args.no_metrics else None,
        "region_dir": args.region_dir,
        "tenant_grace_seconds": args.grace,
        "reap_interval_ms": args.reap_interval,
        "dcgm.job_map_dir": args.dcgm_job_map,
        "audit.action": args.audit_action,
        "audit.enabled": False if args.no_audit else None,
        "log_level": args.log_level,
        "mps.enabled": True if args.mps else None,
    }
    return {k: v for k, v in pairs.items() if v is not None}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"fcsp node: {level}{record.getMessage()}"


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger = logging.getLogger("fcsp.node")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def run(args: argparse.Namespace) -> int:
    """Entry point of `fcsp node`; returns the exit status."""
    from fcsp_core.node import config as node_config

    try:
        cfg = node_config.load(Path(args.config) if args.config else None, _overrides(args))
    except node_config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    _setup_logging(cfg.log_level)
    from fcsp_core.node.main import main

    return main(cfg, once=args.once)
