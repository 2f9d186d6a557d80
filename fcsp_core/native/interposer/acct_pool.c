/* Memory pool accounting. A pool keeps memory its allocations gave back, up to its release threshold (the default
 * pool's is 0, but any pool's can be raised to keep everything): that memory is still the process's on the device.
 * So a pool is charged for what it keeps reserved (CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), not only for what it
 * hands out:
 *   - an allocation admits what the pool must grow by to serve it beyond the memory it reserves unused
 *     (reserved - used), rounded as the driver grows pools, before the driver is asked; then the pool's charge is
 *     settled on what it reports reserved (a surplus is given back; growth past the estimate is charged);
 *   - a free, cuMemPoolTrimTo and cuMemPoolDestroy settle the charge again: the driver gives reserved memory back
 *     at trims and, for memory over the threshold, at synchronisations, so a charge may run above the truth
 *     between a synchronisation and the pool's next operation, never below it.
 * The pool of an allocation is the one given, or the current pool of the stream's device (cuStreamGetDevice), so
 * the memory is charged where it lives whichever context is current. On a capturing stream, cuMemAllocAsync
 * allocates nothing (it adds a graph memory node): it passes through and graph launches are charged instead
 * (acct_graph.c). Pools fcsp did not see created (imported from another process) stay their exporter's. */
#include <pthread.h>
#include <stdlib.h>

#include "interposer/acct.h"
#include "interposer/admission.h"
#include "interposer/capture_watch.h"
#include "interposer/state.h"
#include "../common/ptr_map.h"

struct pool_rec {
    pthread_mutex_t mu; /* one allocation, free or settle of this pool at a time (around the driver call) */
    CUmemoryPool pool;
    int ordinal;
    int destroyed;
    uint64_t charged; /* charged on the pool's device for it */
    uint64_t handed; /* handed out through fcsp and not yet freed */
};

