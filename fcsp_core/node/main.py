"""Running the daemon: where its region is, taking the node, the loop (or one pass with --once), the way
out."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from fcsp_core.node.config import NodeConfig
from fcsp_core.node.daemon import NodeDaemon, install_signal_handlers
from fcsp_core.node.instance_lock import AlreadyRunningError
from fcsp_core.region import FcspError, default_region_dir

log = logging.getLogger("fcsp.node")


def main(config: NodeConfig, once: bool = False) -> int:
    try:
        region_dir = Path(config.region_dir) if config.region_dir else default_region_dir()
    except FcspError as exc:
        print(f"fcsp node: {exc.message}", file=sys.stderr)
        return 1
    daemon = NodeDaemon(config, region_dir)
    try:
        daemon.start()
    except AlreadyRunningError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (FcspError, OSError) as exc:
        message = exc.message if isinstance(exc, FcspError) else str(exc)
        print(f"fcsp node: cannot start: {message}", file=sys.stderr)
        return 1
    try:
        if once:
            return _once(daemon)
        install_signal_handlers(daemon)
        try:
            daemon.serve_metrics()
        except OSError as exc:
            m = config.metrics
            print(
                f"fcsp node: cannot serve metrics on {m.address}:{m.port}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
        daemon.run_loop()
        log.info("stopped")
        return 0
    finally:
        daemon.shutdown()


def _once(daemon: NodeDaemon) -> int:
    if not daemon.open_region():
        return 1
    daemon.housekeeping(time.monotonic())
    sys.stdout.buffer.write(daemon.metrics_text())
    sys.stdout.flush()
    return 0
