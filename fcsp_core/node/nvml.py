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
    """An initialised NVML, shared by the scrapes and the audit: the lock guards the caches and handles; the
    process-list calls run outside it."""

    def __init__(self, pynvml: Any, max_age_seconds: float = 1.0) -> None:
        self._nvml = pynvml
        self._lock = threading.Lock()
        self._handles: dict[str, Any] = {}
        self._indices: dict[str, int | None] = {}
        self._max_age = max_age_seconds
        # uuid -> (when asked, [(pid, bytes)], or None when NVML could not say)
        self._procs: dict[str, tuple[float, list[tuple[int, int]] | None]] = {}
        self._all: list[str] | None = None  # every GPU's UUID, once asked
        self._uuids_failed = False  # logged once

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

    def index(self, uuid: str) -> int | None:
        """NVML's index of the GPU (as nvidia-smi and dcgm-exporter number it); None if NVML lacks it."""
        with self._lock:
            if uuid not in self._indices:
                try:
                    self._indices[uuid] = int(self._nvml.nvmlDeviceGetIndex(self._handle(uuid)))
                except self._nvml.NVMLError:
                    self._indices[uuid] = None
            return self._indices[uuid]

    def _ask(self, uuid: str) -> list[tuple[int, int]] | None:
        """NVML's compute processes of the GPU now, cached for _processes. The call itself runs outside the
        lock (NVML is thread-safe): a slow NVML (milliseconds per GPU) delays only its caller, never a scrape
        that finds a fresh enough reading in the cache."""
        try:
            with self._lock:
                handle = self._handle(uuid)
            raw = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            # usedGpuMemory None: NVML cannot say (e.g. without the rights); the process still has a context
            procs: list[tuple[int, int]] | None = [(int(p.pid), int(p.usedGpuMemory or 0)) for p in raw]
        except self._nvml.NVMLError:
            procs = None
        with self._lock:
            self._procs[uuid] = (time.monotonic(), procs)
        return procs

    def _processes(self, uuid: str) -> list[tuple[int, int]] | None:
        """NVML's compute processes of the GPU as (pid, bytes), at most max_age old: asking NVML costs up to
        milliseconds per GPU, too much for every one of many concurrent scrapes."""
        with self._lock:
            cached = self._procs.get(uuid)
            if cached is not None and time.monotonic() - cached[0] < self._max_age:
                return cached[1]
        return self._ask(uuid)

    def uuids(self) -> list[str]:
        """The UUIDs of this node's GPUs, empty when NVML cannot say (asked until it answers, then kept: GPUs
        do not come and go under a running driver)."""
        with self._lock:
            if self._all is None:
                found: list[str] = []
                try:
                    for i in range(int(self._nvml.nvmlDeviceGetCount())):
                        handle = self._nvml.nvmlDeviceGetHandleByIndex(i)
                        uuid = self._nvml.nvmlDeviceGetUUID(handle)
                        uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
                        self._handles[uuid] = handle
                        found.append(uuid)
                except self._nvml.NVMLError as exc:
                    if not self._uuids_failed:
                        log.warning("NVML cannot list the GPUs (%s); asking again until it can", exc)
                    self._uuids_failed = True
                    return []
                self._all = found
            return list(self._all)

    def processes_now(self, uuid: str) -> list[tuple[int, int]] | None:
        """NVML's compute processes of the GPU as (pid, bytes), asked now (the audit's reading; scrapes reuse
        it); None when NVML cannot say."""
        return self._ask(uuid)

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
