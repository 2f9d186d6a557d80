"""What NVML says about the GPUs, through pynvml when it is importable: each GPU's index (the `gpu` label
dcgm-exporter uses) and the memory of processes that are not under fcsp (NvmlView, the daemon's), and the
node's GPUs with their minor numbers and memory (list_gpus, for the Ray and Slurm integrations). The one
NVML reader in Python; under `fcsp sim` it reads the simulated NVML.

Optional by design: without pynvml or a driver, the exporter labels GPUs by their region index and leaves out
fcsp_gpu_unmanaged_memory_bytes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("fcsp.node")


class NvmlView:
    """An initialised NVML; calls are serialised (one scrape renders at a time anyway)."""

    def __init__(self, pynvml: Any, max_age_seconds: float = 1.0) -> None:
        self._nvml = pynvml
        self._lock = threading.Lock()
        self._handles: dict[str, Any] = {}
        self._indices: dict[str, int | None] = {}
        self._max_age = max_age_seconds
        # uuid -> (when asked, [(pid, bytes)], or None when NVML could not say)
        self._procs: dict[str, tuple[float, list[tuple[int, int]] | None]] = {}

    @classmethod
    def open(cls) -> NvmlView | None:
        """NVML initialised, or None (logged once) when pynvml or the driver is missing."""
        try:
            import pynvml
        except ImportError:
            log.info(
                "pynvml is not installed: GPUs are labelled by region index, unmanaged memory is not exported"
            )
            return None
        try:
            pynvml.nvmlInit()
        except (pynvml.NVMLError, OSError) as exc:
            log.info(
                "NVML unavailable (%s): GPUs are labelled by region index, unmanaged memory not exported", exc
            )
            return None
        return cls(pynvml)

    def close(self) -> None:
        with self._lock:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass

    def _handle(self, uuid: str) -> Any:
        handle = self._handles.get(uuid)
        if handle is None:
            handle = self._nvml.nvmlDeviceGetHandleByUUID(uuid)
            self._handles[uuid] = handle
        return handle

    def uuids(self) -> list[str]:
        """The UUIDs of this node's GPUs (empty when NVML cannot say)."""
        with self._lock:
            try:
                count = self._nvml.nvmlDeviceGetCount()
                handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
                raw = [self._nvml.nvmlDeviceGetUUID(h) for h in handles]
            except self._nvml.NVMLError:
                return []
        return [u.decode() if isinstance(u, bytes) else str(u) for u in raw]

    def index(self, uuid: str) -> int | None:
        """NVML's index of the GPU (as nvidia-smi and dcgm-exporter number it); None if NVML lacks it."""
        with self._lock:
            if uuid not in self._indices:
                try:
                    self._indices[uuid] = int(self._nvml.nvmlDeviceGetIndex(self._handle(uuid)))
                except self._nvml.NVMLError:
                    self._indices[uuid] = None
            return self._indices[uuid]

    def _processes(self, uuid: str) -> list[tuple[int, int]] | None:
        """NVML's compute processes of the GPU as (pid, bytes), at most max_age old: asking NVML costs up to
        milliseconds per GPU, too much for every one of many concurrent scrapes."""
        now = time.monotonic()
        with self._lock:
            cached = self._procs.get(uuid)
            if cached is not None and now - cached[0] < self._max_age:
                return cached[1]
            try:
                raw = self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle(uuid))
                procs: list[tuple[int, int]] | None = [
                    (int(p.pid), int(p.usedGpuMemory))
                    for p in raw
                    if getattr(p, "usedGpuMemory", None) is not None
                ]
            except self._nvml.NVMLError:
                procs = None
            self._procs[uuid] = (now, procs)
            return procs

    def memory_split(self, uuid: str, fcsp_pids: Collection[int]) -> tuple[int, int] | None:
        """Device memory NVML sees held by compute processes: (by processes not under fcsp, by fcsp's
        processes in fcsp_pids), or None when NVML cannot say."""
        procs = self._processes(uuid)
        if procs is None:
            return None
        fcsp = sum(used for pid, used in procs if pid in fcsp_pids)
        return sum(used for _, used in procs) - fcsp, fcsp


# ------------------------------------------------------------------------------------------------------
# The node's GPUs, read once (for `fcsp ray resources` and `fcsp slurm gres|check`): the one NVML reader
# the integrations share with the daemon.
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    """One GPU as NVML reports it."""

    index: int  # NVML's index (nvidia-smi's numbering)
    minor: int  # /dev/nvidia<minor>
    name: str
    uuid: str
    total_bytes: int


class NvmlError(RuntimeError):
    """NVML cannot say what GPUs this node has (the message says why)."""


class NvmlMissingError(NvmlError):
    """pynvml (the nvidia-ml-py package) is not installed: this node cannot tell whether it has GPUs."""


class NoGpuError(NvmlError):
    """No NVIDIA driver answers here (a CPU node), or NVML reports no GPU."""


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def list_gpus() -> list[Gpu]:
    """Every GPU NVML sees, by index (empty when the driver has none); raises NvmlMissingError without
    pynvml, NoGpuError when no driver answers, NvmlError when a query fails."""
    try:
        import pynvml
    except ImportError:
        raise NvmlMissingError(
            "pynvml is not installed, so this node's GPUs cannot be read: pip install nvidia-ml-py"
        ) from None
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError) as exc:
        raise NoGpuError(f"no NVIDIA driver answers here (NVML: {exc})") from None
    try:
        gpus = []
        for i in range(int(pynvml.nvmlDeviceGetCount())):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            try:
                minor = int(pynvml.nvmlDeviceGetMinorNumber(handle))
            except pynvml.NVMLError:
                minor = i
            gpus.append(
                Gpu(
                    index=i,
                    minor=minor,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    total_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                )
            )
        return gpus
    except pynvml.NVMLError as exc:
        raise NvmlError(f"NVML cannot list this node's GPUs: {exc}") from None
    finally:
        pynvml.nvmlShutdown()
