/* The live allocations of this process: charging them to the node, their addresses, and finding them again.
 * Like the driver, linear memory is handed out in whole units of SIM_LINEAR_ALIGN bytes: a 1-byte allocation costs
 * 512 bytes of the device (fcsp charges the same rounding). */
#include <stdlib.h>
#include <sys/mman.h>

#include "sim_cuda.h"

#define SIM_LINEAR_ALIGN 512

struct ptr_map g_sim_ptrs = PTR_MAP_INIT;
struct ptr_map g_sim_arrays = PTR_MAP_INIT;

CUresult sim_alloc_linear(int dev, CUcontext ctx, uint64_t bytes, enum sim_alloc_kind kind, int low32,
                          uint64_t *out)
{
    if (bytes == 0 || bytes > UINT64_MAX - SIM_LINEAR_ALIGN)
        return CUDA_ERROR_INVALID_VALUE;
    bytes = (bytes + SIM_LINEAR_ALIGN - 1) / SIM_LINEAR_ALIGN * SIM_LINEAR_ALIGN;
    struct sim_alloc *a = calloc(1, sizeof *a);
    if (a == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = sim_charge(dev, bytes);
    if (rc != CUDA_SUCCESS) {
        free(a);
        return rc;
    }
    uint64_t addr = 0;
    if (kind == SIM_ALLOC_MANAGED) {
        /* managed memory is reachable from the host: back it with lazily committed host pages */
        void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                       0);
        if (p != MAP_FAILED) {
            a->host = p;
            addr = (uint64_t)(uintptr_t)p;
        }
    } else {
        addr = sim_va_alloc(low32 ? SIM_VA_LOW32 : SIM_VA_LINEAR, dev, bytes, SIM_LINEAR_ALIGN);
    }
    a->addr = addr;
    a->bytes = bytes;
    a->dev = dev;
    a->kind = kind;
    a->ctx = ctx;
    if (addr == 0 || ptr_map_put(&g_sim_ptrs, addr, a) != 0) {
        if (a->host)
            munmap(a->host, (size_t)bytes);
        sim_uncharge(dev, bytes);
        free(a);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *out = addr;
    return CUDA_SUCCESS;
}

static void release(struct sim_alloc *a)
{
    if (a->kind == SIM_ALLOC_ASYNC) {
        sim_pool_free(a);
        return;
    }
    if (a->host)
        munmap(a->host, (size_t)a->bytes);
    sim_uncharge(a->dev, a->bytes);
    free(a);
}

CUresult sim_free_linear(uint64_t addr)
{
    struct sim_alloc *a = ptr_map_take(&g_sim_ptrs, addr);
    if (a == NULL)
        return CUDA_ERROR_INVALID_VALUE; /* unknown or already freed */
    release(a);
    return CUDA_SUCCESS;
}

struct range_query {
    uint64_t addr, len;
};

static int contains(uint64_t key, void *val, void *arg)
{
    const struct sim_alloc *a = val;
    const struct range_query *q = arg;
    (void)key;
    return q->addr >= a->addr && q->addr - a->addr < a->bytes && q->len <= a->bytes - (q->addr - a->addr);
}

CUresult sim_check_range(uint64_t addr, uint64_t len)
{
    struct range_query q = {addr, len};
    struct sim_alloc *a = ptr_map_get(&g_sim_ptrs, addr);
    if (a != NULL && len <= a->bytes)
        return CUDA_SUCCESS;
    if (ptr_map_find(&g_sim_ptrs, contains, &q) != NULL || sim_vmm_contains(addr, len))
        return CUDA_SUCCESS;
    return CUDA_ERROR_INVALID_VALUE;
}

static int owned_by(uint64_t key, void *val, void *arg)
{
    const struct sim_alloc *a = val;
    (void)key;
    return a->ctx == (CUcontext)arg && a->kind != SIM_ALLOC_ASYNC; /* pool memory belongs to the device */
}

void sim_free_context_allocs(CUcontext ctx)
{
    struct ptr_map *maps[] = {&g_sim_ptrs, &g_sim_arrays};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) {
        struct sim_alloc *a;
        while ((a = ptr_map_find(maps[i], owned_by, ctx)) != NULL) {
            if (ptr_map_take(maps[i], a->addr) == a)
                release(a);
        }
    }
}
