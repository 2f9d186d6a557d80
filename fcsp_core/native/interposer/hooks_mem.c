/* Device memory: every allocation is admitted (or refused with CUDA_ERROR_OUT_OF_MEMORY) before the driver is
 * asked, rolled back if the driver then fails, and recorded so its free gives the bytes back. Linear memory is
 * charged in whole units of FCSP_LINEAR_UNIT bytes, the driver's own rounding of small allocations.
 *
 * Memory the driver keeps past one call and its free is charged for as long as the driver keeps it (acct*.c): a
 * VMM allocation until its last mapping and reference are gone, what a memory pool keeps reserved (not only what
 * it hands out), graph memory from the launch that materialises it until trim or destruction. Stream-ordered
 * allocations are charged to their pool's device (the stream's, whatever context is current). */
#include <limits.h>

#include "interposer/acct.h"
#include "interposer/admission.h"
#include "interposer/alloc_map.h"
#include "interposer/gpu_map.h"
#include "interposer/hook_lookup.h"
#include "interposer/real_driver.h"
#include "interposer/state.h"

/* What to do with an allocation call: forward it, enforce caps, or refuse (fail-closed). */
enum gate { GATE_PASS, GATE_ENFORCE, GATE_DENY };

static inline enum gate mem_gate(void)
{
    int m = fcsp_mode();
    if (__builtin_expect(m == FCSP_MODE_ENFORCE, 1))
        return GATE_ENFORCE;
    return m == FCSP_MODE_CLOSED ? GATE_DENY : GATE_PASS;
}

/* Every allocation wrapper starts so: no real function to call, or fail-closed. Declares g_ (the gate). */
#define GATE_PROLOGUE(real)                                                                                         \
    if (!(real))                                                                                                    \
        return CUDA_ERROR_NOT_FOUND;                                                                                \
    enum gate g_ = mem_gate();                                                                                      \
    if (g_ == GATE_DENY)                                                                                            \
    return CUDA_ERROR_NOT_PERMITTED

