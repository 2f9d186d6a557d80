/* Allocation families: allocate and free one allocation of a kind, and the alloc/free/fill/pooltrim commands. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"

static const char *const g_kind_names[K_NKINDS] = {"mem", "pitch", "managed", "async", "pool",
                                                   "vmm", "array", "array3d", "mipmap"};

static pthread_mutex_t g_list_mu = PTHREAD_MUTEX_INITIALIZER;
static struct probe_alloc *g_list;
static size_t g_count, g_cap;
static CUmemoryPool g_pool; /* the explicitly created pool of kind "pool" */
static size_t g_pool_allocs;

int probe_kind_parse(const char *s, enum probe_kind *out)
{
    for (int k = 0; k < K_NKINDS; k++) {
        if (strcmp(s, g_kind_names[k]) == 0) {
            *out = (enum probe_kind)k;
            return 0;
        }
    }
    return -1;
}

const char *probe_kind_name(enum probe_kind k)
{
    return g_kind_names[k];
}

static CUresult ensure_pool(void)
{
    if (g_pool)
        return CUDA_SUCCESS;
    CUmemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    props.location.id = g_dev;
    CUresult rc = PROBE_CALL(g_cu.MemPoolCreate, &g_pool, &props);
    if (rc != CUDA_SUCCESS)
        return rc;
    cuuint64_t keep_all = UINT64_MAX; /* cache freed memory until trimmed or destroyed */
    return PROBE_CALL(g_cu.MemPoolSetAttribute, g_pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep_all);
}

