"""What a node advertises to Ray: fcsp_mem_gb (whole GiB of GPU memory summed over its GPUs, rounded down)
and fcsp_sm (100 per GPU), read from NVML (pynvml; under `fcsp sim` the simulated NVML)."""

from __future__ import annotations

from fcsp_ray.caps import GIB, MEM_RESOURCE, SM_RESOURCE


class NvmlMissingError(RuntimeError):
    """pynvml (the nvidia-ml-py package) is not installed: this node cannot tell whether it has GPUs."""


class NoGpuError(RuntimeError):
    """NVML works but reports no GPU, or no NVIDIA driver answers here (a CPU node)."""


def gpu_memory_bytes() -> list[int]:
    """Each GPU's total memory by NVML index; raises NvmlMissingError or NoGpuError (with the reason)."""
    try:
        import pynvml
    except ImportError:
        raise NvmlMissingError(
            "pynvml is not installed, so this node's GPUs cannot be read: pip install nvidia-ml-py "
            "(or reinstall with pip install 'fcsp[ray]')"
        ) from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NoGpuError(f"no NVIDIA driver answers here (NVML: {exc})") from None
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            raise NoGpuError("NVML sees no GPU on this node")
        return [
            int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).total)
            for i in range(count)
        ]
    finally:
        pynvml.nvmlShutdown()


def node_resources(mem_bytes: list[int] | None = None) -> dict[str, float]:
    """This node's `ray start --resources` entries, from mem_bytes or NVML; raises as gpu_memory_bytes."""
    mems = gpu_memory_bytes() if mem_bytes is None else mem_bytes
    if not mems:
        return {}
    return {MEM_RESOURCE: float(sum(mems) // GIB), SM_RESOURCE: float(100 * len(mems))}
