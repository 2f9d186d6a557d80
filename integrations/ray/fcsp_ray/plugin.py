"""Node side: the RuntimeEnvPlugin (`RAY_RUNTIME_ENV_PLUGINS='[{"class": "fcsp_ray.plugin.FcspPlugin"}]'`).

Ray's runtime-env agent (one per node) loads it at start; for a worker whose runtime_env carries the `fcsp`
key it sets, before the worker execs: LD_PRELOAD (this node's libfcsp.so first), FCSP_MEM_LIMIT,
FCSP_SM_LIMIT, and FCSP_TENANT=ray-<worker pid> (exported by the bash step that execs the worker, so each
worker process is its own tenant). Loading it also starts the node daemon supervisor (daemon.py).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray._private.runtime_env.context import RuntimeEnvContext
from ray._private.runtime_env.plugin import RuntimeEnvPlugin

from fcsp_ray.caps import PLUGIN_KEY, Caps

log = logging.getLogger(__name__)


class FcspPlugin(RuntimeEnvPlugin):
    name = PLUGIN_KEY

    def __init__(self) -> None:
        super().__init__()
        from fcsp_ray import daemon

        try:
            daemon.ensure_started()
        except Exception as exc:  # noqa: BLE001 - the agent must come up even if the daemon cannot
            log.error("fcsp: could not start the node daemon: %s", exc)

    @staticmethod
    def validate(runtime_env_dict: dict) -> None:
        value = runtime_env_dict.get(PLUGIN_KEY)
        if value is not None:
            Caps.model_validate(value)

    def modify_context(
        self, uris: list[str], runtime_env: Any, context: RuntimeEnvContext, logger: logging.Logger
    ) -> None:
        from fcsp_core import paths
        from fcsp_core.launch import prepend_preload

        value = runtime_env.get(PLUGIN_KEY)
        if value is None:
            return
        caps = Caps.model_validate(value)
        env = context.env_vars
        base_preload = env.get("LD_PRELOAD", os.environ.get("LD_PRELOAD"))
        env["LD_PRELOAD"] = prepend_preload(base_preload, str(paths.libfcsp_path()))
        env.update(caps.to_env())
        # One tenant per worker process: the bash step that execs the worker exports its own PID, which the
        # worker keeps across exec.
        context.command_prefix += ["export", "FCSP_TENANT=ray-$$", "&&"]
        logger.info("fcsp: worker caps %s", caps.to_runtime_env())