static CUresult alloc_vmm(uint64_t size, struct probe_alloc *out)
{
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = g_dev;
    size_t gran = 0;
    CUresult rc = PROBE_CALL(g_cu.MemGetAllocationGranularity, &gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
    if (rc != CUDA_SUCCESS)
        return rc;
    uint64_t bytes = (size + gran - 1) / gran * gran;
    CUmemGenericAllocationHandle h;
    rc = PROBE_CALL(g_cu.MemCreate, &h, bytes, &prop, 0);
    if (rc != CUDA_SUCCESS)
        return rc;
    CUdeviceptr va = 0;
    rc = PROBE_CALL(g_cu.MemAddressReserve, &va, bytes, 0, 0, 0);
    if (rc == CUDA_SUCCESS) {
        rc = PROBE_CALL(g_cu.MemMap, va, bytes, 0, h, 0);
        if (rc == CUDA_SUCCESS) {
            CUmemAccessDesc acc;
            memset(&acc, 0, sizeof acc);
            acc.location = prop.location;
            acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
            rc = PROBE_CALL(g_cu.MemSetAccess, va, bytes, &acc, 1);
            if (rc != CUDA_SUCCESS)
                PROBE_CALL(g_cu.MemUnmap, va, bytes);
        }
        if (rc != CUDA_SUCCESS)
            PROBE_CALL(g_cu.MemAddressFree, va, bytes);
    }
    if (rc != CUDA_SUCCESS) {
        PROBE_CALL(g_cu.MemRelease, h);
        return rc;
    }
    out->handle = h;
    out->va = va;
    out->bytes = bytes;
    return CUDA_SUCCESS;
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

CUresult probe_alloc_one(enum probe_kind kind, uint64_t size, struct probe_alloc *out)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->bytes = size;
    CUdeviceptr p = 0;
    CUresult rc;
    switch (kind) {
    case K_MEM: rc = PROBE_CALL(g_cu.MemAlloc, &p, size); break;
    case K_MANAGED: rc = PROBE_CALL(g_cu.MemAllocManaged, &p, size, CU_MEM_ATTACH_GLOBAL); break;
    case K_ASYNC: rc = PROBE_CALL(g_cu.MemAllocAsync, &p, size, NULL); break;
    case K_POOL:
        pthread_mutex_lock(&g_list_mu);
        rc = ensure_pool();
        if (rc == CUDA_SUCCESS) {
            rc = PROBE_CALL(g_cu.MemAllocFromPoolAsync, &p, size, g_pool, NULL);
            if (rc == CUDA_SUCCESS)
                g_pool_allocs++;
        }
        pthread_mutex_unlock(&g_list_mu);
        break;
    case K_PITCH: {
        /* rows of up to 1 MiB */
        uint64_t width = size < (1u << 20) ? (size ? size : 1) : (1u << 20);
        size_t pitch = 0;
        rc = PROBE_CALL(g_cu.MemAllocPitch, &p, &pitch, width, ceil_div(size ? size : 1, width), 4);
        out->bytes = (uint64_t)pitch * ceil_div(size ? size : 1, width);
        break;
    }
    case K_VMM: return alloc_vmm(size, out);
    case K_ARRAY: {
        CUDA_ARRAY_DESCRIPTOR d = {0};
        d.Format = CU_AD_FORMAT_UNSIGNED_INT8;
        d.NumChannels = 1;
        d.Width = size < 65536 ? size : 65536;
        d.Height = d.Width ? ceil_div(size, d.Width) : 1;
        out->bytes = (uint64_t)d.Width * d.Height;
        CUarray a = NULL;
        rc = PROBE_CALL(g_cu.ArrayCreate, &a, &d);
        out->handle = (uint64_t)(uintptr_t)a;
        return rc;
    }
    case K_ARRAY3D: {
        CUDA_ARRAY3D_DESCRIPTOR d = {0};
        d.Format = CU_AD_FORMAT_UNSIGNED_INT8;
        d.NumChannels = 1;
        d.Width = size < 16384 ? size : 16384;
        d.Height = d.Width ? ceil_div(size, d.Width) : 1;
        if (d.Height > 16384)
            d.Height = 16384;
        d.Depth = d.Width ? ceil_div(size, d.Width * d.Height) : 1;
        out->bytes = (uint64_t)d.Width * d.Height * d.Depth;
        CUarray a = NULL;
        rc = PROBE_CALL(g_cu.Array3DCreate, &a, &d);
        out->handle = (uint64_t)(uintptr_t)a;
        return rc;
    }
    case K_MIPMAP: {
        /* square 2D, full chain of levels: the largest power-of-two side that fits in size */
        uint64_t side = 1;
        while ((side * 2) * (side * 2) <= size)
            side *= 2;
        unsigned int levels = 0;
        uint64_t bytes = 0;
        for (uint64_t s = side; s; s >>= 1, levels++)
            bytes += s * s;
        CUDA_ARRAY3D_DESCRIPTOR d = {0};
        d.Format = CU_AD_FORMAT_UNSIGNED_INT8;
        d.NumChannels = 1;
        d.Width = side;
        d.Height = side;
        out->bytes = size ? bytes : 0;
        if (size == 0)
            d.Width = 0;
        CUmipmappedArray m = NULL;
        rc = PROBE_CALL(g_cu.MipmappedArrayCreate, &m, &d, levels);
        out->handle = (uint64_t)(uintptr_t)m;
        return rc;
    }
    default: rc = CUDA_ERROR_INVALID_VALUE; break;
    }
    out->handle = p;
    return rc;
}

CUresult probe_free_one(const struct probe_alloc *a)
{
    switch (a->kind) {
    case K_MEM:
    case K_MANAGED:
    case K_PITCH: return PROBE_CALL(g_cu.MemFree, a->handle);
    case K_ASYNC: return PROBE_CALL(g_cu.MemFreeAsync, a->handle, NULL);
    case K_POOL: {
        CUresult rc = PROBE_CALL(g_cu.MemFreeAsync, a->handle, NULL);
        pthread_mutex_lock(&g_list_mu);
        if (rc == CUDA_SUCCESS && --g_pool_allocs == 0 && g_pool) {
            /* the last one: give the cached memory back and drop the pool */
            PROBE_CALL(g_cu.StreamSynchronize, NULL);
            PROBE_CALL(g_cu.MemPoolTrimTo, g_pool, 0);
            PROBE_CALL(g_cu.MemPoolDestroy, g_pool);
            g_pool = NULL;
        }
        pthread_mutex_unlock(&g_list_mu);
        return rc;
    }
    case K_VMM: {
        CUresult rc = PROBE_CALL(g_cu.MemUnmap, a->va, a->bytes);
        CUresult rc2 = PROBE_CALL(g_cu.MemAddressFree, a->va, a->bytes);
        CUresult rc3 = PROBE_CALL(g_cu.MemRelease, a->handle);
        return rc != CUDA_SUCCESS ? rc : rc2 != CUDA_SUCCESS ? rc2 : rc3;
    }
    case K_ARRAY:
    case K_ARRAY3D: return PROBE_CALL(g_cu.ArrayDestroy, (CUarray)(uintptr_t)a->handle);
    case K_MIPMAP: return PROBE_CALL(g_cu.MipmappedArrayDestroy, (CUmipmappedArray)(uintptr_t)a->handle);
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

static int push(const struct probe_alloc *a)
{
    pthread_mutex_lock(&g_list_mu);
    if (g_count == g_cap) {
        size_t ncap = g_cap ? g_cap * 2 : 64;
        struct probe_alloc *n = realloc(g_list, ncap * sizeof *n);
        if (n == NULL) {
            pthread_mutex_unlock(&g_list_mu);
            return -1;
        }
        g_list = n;
        g_cap = ncap;
    }
    g_list[g_count++] = *a;
    pthread_mutex_unlock(&g_list_mu);
    return 0;
}

int cmd_alloc(uint64_t size, enum probe_kind kind)
{
    struct probe_alloc a;
    CUresult rc = probe_alloc_one(kind, size, &a);
    if (rc != CUDA_SUCCESS) {
        probe_out("alloc fail kind=%s size=%llu err=%s", probe_kind_name(kind), (unsigned long long)a.bytes,
                  probe_err(rc));
        return 0; /* a refused allocation is a result, not a failure of the probe */
    }
    push(&a);
    probe_out("alloc ok kind=%s size=%llu", probe_kind_name(kind), (unsigned long long)a.bytes);
    return 0;
}

/* Frees the last allocation (all: every one, newest first); returns how many, *err the first failure. */
static size_t free_some(int all, CUresult *err)
{
    size_t n = 0;
    *err = CUDA_SUCCESS;
    for (;;) {
        pthread_mutex_lock(&g_list_mu);
        if (g_count == 0) {
            pthread_mutex_unlock(&g_list_mu);
            break;
        }
        struct probe_alloc a = g_list[--g_count];
        pthread_mutex_unlock(&g_list_mu);
        CUresult rc = probe_free_one(&a);
        if (rc != CUDA_SUCCESS && *err == CUDA_SUCCESS)
            *err = rc;
        n++;
        if (!all)
            break;
    }
    return n;
}

int cmd_free(int all)
{
    CUresult err;
    size_t n = free_some(all, &err);
    if (err != CUDA_SUCCESS) {
        probe_out("free fail count=%zu err=%s", n, probe_err(err));
        return 1;
    }
    probe_out("free ok count=%zu", n);
    return 0;
}

int cmd_free_all_quiet(void)
{
    CUresult err;
    free_some(1, &err);
    return err == CUDA_SUCCESS ? 0 : 1;
}

int cmd_fill(enum probe_kind kind, uint64_t chunk)
{
    uint64_t total = 0, count = 0;
    CUresult rc;
    struct probe_alloc a;
    for (;;) {
        rc = probe_alloc_one(kind, chunk, &a);
        if (rc != CUDA_SUCCESS || push(&a) != 0)
            break;
        total += a.bytes;
        count++;
    }
    probe_out("fill ok kind=%s allocated_bytes=%llu count=%llu err=%s", probe_kind_name(kind),
              (unsigned long long)total, (unsigned long long)count, probe_err(rc));
    return 0;
}

int cmd_pooltrim(uint64_t keep)
{
    pthread_mutex_lock(&g_list_mu);
    CUresult rc = g_pool ? PROBE_CALL(g_cu.MemPoolTrimTo, g_pool, keep) : CUDA_SUCCESS;
    cuuint64_t reserved = 0, used = 0;
    if (g_pool && rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.MemPoolGetAttribute, g_pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &reserved);
    if (g_pool && rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.MemPoolGetAttribute, g_pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used);
    pthread_mutex_unlock(&g_list_mu);
    if (rc != CUDA_SUCCESS) {
        probe_out("pooltrim fail err=%s", probe_err(rc));
        return 1;
    }
    probe_out("pooltrim ok keep=%llu reserved_bytes=%llu used_bytes=%llu", (unsigned long long)keep,
              (unsigned long long)reserved, (unsigned long long)used);
    return 0;
}
