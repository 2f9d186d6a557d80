/* Memory pools and stream-ordered allocation. A pool keeps freed memory cached (still physically allocated, so it
 * counts in live_bytes) up to its release threshold; the cache is used first by later allocations. The cache is
 * modelled as fungible bytes. An allocation comes from the pool given, or from the current pool of the stream's
 * device (whatever context is current). On a capturing stream, cuMemAllocAsync and cuMemFreeAsync allocate and
 * free nothing: they become graph memory nodes (graph_mem.c). */
#include <pthread.h>
#include <stdlib.h>

#include "sim_cuda.h"

struct CUmemPoolHandle_st {
    uint32_t magic;
    int dev;
    int is_default;
    int destroyed;
    uint64_t used, cached; /* reserved = used + cached */
    uint64_t used_high, reserved_high;
    uint64_t threshold;
    int reuse[3]; /* CU_MEMPOOL_ATTR_REUSE_* */
};

static pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER; /* every pool's counters */
static struct CUmemPoolHandle_st g_default[SIM_MAX_GPUS];
static struct CUmemPoolHandle_st *g_current[SIM_MAX_GPUS]; /* NULL: the default pool */
static struct ptr_map g_pools = PTR_MAP_INIT; /* created pools */

static struct CUmemPoolHandle_st *default_pool(int dev)
{
    struct CUmemPoolHandle_st *p = &g_default[dev];
    if (p->magic != SIM_MAGIC_POOL) {
        p->magic = SIM_MAGIC_POOL;
        p->dev = dev;
        p->is_default = 1;
        p->reuse[0] = p->reuse[1] = p->reuse[2] = 1;
    }
    return p;
}

/* Validates a pool handle; caller holds g_pool_mu. */
static struct CUmemPoolHandle_st *pool_check(CUmemoryPool pool)
{
    if (pool == NULL)
        return NULL;
    if (pool >= &g_default[0] && pool < &g_default[SIM_MAX_GPUS])
        return pool->magic == SIM_MAGIC_POOL ? pool : NULL;
    struct CUmemPoolHandle_st *p = ptr_map_get(&g_pools, (uint64_t)(uintptr_t)pool);
    return (p && !p->destroyed) ? p : NULL;
}

/* Gives cached memory back to the device until reserved <= keep. Caller holds g_pool_mu. */
static void trim(struct CUmemPoolHandle_st *p, uint64_t keep)
{
    uint64_t reserved = p->used + p->cached;
    if (reserved <= keep || p->cached == 0)
        return;
    uint64_t rel = reserved - keep;
    if (rel > p->cached)
        rel = p->cached;
    p->cached -= rel;
    sim_uncharge(p->dev, rel);
}

static void maybe_free(struct CUmemPoolHandle_st *p)
{
    if (p->destroyed && p->used == 0 && !p->is_default) {
        ptr_map_take(&g_pools, (uint64_t)(uintptr_t)p);
        free(p);
    }
}

/* What a pool grows by to serve `short` more bytes: whole 2 MiB pages, at least 32 MiB (as the H200's driver 580
 * does: a 1-byte allocation reserves 32 MiB, a 768 MiB one 768 MiB). */
static uint64_t growth(uint64_t short_by)
{
    uint64_t g = (short_by + SIM_GRANULARITY - 1) / SIM_GRANULARITY * SIM_GRANULARITY;
    return g < SIM_POOL_MIN_GROWTH ? SIM_POOL_MIN_GROWTH : g;
}

