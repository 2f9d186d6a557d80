"""Node side: the RuntimeEnvPlugin (`RAY_RUNTIME_ENV_PLUGINS='[{"class": "fcsp_ray.plugin.FcspPlugin"}]'`).

Ray's runtime-env agent (one per node) loads it at start; for a worker whose runtime_env carries the `fcsp`
key it sets, before the worker execs: LD_PRELOAD (this node's libfcsp.so first), FCSP_MEM_LIMIT,
FCSP_SM_LIMIT, FCSP_SM_MODE=spatial for `sm_mode: spatial`, FCSP_ON_INIT_FAILURE=fail and
FCSP_TENANT=ray-<worker pid> (exported by the bash step that execs the worker, so each worker process is its
own tenant). Loading it also starts the node daemon supervisor (daemon.py).

Fail closed: a worker that asked for caps never runs uncapped. Its caps are pinned over anything the task's
own `env_vars` say (Ray applies plugins after `env_vars`: FCSP_MEM_LIMIT, FCSP_SM_LIMIT and
FCSP_ON_INIT_FAILURE are overwritten, per-GPU FCSP_*_LIMIT_<gpu> of a capped kind dropped); if libfcsp
cannot set up in the worker, its GPU memory allocations are refused (CUDA_ERROR_NOT_PERMITTED) instead of
running without caps; and if libfcsp.so is missing on the node, the runtime env fails to set up and Ray
fails the task.

Why not FCSP_SCHEDULER and the policy table (as Slurm does): the policy table fences a tenant only when the
tenant cannot write it. It belongs to the region directory's owner (root, or the user running `fcsp node`);
Ray's runtime-env agent runs as the same user as the tasks, so an entry it could write, the task could
rewrite, and where it cannot (a root-owned /run/fcsp) every task would be refused. Each worker is also its
own tenant named by its PID, known only in the bash step that execs it, after the agent has answered. So Ray
caps come from the worker's environment, set before exec, fail closed.
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
            daemon.note(daemon.log_path(), f"{daemon.NOT_STARTED}{exc}")
            log.error("%s%s", daemon.NOT_STARTED, exc)

    @staticmethod
    def validate(runtime_env_dict: dict) -> None:
        value = runtime_env_dict.get(PLUGIN_KEY)
        if value is not None:
            Caps.parse(value)

    def modify_context(
        self, uris: list[str], runtime_env: Any, context: RuntimeEnvContext, logger: logging.Logger
    ) -> None:
        from fcsp_core import paths
        from fcsp_core.launch import prepend_preload

        value = runtime_env.get(PLUGIN_KEY)
        if value is None:
            return
        caps = Caps.parse(value)
        if caps.empty:
            return  # a mode alone ({"sm_mode": "time"}) asks for no caps
        lib = paths.libfcsp_path()  # NativeMissingError (the task fails to start) rather than no preload
        env = context.env_vars
        ours = caps.to_env()
        for key in [k for k in env if any(k.startswith(f"{var}_") for var in ours)]:
            del env[key]  # a per-GPU FCSP_MEM_LIMIT_<gpu> of the task's own would replace its Ray cap
        base_preload = env.get("LD_PRELOAD", os.environ.get("LD_PRELOAD"))
        env["LD_PRELOAD"] = prepend_preload(base_preload, str(lib))
        env.update(ours)
        env["FCSP_ON_INIT_FAILURE"] = "fail"
        if caps.sm_mode == "spatial":
            # the partition is FCSP_SM_LIMIT (libfcsp sets it); a task's own larger one would widen it
            env.pop("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", None)
        elif env.get("FCSP_SM_MODE") == "spatial":
            env["FCSP_SM_MODE"] = "hard"  # spatial is asked for through the fcsp key, where it is validated
        # One tenant per worker process: the bash step that execs the worker exports its own PID, which the
        # worker keeps across exec.
        context.command_prefix += ["export", "FCSP_TENANT=ray-$$", "&&"]
        logger.info("fcsp: worker caps %s", caps.to_runtime_env())
