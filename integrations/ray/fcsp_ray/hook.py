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
import inspect
from collections.abc import Callable
from typing import Any

from fcsp_ray.caps import PLUGIN_KEY, Caps, caps_from_resources

_ENABLED: list[bool] = []
TESTED_RAY = "2.9.0 and 2.60.0"  # the oldest and newest Ray the hook is tested against


class RayApiError(RuntimeError):
    """This Ray's private submit API is not the one the hook wraps: fcsp caps could not be attached."""


def _private(module: Any, path: str) -> Callable[..., Any]:
    """module.<path> (dotted), checked to be a function that takes (self, args, kwargs, **options)."""
    import ray

    target: Any = module
    for part in path.split("."):
        target = getattr(target, part, None)
        if target is None:
            break
    params = list(inspect.signature(target).parameters.values()) if callable(target) else []
    names = [p.name for p in params]
    if path.endswith("._remote") and (
        names[:3] != ["self", "args", "kwargs"] or params[-1].kind is not inspect.Parameter.VAR_KEYWORD
    ):
        target = None
    if target is None:
        raise RayApiError(
            f"fcsp_ray: Ray {ray.__version__} has no {module.__name__}.{path} of the form fcsp wraps, so "
            f"tasks asking for fcsp_* resources would run uncapped; fcsp's Ray hook is tested with Ray "
            f"{TESTED_RAY}"
        )
    return target


def _with_caps(runtime_env: Any, resources: Any) -> dict[str, Any] | None:
    """The runtime_env with the fcsp key for these resources (and the sm_mode the task's own fcsp key asks
    for); None when they ask for no fcsp caps. A bad fcsp request raises CapsError (one line) at submit."""
    asked = dict((runtime_env or {}).get(PLUGIN_KEY) or {})
    caps = caps_from_resources(resources)
    if caps.empty:
        if "sm_mode" in asked:
            Caps.parse({"sm_mode": asked["sm_mode"]})  # spatial without a share: refused here, at submit
        return None
    # the mode is the task's to ask for; the caps come from its resources, never from its own fcsp key
    wanted = {**caps.to_runtime_env(), **({"sm_mode": asked["sm_mode"]} if "sm_mode" in asked else {})}
    merged = dict(runtime_env or {})
    merged[PLUGIN_KEY] = Caps.parse(wanted).to_runtime_env()
    return merged


def enable() -> None:
    """Translate fcsp_* resources into the runtime_env of every task and actor this driver submits
    (idempotent). Raises RayApiError, naming what is missing, when this Ray's private submit API moved:
    never a silent no-op that would let capped tasks run uncapped."""
    if _ENABLED:
        return
    from ray import actor, remote_function
    from ray._private import utils

    task_remote = _private(remote_function, "RemoteFunction._remote")
    actor_remote = _private(actor, "ActorClass._remote")
    get_runtime_env_info = _private(utils, "get_runtime_env_info")
    # Ray 2.9-2.2x call it parse_runtime_env; later ones parse_runtime_env_for_task_or_actor (same contract)
    parse_name = "parse_runtime_env_for_task_or_actor"
    parse_runtime_env_for_task_or_actor = _private(
        utils, parse_name if hasattr(utils, parse_name) else "parse_runtime_env"
    )

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