/* After the driver answered an admitted request: keep the charge and remember the key, or roll back. */
static CUresult commit(CUresult rc, struct fcsp_dev *d, uint64_t size, uint64_t key, enum fcsp_alloc_kind kind,
                       CUresult (*undo)(uint64_t key))
{
    if (rc != CUDA_SUCCESS) {
        fcsp_release(d, size);
        return rc;
    }
    if (fcsp_map_insert(key, kind, size, d->ordinal) != 0) {
        /* Cannot attribute its free later: refuse rather than leak accounting. */
        undo(key);
        fcsp_release(d, size);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    return CUDA_SUCCESS;
}

/* Give back an allocation the driver has just freed (or re-record it if the driver refused the free). */
static CUresult uncharge(CUresult rc, uint64_t key, enum fcsp_alloc_kind kind, uint64_t size, int ordinal)
{
    struct fcsp_dev *d = fcsp_dev_by_ordinal(ordinal);
    if (rc == CUDA_SUCCESS) {
        if (d)
            fcsp_release(d, size);
    } else {
        fcsp_map_insert(key, kind, size, ordinal);
    }
    return rc;
}

static CUresult undo_ptr(uint64_t key)
{
    fcsp_pfn_cuMemFree_v2 f = FCSP_REAL(cuMemFree_v2);
    return f ? f((CUdeviceptr)key) : CUDA_ERROR_NOT_FOUND;
}

static CUresult undo_vmm(uint64_t key)
{
    fcsp_pfn_cuMemRelease f = FCSP_REAL(cuMemRelease);
    return f ? f((CUmemGenericAllocationHandle)key) : CUDA_ERROR_NOT_FOUND;
}

static CUresult undo_array(uint64_t key)
{
    fcsp_pfn_cuArrayDestroy f = FCSP_REAL(cuArrayDestroy);
    return f ? f((CUarray)(uintptr_t)key) : CUDA_ERROR_NOT_FOUND;
}

static CUresult undo_mipmap(uint64_t key)
{
    fcsp_pfn_cuMipmappedArrayDestroy f = FCSP_REAL(cuMipmappedArrayDestroy);
    return f ? f((CUmipmappedArray)(uintptr_t)key) : CUDA_ERROR_NOT_FOUND;
}

/* Linear allocations are handed out in units of 512 bytes (measured: bench/gpu_bypass.sh, road "granularity"): charge
 * what the driver takes, so many tiny allocations cannot pass the cap. */
#define FCSP_LINEAR_UNIT 512u

static inline uint64_t linear_bytes(uint64_t size)
{
    return size > UINT64_MAX - FCSP_LINEAR_UNIT ? size : (size + FCSP_LINEAR_UNIT - 1) & ~(uint64_t)(FCSP_LINEAR_UNIT - 1);
}

/* The common shape of a linear allocation on the current device. CALL is the driver call, KEY the new pointer. */
#define ADMIT_CURRENT(real, size, CALL, KEY, KIND, UNDO)                                                            \
    do {                                                                                                            \
        GATE_PROLOGUE(real);                                                                                        \
        int refuse_ = 0;                                                                                            \
        struct fcsp_dev *d_ = g_ == GATE_ENFORCE && (size) > 0 ? fcsp_dev_current_to_charge(&refuse_) : NULL;       \
        if (!d_)                                                                                                    \
            return refuse_ ? CUDA_ERROR_OUT_OF_MEMORY : CALL;                                                       \
        if (fcsp_admit(d_, (size)) != 0)                                                                            \
            return CUDA_ERROR_OUT_OF_MEMORY;                                                                        \
        CUresult rc_ = CALL;                                                                                        \
        return commit(rc_, d_, (size), rc_ == CUDA_SUCCESS ? (uint64_t)(uintptr_t)(KEY) : 0, KIND, UNDO);                      \
    } while (0)

/* The common shape of a free: attribute, call the driver, give back. */
#define UNCHARGE(real, key, KIND, CALL)                                                                             \
    do {                                                                                                            \
        if (!(real))                                                                                                \
            return CUDA_ERROR_NOT_FOUND;                                                                            \
        uint64_t size_;                                                                                             \
        int ord_;                                                                                                   \
        if (fcsp_mode() != FCSP_MODE_ENFORCE || fcsp_map_remove((uint64_t)(key), KIND, &size_, &ord_) != 0)         \
            return CALL;                                                                                            \
        return uncharge(CALL, (uint64_t)(key), KIND, size_, ord_);                                                  \
    } while (0)

/* ---- linear memory ---- */

FCSP_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    fcsp_pfn_cuMemAlloc_v2 real = FCSP_REAL(cuMemAlloc_v2);
    ADMIT_CURRENT(real, linear_bytes(bytesize), real(dptr, bytesize), *dptr, FCSP_KIND_PTR, undo_ptr);
}

FCSP_EXPORT CUresult cuMemAlloc(CUdeviceptr_v1 *dptr, unsigned int bytesize)
{
    fcsp_pfn_cuMemAlloc real = FCSP_REAL(cuMemAlloc);
    ADMIT_CURRENT(real, linear_bytes(bytesize), real(dptr, bytesize), *dptr, FCSP_KIND_PTR, undo_ptr);
}

FCSP_EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
    fcsp_pfn_cuMemAllocManaged real = FCSP_REAL(cuMemAllocManaged);
    ADMIT_CURRENT(real, linear_bytes(bytesize), real(dptr, bytesize, flags), *dptr, FCSP_KIND_PTR, undo_ptr);
}

FCSP_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr)
{
    fcsp_pfn_cuMemFree_v2 real = FCSP_REAL(cuMemFree_v2);
    UNCHARGE(real, dptr, FCSP_KIND_PTR, real(dptr));
}

FCSP_EXPORT CUresult cuMemFree(CUdeviceptr_v1 dptr)
{
    fcsp_pfn_cuMemFree real = FCSP_REAL(cuMemFree);
    UNCHARGE(real, dptr, FCSP_KIND_PTR, real(dptr));
}

/* Pitched allocations: the driver picks the pitch, so admit a conservative estimate (rows rounded up to 512 bytes,
 * the widest pitch alignment of current GPUs), then settle on the pitch it chose. */
#define PITCH_ALIGN 512u

