"""What a node advertises to Ray: fcsp_mem_gb (whole GiB of GPU memory summed over its GPUs, rounded down)
and fcsp_sm (100 per GPU), read from NVML (fcsp_core.node.nvml; under `fcsp sim` the simulated NVML)."""

from __future__ import annotations

from fcsp_core.node.nvml import NoGpuError, NvmlError, NvmlMissingError, list_gpus
from fcsp_ray.caps import GIB, MEM_RESOURCE, SM_RESOURCE

__all__ = ["NoGpuError", "NvmlError", "NvmlMissingError", "gpu_memory_bytes", "node_resources"]


def gpu_memory_bytes() -> list[int]:
    """Each GPU's total memory by NVML index; raises NvmlMissingError, NoGpuError (also when NVML sees no
    GPU) or NvmlError, with the reason."""
    gpus = list_gpus()
    if not gpus:
        raise NoGpuError("NVML sees no GPU on this node")
    return [g.total_bytes for g in gpus]


def node_resources(mem_bytes: list[int] | None = None) -> dict[str, float]:
    """This node's `ray start --resources` entries, from mem_bytes or NVML; raises as gpu_memory_bytes."""
    mems = gpu_memory_bytes() if mem_bytes is None else mem_bytes
    if not mems:
        return {}
    return {MEM_RESOURCE: float(sum(mems) // GIB), SM_RESOURCE: float(100 * len(mems))}
