/* CUDA arrays and mipmapped arrays: Width x max(Height,1) x max(Depth,1) x channels x element size bytes (summed
 * over the levels of a mipmapped array). Handles are opaque numbers. */
#include <stdlib.h>

#include "sim_cuda.h"

static uint64_t element_size(CUarray_format f)
{
    switch (f) {
    case CU_AD_FORMAT_UNSIGNED_INT8:
    case CU_AD_FORMAT_SIGNED_INT8: return 1;
    case CU_AD_FORMAT_UNSIGNED_INT16:
    case CU_AD_FORMAT_SIGNED_INT16:
    case CU_AD_FORMAT_HALF: return 2;
    case CU_AD_FORMAT_UNSIGNED_INT32:
    case CU_AD_FORMAT_SIGNED_INT32:
    case CU_AD_FORMAT_FLOAT: return 4;
    default: return 0;
    }
}

static uint64_t at_least_1(uint64_t v)
{
    return v ? v : 1;
}

/* Bytes of one level, or 0 if the descriptor is invalid or the size overflows. */
static uint64_t level_bytes(uint64_t w, uint64_t h, uint64_t d, CUarray_format fmt, unsigned int ch)
{
    uint64_t es = element_size(fmt);
    if (w == 0 || es == 0 || (ch != 1 && ch != 2 && ch != 4))
        return 0;
    h = at_least_1(h);
    d = at_least_1(d);
    uint64_t per = es * ch;
    if (w > UINT64_MAX / per || h > UINT64_MAX / (w * per) || d > UINT64_MAX / (w * per * h))
        return 0;
    return w * per * h * d;
}

static CUresult create(uint64_t bytes, enum sim_alloc_kind kind, uint64_t *handle)
{
    CUcontext ctx;
    int dev;
    CUresult rc = sim_current(&ctx, &dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (bytes == 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_alloc *a = calloc(1, sizeof *a);
    if (a == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    rc = sim_charge(dev, bytes);
    if (rc != CUDA_SUCCESS) {
        free(a);
        return rc;
    }
    a->addr = sim_va_alloc(SIM_VA_HANDLE, 0, 16, 16);
    a->bytes = bytes;
    a->dev = dev;
    a->kind = kind;
    a->ctx = ctx;
    if (a->addr == 0 || ptr_map_put(&g_sim_arrays, a->addr, a) != 0) {
        sim_uncharge(dev, bytes);
        free(a);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *handle = a->addr;
    return CUDA_SUCCESS;
}

static CUresult destroy(uint64_t handle, enum sim_alloc_kind kind)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    struct sim_alloc *a = ptr_map_get(&g_sim_arrays, handle);
    if (a == NULL || a->kind != kind || ptr_map_take(&g_sim_arrays, handle) != a)
        return CUDA_ERROR_INVALID_HANDLE;
    sim_uncharge(a->dev, a->bytes);
    free(a);
    return CUDA_SUCCESS;
}

static CUresult array_create(CUarray *pHandle, uint64_t bytes)
{
    if (pHandle == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t h;
    CUresult rc = create(bytes, SIM_ALLOC_ARRAY, &h);
    if (rc == CUDA_SUCCESS)
        *pHandle = (CUarray)(uintptr_t)h;
    return rc;
}

SIM_EXPORT CUresult cuArrayCreate_v2(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR *pAllocateArray)
{
    if (pAllocateArray == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    const CUDA_ARRAY_DESCRIPTOR *d = pAllocateArray;
    return array_create(pHandle, level_bytes(d->Width, d->Height, 1, d->Format, d->NumChannels));
}

SIM_EXPORT CUresult cuArrayCreate(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR_v1 *pAllocateArray)
{
    if (pAllocateArray == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    const CUDA_ARRAY_DESCRIPTOR_v1 *d = pAllocateArray;
    return array_create(pHandle, level_bytes(d->Width, d->Height, 1, d->Format, d->NumChannels));
}

SIM_EXPORT CUresult cuArray3DCreate_v2(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *pAllocateArray)
{
    if (pAllocateArray == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    const CUDA_ARRAY3D_DESCRIPTOR *d = pAllocateArray;
    return array_create(pHandle, level_bytes(d->Width, d->Height, d->Depth, d->Format, d->NumChannels));
}

SIM_EXPORT CUresult cuArray3DCreate(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1 *pAllocateArray)
{
    if (pAllocateArray == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    const CUDA_ARRAY3D_DESCRIPTOR_v1 *d = pAllocateArray;
    return array_create(pHandle, level_bytes(d->Width, d->Height, d->Depth, d->Format, d->NumChannels));
}

SIM_EXPORT CUresult cuArrayDestroy(CUarray hArray)
{
    return destroy((uint64_t)(uintptr_t)hArray, SIM_ALLOC_ARRAY);
}

SIM_EXPORT CUresult cuMipmappedArrayCreate(CUmipmappedArray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *pMipmappedArrayDesc,
                                           unsigned int numMipmapLevels)
{
    if (pHandle == NULL || pMipmappedArrayDesc == NULL || numMipmapLevels == 0)
        return CUDA_ERROR_INVALID_VALUE;
    const CUDA_ARRAY3D_DESCRIPTOR *d = pMipmappedArrayDesc;
    uint64_t w = d->Width, h = d->Height, z = d->Depth;
    uint64_t largest = w > h ? w : h;
    largest = largest > z ? largest : z;
    unsigned int max_levels = 0;
    for (uint64_t v = largest; v; v >>= 1)
        max_levels++;
    if (numMipmapLevels > max_levels)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t total = 0;
    for (unsigned int l = 0; l < numMipmapLevels; l++) {
        uint64_t b = level_bytes(at_least_1(w >> l), h ? at_least_1(h >> l) : 0, z ? at_least_1(z >> l) : 0,
                                 d->Format, d->NumChannels);
        if (b == 0 || total + b < total)
            return CUDA_ERROR_INVALID_VALUE;
        total += b;
    }
    uint64_t handle;
    CUresult rc = create(total, SIM_ALLOC_MIPMAP, &handle);
    if (rc == CUDA_SUCCESS)
        *pHandle = (CUmipmappedArray)(uintptr_t)handle;
    return rc;
}

SIM_EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray hMipmappedArray)
{
    return destroy((uint64_t)(uintptr_t)hMipmappedArray, SIM_ALLOC_MIPMAP);
}