static CUresult settle_pitch(struct fcsp_dev *d, uint64_t admitted, uint64_t actual, CUdeviceptr ptr)
{
    if (actual < admitted) {
        fcsp_release(d, admitted - actual);
    } else if (actual > admitted && fcsp_admit(d, actual - admitted) != 0) {
        undo_ptr(ptr);
        fcsp_release(d, admitted);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    return commit(CUDA_SUCCESS, d, actual, ptr, FCSP_KIND_PTR, undo_ptr);
}

static uint64_t pitch_estimate(uint64_t width, uint64_t height)
{
    if (!width || !height || width > UINT64_MAX / 2 / height)
        return 0;
    return ((width + PITCH_ALIGN - 1) / PITCH_ALIGN) * PITCH_ALIGN * height;
}

/* Both pitched ABIs: admit the estimate, call, settle. */
#define PITCH_ALLOC(real, dptr, pPitch, WidthInBytes, Height, ElementSizeBytes)                                    \
    do {                                                                                                            \
        GATE_PROLOGUE(real);                                                                                        \
        uint64_t est_ = pitch_estimate(WidthInBytes, Height);                                                       \
        int refuse_ = 0;                                                                                            \
        struct fcsp_dev *d_ =                                                                                       \
            g_ == GATE_ENFORCE && est_ && (dptr) && (pPitch) ? fcsp_dev_current_to_charge(&refuse_) : NULL;         \
        if (!d_)                                                                                                    \
            return refuse_ ? CUDA_ERROR_OUT_OF_MEMORY : real(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes); \
        if (fcsp_admit(d_, est_) != 0)                                                                              \
            return CUDA_ERROR_OUT_OF_MEMORY;                                                                        \
        CUresult rc_ = real(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);                                  \
        if (rc_ != CUDA_SUCCESS) {                                                                                  \
            fcsp_release(d_, est_);                                                                                 \
            return rc_;                                                                                             \
        }                                                                                                           \
        return settle_pitch(d_, est_, (uint64_t)*(pPitch) * (Height), *(dptr));                                     \
    } while (0)

FCSP_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
                                        unsigned int ElementSizeBytes)
{
    fcsp_pfn_cuMemAllocPitch_v2 real = FCSP_REAL(cuMemAllocPitch_v2);
    PITCH_ALLOC(real, dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
}

FCSP_EXPORT CUresult cuMemAllocPitch(CUdeviceptr_v1 *dptr, unsigned int *pPitch, unsigned int WidthInBytes,
                                     unsigned int Height, unsigned int ElementSizeBytes)
{
    fcsp_pfn_cuMemAllocPitch real = FCSP_REAL(cuMemAllocPitch);
    PITCH_ALLOC(real, dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
}

/* ---- stream-ordered memory and pools (acct_pool.c) ---- */

#define POOL_ALLOC(real, from_pool, per_thread, dptr, size, pool, stream, CALL)                                     \
    do {                                                                                                            \
        GATE_PROLOGUE(real);                                                                                        \
        if (g_ != GATE_ENFORCE || (size) == 0)                                                                      \
            return CALL;                                                                                            \
        const struct fcsp_pool_call c_ = {(void *)(real), (from_pool), (per_thread)};                               \
        return fcsp_pool_alloc(&c_, (dptr), (size), (pool), (stream));                                             \
    } while (0)

FCSP_EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    fcsp_pfn_cuMemAllocAsync real = FCSP_REAL(cuMemAllocAsync);
    POOL_ALLOC(real, 0, 0, dptr, bytesize, NULL, hStream, real(dptr, bytesize, hStream));
}

FCSP_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    fcsp_pfn_cuMemAllocAsync_ptsz real = FCSP_REAL(cuMemAllocAsync_ptsz);
    POOL_ALLOC(real, 0, 1, dptr, bytesize, NULL, hStream, real(dptr, bytesize, hStream));
}

FCSP_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                                             CUstream hStream)
{
    fcsp_pfn_cuMemAllocFromPoolAsync real = FCSP_REAL(cuMemAllocFromPoolAsync);
    POOL_ALLOC(real, 1, 0, dptr, bytesize, pool, hStream, real(dptr, bytesize, pool, hStream));
}

