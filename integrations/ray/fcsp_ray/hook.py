"""Driver side: tasks and actors that ask for fcsp_* resources get the `fcsp` runtime_env key.

Ray gives a RuntimeEnvPlugin only the runtime_env, never the task's resources, so the driver translates
`resources={"fcsp_mem_gb": 8}` into `runtime_env={"fcsp": {"mem_gb": 8}}` (merged with the task's own
runtime_env) as the task or actor is submitted. Ray keys its worker pool by runtime_env, so a worker started
for one set of caps is never reused for a task with other caps.

Turned on by `RAY_RUNTIME_ENV_HOOK=fcsp_ray.hook.runtime_env_hook` (Ray calls it in `ray.init`; `fcsp ray
start` sets it for drivers started on the cluster's nodes) or by `fcsp_ray.enable()`.
"""

from __future__ import annotations

import functools
from typing import Any

from fcsp_ray.caps import PLUGIN_KEY, caps_from_resources

_ENABLED: list[bool] = []


def _with_caps(runtime_env: Any, resources: Any) -> dict[str, Any] | None:
    """The runtime_env with the fcsp key for these resources; None when they ask for no fcsp caps."""
    caps = caps_from_resources(resources)
    if caps.empty:
        return None
    merged = dict(runtime_env or {})
    merged[PLUGIN_KEY] = caps.to_runtime_env()
    return merged


def enable() -> None:
    """Translate fcsp_* resources into the runtime_env of every task and actor this driver submits
    (idempotent)."""
    if _ENABLED:
        return
    from ray import actor, remote_function
    from ray._private.utils import get_runtime_env_info, parse_runtime_env_for_task_or_actor

    task_remote = remote_function.RemoteFunction._remote
    actor_remote = actor.ActorClass._remote

    @functools.wraps(task_remote)
    def _task_remote(self: Any, args: Any = None, kwargs: Any = None, **task_options: Any) -> Any:
        env = _with_caps(task_options.get("runtime_env"), task_options.get("resources"))
        if env is not None:
            parsed = parse_runtime_env_for_task_or_actor(env)
            task_options["runtime_env"] = parsed
            task_options["serialized_runtime_env_info"] = get_runtime_env_info(
                parsed, is_job_runtime_env=False, serialize=True
            )
        return task_remote(self, args, kwargs, **task_options)

    @functools.wraps(actor_remote)
    def _actor_remote(self: Any, args: Any = None, kwargs: Any = None, **actor_options: Any) -> Any:
        env = _with_caps(actor_options.get("runtime_env"), actor_options.get("resources"))
        if env is not None:
            actor_options["runtime_env"] = parse_runtime_env_for_task_or_actor(env)
        return actor_remote(self, args, kwargs, **actor_options)

    remote_function.RemoteFunction._remote = _task_remote  # type: ignore[method-assign]
    actor.ActorClass._remote = _actor_remote  # type: ignore[method-assign]
    _ENABLED.append(True)


def runtime_env_hook(runtime_env: dict[str, Any] | None) -> dict[str, Any] | None:
    """For RAY_RUNTIME_ENV_HOOK: Ray calls it in `ray.init` with the job's runtime_env; turns fcsp on for
    this driver and returns the runtime_env unchanged."""
    enable()
    return runtime_env
