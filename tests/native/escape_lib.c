/* A library that calls the CUDA driver directly (linked against libcuda.so.1, no cuda.h needed). Loaded with
 * dlmopen(LM_ID_NEWLM) or dlopen(RTLD_DEEPBIND), its calls bind to libcuda itself, never to a preloaded libfcsp:
 * the interposer cannot see them. The audit (fcsp node) must. */
#include <stddef.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;

CUresult cuInit(unsigned int flags);
CUresult cuDeviceGet(CUdevice *dev, int ordinal);
CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev);
CUresult cuCtxSetCurrent(CUcontext ctx);
CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes);

/* Allocates bytes on device 0; returns the CUresult of the first call that failed, 0 when it is held. */
__attribute__((visibility("default"))) int escape_alloc(unsigned long long bytes)
{
    CUdevice dev;
    CUcontext ctx;
    CUdeviceptr ptr;
    CUresult rc = cuInit(0);
    if (rc == 0)
        rc = cuDeviceGet(&dev, 0);
    if (rc == 0)
        rc = cuDevicePrimaryCtxRetain(&ctx, dev);
    if (rc == 0)
        rc = cuCtxSetCurrent(ctx);
    if (rc == 0)
        rc = cuMemAlloc_v2(&ptr, (size_t)bytes);
    return rc;
}
