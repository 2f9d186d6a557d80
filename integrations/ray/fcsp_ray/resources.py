"""What a node advertises to Ray: fcsp_mem_gb (whole GiB of GPU memory summed over its GPUs, rounded down)
and fcsp_sm (100 per GPU), read from NVML (pynvml; under `fcsp sim` the simulated NVML)."""

from __future__ import annotations

from fcsp_ray.caps import GIB, MEM_RESOURCE, SM_RESOURCE


def gpu_memory_bytes() -> list[int]:
    """Each GPU's total memory by NVML index; [] when NVML is missing or sees no GPU."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        count = pynvml.nvmlDeviceGetCount()
        return [
            int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).total)
            for i in range(count)
        ]
    finally:
        pynvml.nvmlShutdown()


def node_resources(mem_bytes: list[int] | None = None) -> dict[str, float]:
    """The `ray start --resources` entries of this node ({} without GPUs)."""
    mems = gpu_memory_bytes() if mem_bytes is None else mem_bytes
    if not mems:
        return {}
    return {MEM_RESOURCE: float(sum(mems) // GIB), SM_RESOURCE: float(100 * len(mems))}