FCSP_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                                                  CUstream hStream)
{
    fcsp_pfn_cuMemAllocFromPoolAsync_ptsz real = FCSP_REAL(cuMemAllocFromPoolAsync_ptsz);
    POOL_ALLOC(real, 1, 1, dptr, bytesize, pool, hStream, real(dptr, bytesize, pool, hStream));
}

/* A pool allocation settles its pool; anything else cuMemFreeAsync may free (cuMemAlloc memory) as cuMemFree. */
#define FREE_ASYNC(real, dptr, stream)                                                                              \
    do {                                                                                                            \
        CUresult rc_;                                                                                               \
        if ((real) && fcsp_mode() == FCSP_MODE_ENFORCE && fcsp_pool_free((real), (dptr), (stream), &rc_))           \
            return rc_;                                                                                             \
        UNCHARGE(real, dptr, FCSP_KIND_PTR, real(dptr, stream));                                                    \
    } while (0)

FCSP_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
    fcsp_pfn_cuMemFreeAsync real = FCSP_REAL(cuMemFreeAsync);
    FREE_ASYNC(real, dptr, hStream);
}

FCSP_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream)
{
    fcsp_pfn_cuMemFreeAsync_ptsz real = FCSP_REAL(cuMemFreeAsync_ptsz);
    FREE_ASYNC(real, dptr, hStream);
}

FCSP_EXPORT CUresult cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *poolProps)
{
    fcsp_pfn_cuMemPoolCreate real = FCSP_REAL(cuMemPoolCreate);
    return real ? fcsp_pool_created(real(pool, poolProps), pool, poolProps) : CUDA_ERROR_NOT_FOUND;
}

FCSP_EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep)
{
    fcsp_pfn_cuMemPoolTrimTo real = FCSP_REAL(cuMemPoolTrimTo);
    return real ? fcsp_pool_trimmed(real(pool, minBytesToKeep), pool) : CUDA_ERROR_NOT_FOUND;
}

FCSP_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool pool)
{
    fcsp_pfn_cuMemPoolDestroy real = FCSP_REAL(cuMemPoolDestroy);
    return real ? fcsp_pool_destroy(real, pool) : CUDA_ERROR_NOT_FOUND;
}

/* ---- virtual memory management: physical memory is charged from cuMemCreate until it has neither a reference
 * nor a mapping left (acct_vmm.c) ---- */

FCSP_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                                 unsigned long long flags)
{
    fcsp_pfn_cuMemCreate real = FCSP_REAL(cuMemCreate);
    GATE_PROLOGUE(real);
    struct fcsp_dev *d = NULL;
    int refuse = 0;
    if (g_ == GATE_ENFORCE && size > 0 && handle && prop && prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE)
        d = fcsp_dev_to_charge(prop->location.id, &refuse);
    if (!d)
        return refuse ? CUDA_ERROR_OUT_OF_MEMORY : real(handle, size, prop, flags);
    if (fcsp_admit(d, size) != 0)
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = real(handle, size, prop, flags);
    if (rc != CUDA_SUCCESS) {
        fcsp_release(d, size);
        return rc;
    }
    if (fcsp_vmm_created(*handle, size, d->ordinal) != 0) {
        /* cannot follow its lifetime: refuse rather than leak accounting */
        undo_vmm(*handle);
        fcsp_release(d, size);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    return CUDA_SUCCESS;
}

/* The entry points below pass straight through unless fcsp enforces (then acct*.c follow them). */
#define ACCT_CALL(real, ACCT, CALL)                                                                                  \
    do {                                                                                                            \
        if (!(real))                                                                                                \
            return CUDA_ERROR_NOT_FOUND;                                                                            \
        return fcsp_mode() == FCSP_MODE_ENFORCE ? ACCT : CALL;                                                      \
    } while (0)

FCSP_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
    fcsp_pfn_cuMemRelease real = FCSP_REAL(cuMemRelease);
    ACCT_CALL(real, fcsp_vmm_release(real, handle), real(handle));
}

