"""fcsp for Ray: tasks and actors that ask for `resources={"fcsp_mem_gb": 8, "fcsp_sm": 40}` run fenced.

Import name `fcsp_ray` (never `ray`). The pieces:
  caps.py      what a task's fcsp_* resources mean as caps, and `options(mem_gb=, sm=, sm_mode=)`
  hook.py      driver side: adds the `fcsp` runtime_env key to tasks/actors that ask for fcsp_* resources
  plugin.py    node side: the RuntimeEnvPlugin that preloads libfcsp into those workers with their caps,
               and keeps `fcsp node` running on the node
  resources.py what a node advertises (from NVML)
  command.py   `fcsp ray resources`, `fcsp ray start`, `fcsp ray env`
"""

from __future__ import annotations

from fcsp_ray.caps import MEM_RESOURCE, PLUGIN_KEY, SM_RESOURCE, Caps, CapsError, caps_from_resources, options
from fcsp_ray.hook import enable, runtime_env_hook
from fcsp_ray.resources import node_resources

PLUGIN_CLASS = "fcsp_ray.plugin.FcspPlugin"
PLUGINS_ENV = f'[{{"class": "{PLUGIN_CLASS}"}}]'  # the value of RAY_RUNTIME_ENV_PLUGINS
HOOK_ENV = "fcsp_ray.hook.runtime_env_hook"  # the value of RAY_RUNTIME_ENV_HOOK


def cluster_env() -> dict[str, str]:
    """The environment that turns fcsp on for a Ray node (`ray start`) and for the drivers started there."""
    return {"RAY_RUNTIME_ENV_PLUGINS": PLUGINS_ENV, "RAY_RUNTIME_ENV_HOOK": HOOK_ENV}


__all__ = [
    "HOOK_ENV",
    "MEM_RESOURCE",
    "PLUGINS_ENV",
    "PLUGIN_CLASS",
    "PLUGIN_KEY",
    "SM_RESOURCE",
    "Caps",
    "CapsError",
    "caps_from_resources",
    "cluster_env",
    "enable",
    "node_resources",
    "options",
    "runtime_env_hook",
]
