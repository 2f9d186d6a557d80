/* Linear device memory: cuMemAlloc, cuMemAllocPitch, cuMemAllocManaged, cuMemFree, cuMemGetInfo. */
#include <limits.h>

#include "sim_cuda.h"

#define SIM_PITCH_ALIGN 512

static CUresult alloc_current(uint64_t bytes, enum sim_alloc_kind kind, int low32, uint64_t *out)
{
    CUcontext ctx;
    int dev;
    CUresult rc = sim_current(&ctx, &dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    return sim_alloc_linear(dev, ctx, bytes, kind, low32, out);
}

SIM_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    if (dptr == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t p;
    CUresult rc = sim_capture_unsafe_call(); /* graphs.c: forbidden during some captures */
    if (rc == CUDA_SUCCESS)
        rc = alloc_current(bytesize, SIM_ALLOC_MEM, 0, &p);
    if (rc == CUDA_SUCCESS)
        *dptr = p;
    return rc;
}

SIM_EXPORT CUresult cuMemAlloc(CUdeviceptr_v1 *dptr, unsigned int bytesize)
{
    if (dptr == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t p;
    CUresult rc = sim_capture_unsafe_call(); /* graphs.c: forbidden during some captures */
    if (rc == CUDA_SUCCESS)
        rc = alloc_current(bytesize, SIM_ALLOC_MEM, 1, &p);
    if (rc == CUDA_SUCCESS)
        *dptr = (CUdeviceptr_v1)p;
    return rc;
}

static CUresult alloc_pitch(uint64_t *out, uint64_t *pitch, uint64_t width, uint64_t height, unsigned int elem,
                            int low32)
{
    if (width == 0 || height == 0 || (elem != 4 && elem != 8 && elem != 16))
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t p = (width + SIM_PITCH_ALIGN - 1) / SIM_PITCH_ALIGN * SIM_PITCH_ALIGN;
    if (height > UINT64_MAX / p)
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = alloc_current(p * height, SIM_ALLOC_PITCH, low32, out);
    if (rc == CUDA_SUCCESS)
        *pitch = p;
    return rc;
}

SIM_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
                                       unsigned int ElementSizeBytes)
{
    if (dptr == NULL || pPitch == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t p, pitch;
    CUresult rc = alloc_pitch(&p, &pitch, WidthInBytes, Height, ElementSizeBytes, 0);
    if (rc == CUDA_SUCCESS) {
        *dptr = p;
        *pPitch = (size_t)pitch;
    }
    return rc;
}

SIM_EXPORT CUresult cuMemAllocPitch(CUdeviceptr_v1 *dptr, unsigned int *pPitch, unsigned int WidthInBytes,
                                    unsigned int Height, unsigned int ElementSizeBytes)
{
    if (dptr == NULL || pPitch == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t p, pitch;
    CUresult rc = alloc_pitch(&p, &pitch, WidthInBytes, Height, ElementSizeBytes, 1);
    if (rc == CUDA_SUCCESS) {
        *dptr = (CUdeviceptr_v1)p;
        *pPitch = (unsigned int)pitch;
    }
    return rc;
}

SIM_EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
    if (dptr == NULL || (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST))
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t p;
    CUresult rc = alloc_current(bytesize, SIM_ALLOC_MANAGED, 0, &p);
    if (rc == CUDA_SUCCESS)
        *dptr = p;
    return rc;
}

SIM_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr)
{
    CUresult rc = sim_require_init();
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_unsafe_call(); /* graphs.c: forbidden during some captures */
    if (rc != CUDA_SUCCESS)
        return rc;
    return sim_free_linear(dptr);
}

SIM_EXPORT CUresult cuMemFree(CUdeviceptr_v1 dptr)
{
    return cuMemFree_v2(dptr);
}

SIM_EXPORT CUresult cuMemGetInfo_v2(size_t *free, size_t *total)
{
    int dev;
    CUresult rc = sim_current(NULL, &dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (free == NULL || total == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t live;
    sim_mem_stats(g_sim_sh, dev, &live, NULL); /* node-wide, dead processes reaped first */
    uint64_t t = g_sim_sh->gpu[dev].total_bytes;
    *total = (size_t)t;
    *free = (size_t)(live < t ? t - live : 0);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemGetInfo(unsigned int *free, unsigned int *total)
{
    size_t f, t;
    if (free == NULL || total == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = cuMemGetInfo_v2(&f, &t);
    if (rc == CUDA_SUCCESS) {
        *free = f > UINT_MAX ? UINT_MAX : (unsigned int)f;
        *total = t > UINT_MAX ? UINT_MAX : (unsigned int)t;
    }
    return rc;
}