FCSP_EXPORT CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
    fcsp_pfn_cuMemRetainAllocationHandle real = FCSP_REAL(cuMemRetainAllocationHandle);
    ACCT_CALL(real, fcsp_vmm_retain(real, handle, addr), real(handle, addr));
}

FCSP_EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                              unsigned long long flags)
{
    fcsp_pfn_cuMemMap real = FCSP_REAL(cuMemMap);
    ACCT_CALL(real, fcsp_vmm_map(real, ptr, size, offset, handle, flags), real(ptr, size, offset, handle, flags));
}

FCSP_EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    fcsp_pfn_cuMemUnmap real = FCSP_REAL(cuMemUnmap);
    ACCT_CALL(real, fcsp_vmm_unmap(real, ptr, size), real(ptr, size));
}

/* ---- graph memory (acct_graph.c; launches are in hooks_launch.c) ---- */

FCSP_EXPORT CUresult cuGraphInstantiate(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode,
                                        char *logBuffer, size_t bufferSize)
{
    fcsp_pfn_cuGraphInstantiate real = FCSP_REAL(cuGraphInstantiate);
    return real ? fcsp_gmem_instantiated(real(phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize), phGraphExec,
                                         hGraph)
                : CUDA_ERROR_NOT_FOUND;
}

FCSP_EXPORT CUresult cuGraphInstantiate_v2(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode,
                                           char *logBuffer, size_t bufferSize)
{
    fcsp_pfn_cuGraphInstantiate_v2 real = FCSP_REAL(cuGraphInstantiate_v2);
    return real ? fcsp_gmem_instantiated(real(phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize), phGraphExec,
                                         hGraph)
                : CUDA_ERROR_NOT_FOUND;
}

FCSP_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph, unsigned long long flags)
{
    fcsp_pfn_cuGraphInstantiateWithFlags real = FCSP_REAL(cuGraphInstantiateWithFlags);
    return real ? fcsp_gmem_instantiated(real(phGraphExec, hGraph, flags), phGraphExec, hGraph) : CUDA_ERROR_NOT_FOUND;
}

FCSP_EXPORT CUresult cuGraphInstantiateWithParams(CUgraphExec *phGraphExec, CUgraph hGraph,
                                                  CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
    fcsp_pfn_cuGraphInstantiateWithParams real = FCSP_REAL(cuGraphInstantiateWithParams);
    return real ? fcsp_gmem_instantiated(real(phGraphExec, hGraph, instantiateParams), phGraphExec, hGraph)
                : CUDA_ERROR_NOT_FOUND;
}

FCSP_EXPORT CUresult cuGraphInstantiateWithParams_ptsz(CUgraphExec *phGraphExec, CUgraph hGraph,
                                                       CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
    fcsp_pfn_cuGraphInstantiateWithParams_ptsz real = FCSP_REAL(cuGraphInstantiateWithParams_ptsz);
    return real ? fcsp_gmem_instantiated(real(phGraphExec, hGraph, instantiateParams), phGraphExec, hGraph)
                : CUDA_ERROR_NOT_FOUND;
}

FCSP_EXPORT CUresult cuGraphExecDestroy(CUgraphExec hGraphExec)
{
    fcsp_pfn_cuGraphExecDestroy real = FCSP_REAL(cuGraphExecDestroy);
    ACCT_CALL(real, fcsp_gmem_exec_destroy(real, hGraphExec), real(hGraphExec));
}

FCSP_EXPORT CUresult cuDeviceGraphMemTrim(CUdevice device)
{
    fcsp_pfn_cuDeviceGraphMemTrim real = FCSP_REAL(cuDeviceGraphMemTrim);
    ACCT_CALL(real, fcsp_gmem_trim(real, device), real(device));
}

/* ---- arrays ---- */

static uint64_t format_bytes(CUarray_format f)
{
    switch (f) {
    case CU_AD_FORMAT_UNSIGNED_INT8:
    case CU_AD_FORMAT_SIGNED_INT8:
        return 1;
    case CU_AD_FORMAT_UNSIGNED_INT16:
    case CU_AD_FORMAT_SIGNED_INT16:
    case CU_AD_FORMAT_HALF:
        return 2;
    default:
        return 4; /* 32-bit formats; other (packed, compressed) formats are at most this per channel */
    }
}

