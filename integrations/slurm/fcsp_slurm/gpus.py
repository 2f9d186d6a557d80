"""The node's GPUs as NVML reports them (ctypes; the simulated NVML works the same)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    index: int
    minor: int  # /dev/nvidia<minor>
    name: str
    uuid: str
    total_bytes: int


class NvmlError(RuntimeError):
    """NVML is missing or failed."""


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def list_gpus() -> list[Gpu]:
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError as exc:
        raise NvmlError(f"cannot load libnvidia-ml.so.1: {exc}") from None

    def call(name: str, *args: object) -> None:
        rc = getattr(nvml, name)(*args)
        if rc != 0:
            raise NvmlError(f"NVML {name} failed ({rc})")

    call("nvmlInit_v2")
    try:
        count = ctypes.c_uint(0)
        call("nvmlDeviceGetCount_v2", ctypes.byref(count))
        gpus = []
        for i in range(count.value):
            handle = ctypes.c_void_p()
            call("nvmlDeviceGetHandleByIndex_v2", ctypes.c_uint(i), ctypes.byref(handle))
            mem = _Memory()
            call("nvmlDeviceGetMemoryInfo", handle, ctypes.byref(mem))
            uuid = ctypes.create_string_buffer(96)
            call("nvmlDeviceGetUUID", handle, uuid, ctypes.c_uint(96))
            name = ctypes.create_string_buffer(96)
            call("nvmlDeviceGetName", handle, name, ctypes.c_uint(96))
            minor = ctypes.c_uint(i)
            try:
                call("nvmlDeviceGetMinorNumber", handle, ctypes.byref(minor))
            except (NvmlError, AttributeError):
                minor = ctypes.c_uint(i)
            gpus.append(
                Gpu(i, minor.value, name.value.decode(errors="replace"), uuid.value.decode(), mem.total)
            )
        return gpus
    finally:
        nvml.nvmlShutdown()