static CUresult pool_alloc(struct CUmemPoolHandle_st *p, uint64_t bytes, CUcontext ctx, uint64_t *out)
{
    struct sim_alloc *a = calloc(1, sizeof *a);
    if (a == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    uint64_t reuse = bytes < p->cached ? bytes : p->cached;
    uint64_t grow = bytes > reuse ? growth(bytes - reuse) : 0;
    if (grow && sim_charge(p->dev, grow) != CUDA_SUCCESS) {
        free(a);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    uint64_t addr = sim_va_alloc(SIM_VA_LINEAR, p->dev, bytes, 512);
    a->addr = addr;
    a->bytes = bytes;
    a->dev = p->dev;
    a->kind = SIM_ALLOC_ASYNC;
    a->ctx = ctx;
    a->pool = p;
    if (addr == 0 || ptr_map_put(&g_sim_ptrs, addr, a) != 0) {
        if (grow)
            sim_uncharge(p->dev, grow);
        free(a);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    p->cached -= reuse;
    if (grow)
        p->cached += grow - (bytes - reuse); /* the rest of the growth is reserved, unused */
    p->used += bytes;
    if (p->used > p->used_high)
        p->used_high = p->used;
    if (p->used + p->cached > p->reserved_high)
        p->reserved_high = p->used + p->cached;
    *out = addr;
    return CUDA_SUCCESS;
}

CUresult sim_pool_free(struct sim_alloc *a)
{
    pthread_mutex_lock(&g_pool_mu);
    struct CUmemPoolHandle_st *p = a->pool;
    p->used -= a->bytes;
    p->cached += a->bytes;
    trim(p, p->destroyed ? 0 : p->threshold);
    maybe_free(p);
    pthread_mutex_unlock(&g_pool_mu);
    free(a);
    return CUDA_SUCCESS;
}

static CUresult alloc_async(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream, int pt)
{
    if (dptr == NULL || bytesize == 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct CUstream_st *s;
    CUresult rc = sim_stream_resolve(hStream, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct sim_gmem_node m = {s->dev, bytesize, 0};
    if (sim_capture_mem(s, CU_GRAPH_NODE_TYPE_MEM_ALLOC, &m, &rc)) {
        if (rc == CUDA_SUCCESS)
            *dptr = m.addr;
        return rc;
    }
    uint64_t addr = 0;
    pthread_mutex_lock(&g_pool_mu);
    struct CUmemPoolHandle_st *p;
    if (pool == NULL)
        p = g_current[s->dev] ? g_current[s->dev] : default_pool(s->dev);
    else
        p = pool_check(pool);
    rc = p ? pool_alloc(p, bytesize, s->ctx, &addr) : CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_unlock(&g_pool_mu);
    if (rc == CUDA_SUCCESS)
        *dptr = addr;
    return rc;
}

SIM_EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    return alloc_async(dptr, bytesize, NULL, hStream, 0);
}

SIM_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    return alloc_async(dptr, bytesize, NULL, hStream, 1);
}

SIM_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream)
{
    return pool ? alloc_async(dptr, bytesize, pool, hStream, 0) : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                                                 CUstream hStream)
{
    return pool ? alloc_async(dptr, bytesize, pool, hStream, 1) : CUDA_ERROR_INVALID_VALUE;
}

static CUresult free_async(CUdeviceptr dptr, CUstream hStream, int pt)
{
    struct CUstream_st *s;
    CUresult rc = sim_stream_resolve(hStream, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct sim_gmem_node m = {s->dev, 0, dptr};
    if (sim_capture_mem(s, CU_GRAPH_NODE_TYPE_MEM_FREE, &m, &rc))
        return rc;
    return sim_free_linear(dptr); /* freed at once: later work on the stream cannot use it anyway */
}

SIM_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
    return free_async(dptr, hStream, 0);
}

SIM_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream)
{
    return free_async(dptr, hStream, 1);
}

SIM_EXPORT CUresult cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *poolProps)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (pool == NULL || poolProps == NULL || poolProps->allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
        poolProps->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
        return CUDA_ERROR_INVALID_VALUE;
    if (sim_check_device(poolProps->location.id) != CUDA_SUCCESS)
        return CUDA_ERROR_INVALID_DEVICE;
    struct CUmemPoolHandle_st *p = calloc(1, sizeof *p);
    if (p == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    p->magic = SIM_MAGIC_POOL;
    p->dev = poolProps->location.id;
    p->reuse[0] = p->reuse[1] = p->reuse[2] = 1;
    if (ptr_map_put(&g_pools, (uint64_t)(uintptr_t)p, p) != 0) {
        free(p);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *pool = p;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool pool)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_pool_mu);
    struct CUmemPoolHandle_st *p = pool_check(pool);
    if (p == NULL || p->is_default) {
        rc = CUDA_ERROR_INVALID_VALUE; /* the default pool cannot be destroyed */
    } else {
        if (g_current[p->dev] == p)
            g_current[p->dev] = NULL;
        p->destroyed = 1; /* outstanding allocations stay valid until freed */
        trim(p, 0);
        maybe_free(p);
    }
    pthread_mutex_unlock(&g_pool_mu);
    return rc;
}

SIM_EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_pool_mu);
    struct CUmemPoolHandle_st *p = pool_check(pool);
    if (p == NULL)
        rc = CUDA_ERROR_INVALID_VALUE;
    else
        trim(p, minBytesToKeep);
    pthread_mutex_unlock(&g_pool_mu);
    return rc;
}

SIM_EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (value == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_pool_mu);
    struct CUmemPoolHandle_st *p = pool_check(pool);
    if (p == NULL) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        switch (attr) {
        case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
            *(int *)value = p->reuse[attr - 1];
            break;
        case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD: *(cuuint64_t *)value = p->threshold; break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT: *(cuuint64_t *)value = p->used + p->cached; break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH: *(cuuint64_t *)value = p->reserved_high; break;
        case CU_MEMPOOL_ATTR_USED_MEM_CURRENT: *(cuuint64_t *)value = p->used; break;
        case CU_MEMPOOL_ATTR_USED_MEM_HIGH: *(cuuint64_t *)value = p->used_high; break;
        default: rc = CUDA_ERROR_INVALID_VALUE; break;
        }
    }
    pthread_mutex_unlock(&g_pool_mu);
    return rc;
}

SIM_EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (value == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_pool_mu);
    struct CUmemPoolHandle_st *p = pool_check(pool);
    if (p == NULL) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        switch (attr) {
        case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
            p->reuse[attr - 1] = *(int *)value != 0;
            break;
        case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
            p->threshold = *(cuuint64_t *)value;
            trim(p, p->threshold);
            break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH: /* only 0 is accepted: resets the high-water mark */
            if (*(cuuint64_t *)value != 0)
                rc = CUDA_ERROR_INVALID_VALUE;
            else
                p->reserved_high = p->used + p->cached;
            break;
        case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
            if (*(cuuint64_t *)value != 0)
                rc = CUDA_ERROR_INVALID_VALUE;
            else
                p->used_high = p->used;
            break;
        default: rc = CUDA_ERROR_INVALID_VALUE; break;
        }
    }
    pthread_mutex_unlock(&g_pool_mu);
    return rc;
}

SIM_EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *pool_out, CUdevice dev)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (pool_out == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_pool_mu);
    *pool_out = default_pool(dev);
    pthread_mutex_unlock(&g_pool_mu);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGetMemPool(CUmemoryPool *pool, CUdevice dev)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (pool == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_pool_mu);
    *pool = g_current[dev] ? g_current[dev] : default_pool(dev);
    pthread_mutex_unlock(&g_pool_mu);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceSetMemPool(CUdevice dev, CUmemoryPool pool)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_pool_mu);
    struct CUmemPoolHandle_st *p = pool_check(pool);
    if (p == NULL || p->dev != dev)
        rc = CUDA_ERROR_INVALID_VALUE;
    else
        g_current[dev] = p->is_default ? NULL : p;
    pthread_mutex_unlock(&g_pool_mu);
    return rc;
}