struct pool_ptr {
    struct pool_rec *rec;
    uint64_t size;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; /* creating records */
static struct ptr_map g_pools = PTR_MAP_INIT; /* pool -> pool_rec (records are never freed: pools are few) */
static struct ptr_map g_ptrs = PTR_MAP_INIT; /* allocation -> pool_ptr */

static struct pool_rec *rec_new(CUmemoryPool pool, int ordinal)
{
    struct pool_rec *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    pthread_mutex_init(&r->mu, NULL);
    r->pool = pool;
    r->ordinal = ordinal;
    return r;
}

/* The device whose default pool is pool, or -1. */
static int default_pool_ordinal(CUmemoryPool pool)
{
    fcsp_pfn_cuDeviceGetCount count = FCSP_REAL(cuDeviceGetCount);
    fcsp_pfn_cuDeviceGetDefaultMemPool get = FCSP_REAL(cuDeviceGetDefaultMemPool);
    int n = 0;
    if (!count || !get || count(&n) != CUDA_SUCCESS)
        return -1;
    for (int i = 0; i < n; i++) {
        CUmemoryPool p;
        if (get(&p, i) == CUDA_SUCCESS && p == pool)
            return i;
    }
    return -1;
}

/* The record of pool (ordinal: its device if known, else -1), made on first use; NULL if the pool is not this
 * process's own (imported). */
static struct pool_rec *rec_of(CUmemoryPool pool, int ordinal)
{
    struct pool_rec *r = ptr_map_get(&g_pools, (uint64_t)(uintptr_t)pool);
    if (r)
        return r;
    if (ordinal < 0 && (ordinal = default_pool_ordinal(pool)) < 0)
        return NULL;
    pthread_mutex_lock(&g_mu);
    r = ptr_map_get(&g_pools, (uint64_t)(uintptr_t)pool);
    if (r == NULL && (r = rec_new(pool, ordinal)) != NULL && ptr_map_put(&g_pools, (uint64_t)(uintptr_t)pool, r)) {
        free(r);
        r = NULL;
    }
    pthread_mutex_unlock(&g_mu);
    return r;
}

static uint64_t pool_attr(CUmemoryPool pool, CUmemPool_attribute attr, uint64_t fallback)
{
    fcsp_pfn_cuMemPoolGetAttribute get = FCSP_REAL(cuMemPoolGetAttribute);
    cuuint64_t v = 0;
    return get && get(pool, attr, &v) == CUDA_SUCCESS ? v : fallback;
}

/* Caller holds r->mu. A destroyed pool keeps only what is still handed out. */
static void settle(struct pool_rec *r, struct fcsp_dev *d)
{
    uint64_t reserved = r->destroyed ? r->handed : pool_attr(r->pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, r->charged);
    fcsp_settle(d, &r->charged, reserved);
}

/* What the pool grows by to serve `short_by` more bytes (measured on an H200, driver 580: whole 2 MiB pages, at
 * least 32 MiB; a 1-byte allocation reserves 32 MiB): admitted whole, so the growth cannot pass the cap. */
#define POOL_PAGE (2ull << 20)
#define POOL_MIN_GROWTH (32ull << 20)

static uint64_t growth(uint64_t short_by)
{
    uint64_t g = (short_by + POOL_PAGE - 1) / POOL_PAGE * POOL_PAGE;
    return g < POOL_MIN_GROWTH ? POOL_MIN_GROWTH : g;
}

/* The device a stream's work runs on; the current context's without cuStreamGetDevice (drivers before 12.8). */
static int stream_ordinal(CUstream stream, int per_thread)
{
    fcsp_pfn_cuStreamGetDevice get = FCSP_REAL(cuStreamGetDevice);
    CUdevice dev;
    if (get && get(per_thread && stream == NULL ? CU_STREAM_PER_THREAD : stream, &dev) == CUDA_SUCCESS)
        return dev;
    fcsp_pfn_cuCtxGetDevice cur = FCSP_REAL(cuCtxGetDevice);
    return cur && cur(&dev) == CUDA_SUCCESS ? dev : -1;
}

static CUresult call(const struct fcsp_pool_call *c, CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                     CUstream stream)
{
    if (c->from_pool)
        return ((fcsp_pfn_cuMemAllocFromPoolAsync)c->real)(dptr, size, pool, stream);
    return ((fcsp_pfn_cuMemAllocAsync)c->real)(dptr, size, stream);
}

CUresult fcsp_pool_alloc(const struct fcsp_pool_call *c, CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                         CUstream stream)
{
    if (dptr == NULL || fcsp_stream_captures(stream, c->per_thread))
        return call(c, dptr, size, pool, stream);
    struct pool_rec *r = NULL;
    if (c->from_pool) {
        r = pool ? rec_of(pool, -1) : NULL;
    } else {
        int ordinal = stream_ordinal(stream, c->per_thread);
        fcsp_pfn_cuDeviceGetMemPool get = FCSP_REAL(cuDeviceGetMemPool);
        CUmemoryPool current;
        if (ordinal >= 0 && get && get(&current, ordinal) == CUDA_SUCCESS)
            r = rec_of(current, ordinal);
    }
    int refuse = 0;
    struct fcsp_dev *d = r ? fcsp_dev_to_charge(r->ordinal, &refuse) : NULL;
    if (d == NULL)
        return refuse ? CUDA_ERROR_OUT_OF_MEMORY : call(c, dptr, size, pool, stream);
    pthread_mutex_lock(&r->mu);
    settle(r, d);
    uint64_t used = pool_attr(r->pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, r->handed);
    uint64_t room = r->charged > used ? r->charged - used : 0;
    uint64_t need = size > room ? growth(size - room) : 0;
    if (need && fcsp_admit(d, need) != 0) {
        pthread_mutex_unlock(&r->mu);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    r->charged += need;
    CUresult rc = call(c, dptr, size, pool, stream);
    if (rc == CUDA_SUCCESS) {
        r->handed += size;
        struct pool_ptr *pp = malloc(sizeof *pp);
        if (pp)
            *pp = (struct pool_ptr){r, size};
        /* without a record its free still passes through; the pool's charge settles at its next operation */
        if (pp && ptr_map_put(&g_ptrs, *dptr, pp) != 0)
            free(pp);
    }
    settle(r, d);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int fcsp_pool_free(CUresult (*real)(CUdeviceptr, CUstream), CUdeviceptr dptr, CUstream stream, CUresult *rc)
{
    struct pool_ptr *pp = ptr_map_take(&g_ptrs, dptr);
    if (pp == NULL)
        return 0;
    struct pool_rec *r = pp->rec;
    pthread_mutex_lock(&r->mu);
    *rc = real(dptr, stream);
    if (*rc == CUDA_SUCCESS) {
        r->handed -= pp->size;
        struct fcsp_dev *d = fcsp_dev_by_ordinal(r->ordinal);
        if (d)
            settle(r, d);
        free(pp);
    } else if (ptr_map_put(&g_ptrs, dptr, pp) != 0) {
        free(pp);
    }
    pthread_mutex_unlock(&r->mu);
    return 1;
}

CUresult fcsp_pool_created(CUresult rc, CUmemoryPool *pool, const CUmemPoolProps *props)
{
    if (rc != CUDA_SUCCESS || pool == NULL || props == NULL || props->location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        fcsp_mode() != FCSP_MODE_ENFORCE)
        return rc;
    struct pool_rec *r = rec_new(*pool, props->location.id);
    pthread_mutex_lock(&g_mu);
    ptr_map_take(&g_pools, (uint64_t)(uintptr_t)*pool); /* a destroyed pool's handle, reused by the driver */
    if (r && ptr_map_put(&g_pools, (uint64_t)(uintptr_t)*pool, r) != 0) {
        free(r);
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

/* Settle pool's charge after a trim (rc: the trim's result). */
CUresult fcsp_pool_trimmed(CUresult rc, CUmemoryPool pool)
{
    struct pool_rec *r = rc == CUDA_SUCCESS ? ptr_map_get(&g_pools, (uint64_t)(uintptr_t)pool) : NULL;
    struct fcsp_dev *d = r ? fcsp_dev_by_ordinal(r->ordinal) : NULL;
    if (d) {
        pthread_mutex_lock(&r->mu);
        settle(r, d);
        pthread_mutex_unlock(&r->mu);
    }
    return rc;
}

CUresult fcsp_pool_destroy(fcsp_pfn_cuMemPoolDestroy real, CUmemoryPool pool)
{
    struct pool_rec *r = ptr_map_get(&g_pools, (uint64_t)(uintptr_t)pool);
    if (r == NULL)
        return real(pool);
    pthread_mutex_lock(&r->mu);
    CUresult rc = real(pool);
    if (rc == CUDA_SUCCESS) {
        r->destroyed = 1;
        ptr_map_take(&g_pools, (uint64_t)(uintptr_t)pool);
        struct fcsp_dev *d = fcsp_dev_by_ordinal(r->ordinal);
        if (d)
            settle(r, d);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void fcsp_pool_reset(void)
{
    pthread_mutex_init(&g_mu, NULL);
    g_pools = (struct ptr_map)PTR_MAP_INIT;
    g_ptrs = (struct ptr_map)PTR_MAP_INIT;
}