static uint64_t array_bytes(uint64_t w, uint64_t h, uint64_t depth, CUarray_format f, unsigned channels)
{
    h = h ? h : 1;
    depth = depth ? depth : 1;
    return w * h * depth * (channels ? channels : 1) * format_bytes(f);
}

FCSP_EXPORT CUresult cuArrayCreate_v2(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR *desc)
{
    fcsp_pfn_cuArrayCreate_v2 real = FCSP_REAL(cuArrayCreate_v2);
    uint64_t bytes = desc && pHandle ? array_bytes(desc->Width, desc->Height, 1, desc->Format, desc->NumChannels) : 0;
    ADMIT_CURRENT(real, bytes, real(pHandle, desc), *pHandle, FCSP_KIND_ARRAY, undo_array);
}

FCSP_EXPORT CUresult cuArrayCreate(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR_v1 *desc)
{
    fcsp_pfn_cuArrayCreate real = FCSP_REAL(cuArrayCreate);
    uint64_t bytes = desc && pHandle ? array_bytes(desc->Width, desc->Height, 1, desc->Format, desc->NumChannels) : 0;
    ADMIT_CURRENT(real, bytes, real(pHandle, desc), *pHandle, FCSP_KIND_ARRAY, undo_array);
}

FCSP_EXPORT CUresult cuArray3DCreate_v2(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *desc)
{
    fcsp_pfn_cuArray3DCreate_v2 real = FCSP_REAL(cuArray3DCreate_v2);
    uint64_t bytes =
        desc && pHandle ? array_bytes(desc->Width, desc->Height, desc->Depth, desc->Format, desc->NumChannels) : 0;
    ADMIT_CURRENT(real, bytes, real(pHandle, desc), *pHandle, FCSP_KIND_ARRAY, undo_array);
}

FCSP_EXPORT CUresult cuArray3DCreate(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1 *desc)
{
    fcsp_pfn_cuArray3DCreate real = FCSP_REAL(cuArray3DCreate);
    uint64_t bytes =
        desc && pHandle ? array_bytes(desc->Width, desc->Height, desc->Depth, desc->Format, desc->NumChannels) : 0;
    ADMIT_CURRENT(real, bytes, real(pHandle, desc), *pHandle, FCSP_KIND_ARRAY, undo_array);
}

FCSP_EXPORT CUresult cuArrayDestroy(CUarray hArray)
{
    fcsp_pfn_cuArrayDestroy real = FCSP_REAL(cuArrayDestroy);
    UNCHARGE(real, (uintptr_t)hArray, FCSP_KIND_ARRAY, real(hArray));
}

static uint64_t mipmap_bytes(const CUDA_ARRAY3D_DESCRIPTOR *d, unsigned levels)
{
    uint64_t total = 0, w = d->Width, h = d->Height, z = d->Depth;
    for (unsigned l = 0; l < (levels ? levels : 1); l++) {
        total += array_bytes(w, h, z, d->Format, d->NumChannels);
        w = w > 1 ? w / 2 : 1;
        h = h > 1 ? h / 2 : h;
        z = z > 1 ? z / 2 : z;
    }
    return total;
}

FCSP_EXPORT CUresult cuMipmappedArrayCreate(CUmipmappedArray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *desc,
                                            unsigned int numMipmapLevels)
{
    fcsp_pfn_cuMipmappedArrayCreate real = FCSP_REAL(cuMipmappedArrayCreate);
    uint64_t bytes = desc && pHandle ? mipmap_bytes(desc, numMipmapLevels) : 0;
    ADMIT_CURRENT(real, bytes, real(pHandle, desc, numMipmapLevels), *pHandle, FCSP_KIND_MIPMAP, undo_mipmap);
}

FCSP_EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray hMipmappedArray)
{
    fcsp_pfn_cuMipmappedArrayDestroy real = FCSP_REAL(cuMipmappedArrayDestroy);
    UNCHARGE(real, (uintptr_t)hMipmappedArray, FCSP_KIND_MIPMAP, real(hMipmappedArray));
}
