"""A tiny CUDA driver-API client (ctypes): what the demo's and tests' tasks run on the GPU (or the
simulated driver). Allocations go through libcuda's dlsym, so a preloaded libfcsp fences them."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

CUDA_ERROR_OUT_OF_MEMORY = 2
CUDA_ERROR_NOT_PERMITTED = 800  # what libfcsp answers, failing closed, when it could not set up
_NAMES = {
    CUDA_ERROR_OUT_OF_MEMORY: "CUDA_ERROR_OUT_OF_MEMORY",
    CUDA_ERROR_NOT_PERMITTED: "CUDA_ERROR_NOT_PERMITTED",
}


class CudaError(RuntimeError):
    def __init__(self, call: str, code: int) -> None:
        name = _NAMES.get(code, f"CUresult {code}")
        super().__init__(f"{call} failed: {name}")
        self.code = code


@dataclass
class Cuda:
    lib: ctypes.CDLL = field(default_factory=lambda: ctypes.CDLL("libcuda.so.1"))
    held: list[int] = field(default_factory=list)

    def _call(self, name: str, *args: object) -> None:
        rc = getattr(self.lib, name)(*args)
        if rc != 0:
            raise CudaError(name, rc)

    def __post_init__(self) -> None:
        self._call("cuInit", 0)
        dev = ctypes.c_int(0)
        self._call("cuDeviceGet", ctypes.byref(dev), 0)
        ctx = ctypes.c_void_p()
        self._call("cuDevicePrimaryCtxRetain", ctypes.byref(ctx), dev)
        self._call("cuCtxSetCurrent", ctx)

    def mem_info(self) -> tuple[int, int]:
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self._call("cuMemGetInfo_v2", ctypes.byref(free), ctypes.byref(total))
        return free.value, total.value

    def alloc(self, size: int) -> int:
        ptr = ctypes.c_uint64()
        self._call("cuMemAlloc_v2", ctypes.byref(ptr), ctypes.c_size_t(size))
        self.held.append(ptr.value)
        return ptr.value

    def free_all(self) -> None:
        while self.held:
            self._call("cuMemFree_v2", ctypes.c_uint64(self.held.pop()))
