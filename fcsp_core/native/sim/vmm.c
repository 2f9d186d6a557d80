/* Virtual memory management: physical handles (cuMemCreate, charged at creation), address reservations and
 * mappings. Like the driver, a handle's memory is freed once every reference is released (cuMemCreate gives one,
 * cuMemRetainAllocationHandle one more) and no mapping of it is left: a handle released while mapped keeps its
 * memory until the last cuMemUnmap.
 *
 * A handle created with requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR can be exported to an fd
 * (cuMemExportToShareableHandle) that another process imports (cuMemImportFromShareableHandle) into a handle of its
 * own naming the same physical memory. Such memory is shared (sim_share.c): it lives while any process holds a
 * handle or mapping of it or any of its fds is open, whoever created it; this process's handles and mappings of
 * it count as one hold. */
#include <pthread.h>
#include <stdlib.h>

#include "sim_cuda.h"

struct vmm_handle {
    uint64_t handle;
    uint64_t bytes;
    int dev;
    int refs; /* references not yet released */
    int maps;
    int exportable; /* created with CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR */
    uint64_t share; /* its share (sim_share.c) once exported or imported, else 0 */
};

struct vmm_range {
    uint64_t addr, bytes;
    struct vmm_handle *h; /* mappings only */
};

static pthread_mutex_t g_vmm_mu = PTHREAD_MUTEX_INITIALIZER; /* released/maps of every handle */
static struct ptr_map g_handles = PTR_MAP_INIT; /* handles with a reference left */
static struct ptr_map g_reserved = PTR_MAP_INIT; /* reservations by start address */
static struct ptr_map g_mapped = PTR_MAP_INIT; /* mappings by start address */

static CUresult check_prop(const CUmemAllocationProp *prop)
{
    if (prop == NULL || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
        prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        (prop->requestedHandleTypes != CU_MEM_HANDLE_TYPE_NONE &&
         prop->requestedHandleTypes != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR))
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = sim_check_device(prop->location.id);
    return rc == CUDA_ERROR_INVALID_DEVICE ? CUDA_ERROR_INVALID_DEVICE : rc;
}

SIM_EXPORT CUresult cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                                  CUmemAllocationGranularity_flags option)
{
    if (granularity == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = check_prop(prop);
    if (rc != CUDA_SUCCESS)
        return rc;
    *granularity = SIM_GRANULARITY;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                                unsigned long long flags)
{
    CUresult rc = check_prop(prop);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (handle == NULL || size == 0 || size % SIM_GRANULARITY != 0 || flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct vmm_handle *h = calloc(1, sizeof *h);
    if (h == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    int dev = prop->location.id;
    rc = sim_charge(dev, size);
    if (rc != CUDA_SUCCESS) {
        free(h);
        return rc;
    }
    h->handle = sim_va_alloc(SIM_VA_HANDLE, 0, 16, 16);
    h->bytes = size;
    h->dev = dev;
    h->refs = 1;
    h->exportable = prop->requestedHandleTypes == CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    if (h->handle == 0 || ptr_map_put(&g_handles, h->handle, h) != 0) {
        sim_uncharge(dev, size);
        free(h);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *handle = h->handle;
    return CUDA_SUCCESS;
}

static int same_share(uint64_t key, void *val, void *arg)
{
    (void)key;
    return ((const struct vmm_handle *)val)->share == *(const uint64_t *)arg;
}

static int maps_share(uint64_t key, void *val, void *arg)
{
    (void)key;
    return ((const struct vmm_range *)val)->h->share == *(const uint64_t *)arg;
}

/* Frees h once it has no reference and no mapping left: its memory, or for shared memory this process's hold once
 * no other handle or mapping of this process names the share. Caller holds g_vmm_mu. */
static void maybe_free(struct vmm_handle *h)
{
    if (h->refs != 0 || h->maps != 0)
        return;
    uint64_t share = h->share;
    if (share == 0)
        sim_uncharge(h->dev, h->bytes);
    free(h);
    if (share && ptr_map_find(&g_handles, same_share, &share) == NULL &&
        ptr_map_find(&g_mapped, maps_share, &share) == NULL)
        sim_share_drop(g_sim_sh, share, g_sim_slot);
}

SIM_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_vmm_mu);
    struct vmm_handle *h = ptr_map_get(&g_handles, handle);
    if (h == NULL) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else if (--h->refs == 0) {
        ptr_map_take(&g_handles, handle);
        maybe_free(h);
    }
    pthread_mutex_unlock(&g_vmm_mu);
    return rc;
}

/* Another reference to the handle mapped at addr (also one whose references were all released while mapped). */
SIM_EXPORT CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (handle == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_vmm_mu);
    struct vmm_range *m = ptr_map_get(&g_mapped, (uint64_t)(uintptr_t)addr);
    if (m == NULL) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        if (m->h->refs++ == 0 && ptr_map_put(&g_handles, m->h->handle, m->h) != 0) {
            m->h->refs--;
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        }
        if (rc == CUDA_SUCCESS)
            *handle = m->h->handle;
    }
    pthread_mutex_unlock(&g_vmm_mu);
    return rc;
}

SIM_EXPORT CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
                                        unsigned long long flags)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (ptr == NULL || size == 0 || size % SIM_GRANULARITY != 0 || (alignment & (alignment - 1)) != 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct vmm_range *r = calloc(1, sizeof *r);
    if (r == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    r->bytes = size;
    r->addr = sim_va_alloc(SIM_VA_RESERVE, 0, size, alignment > SIM_GRANULARITY ? alignment : SIM_GRANULARITY);
    if (r->addr == 0 || ptr_map_put(&g_reserved, r->addr, r) != 0) {
        free(r);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *ptr = r->addr; /* the addr hint is not honoured, as the driver may do */
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    struct vmm_range *r = ptr_map_get(&g_reserved, ptr);
    if (r == NULL || r->bytes != size)
        return CUDA_ERROR_INVALID_VALUE;
    if (ptr_map_take(&g_reserved, ptr) != r)
        return CUDA_ERROR_INVALID_VALUE;
    free(r);
    return CUDA_SUCCESS;
}

struct range_query {
    uint64_t addr, len;
};

static int covers(uint64_t key, void *val, void *arg)
{
    const struct vmm_range *r = val;
    const struct range_query *q = arg;
    (void)key;
    return q->addr >= r->addr && q->addr - r->addr < r->bytes && q->len <= r->bytes - (q->addr - r->addr);
}

static int overlaps(uint64_t key, void *val, void *arg)
{
    const struct vmm_range *r = val;
    const struct range_query *q = arg;
    (void)key;
    return q->addr < r->addr + r->bytes && r->addr < q->addr + q->len;
}

int sim_vmm_contains(uint64_t addr, uint64_t len)
{
    struct range_query q = {addr, len};
    return ptr_map_find(&g_mapped, covers, &q) != NULL;
}

SIM_EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                             unsigned long long flags)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    struct range_query q = {ptr, size};
    if (size == 0 || size % SIM_GRANULARITY != 0 || offset != 0 || flags != 0 ||
        ptr_map_find(&g_reserved, covers, &q) == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct vmm_range *m = calloc(1, sizeof *m);
    if (m == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_lock(&g_vmm_mu);
    struct vmm_handle *h = ptr_map_get(&g_handles, handle);
    if (h == NULL || size > h->bytes || ptr_map_find(&g_mapped, overlaps, &q) != NULL) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        m->addr = ptr;
        m->bytes = size;
        m->h = h;
        if (ptr_map_put(&g_mapped, ptr, m) != 0)
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        else
            h->maps++;
    }
    pthread_mutex_unlock(&g_vmm_mu);
    if (rc != CUDA_SUCCESS)
        free(m);
    return rc;
}

SIM_EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_vmm_mu);
    struct vmm_range *m = ptr_map_get(&g_mapped, ptr);
    if (m == NULL || m->bytes != size) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        ptr_map_take(&g_mapped, ptr);
        m->h->maps--;
        maybe_free(m->h);
        free(m);
    }
    pthread_mutex_unlock(&g_vmm_mu);
    return rc;
}

SIM_EXPORT CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (desc == NULL || count == 0 || !sim_vmm_contains(ptr, size))
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < count; i++) {
        if (desc[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE)
            return CUDA_ERROR_INVALID_VALUE;
        if (sim_check_device(desc[i].location.id) != CUDA_SUCCESS)
            return CUDA_ERROR_INVALID_DEVICE;
    }
    return CUDA_SUCCESS;
}

/* Directory of the files behind exported fds: the node's (FCSP_SIM_DIR), else the temporary directory. */
static const char *share_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    return g_sim_cfg.has_dir ? g_sim_cfg.dir : (tmp && *tmp ? tmp : "/tmp");
}

SIM_EXPORT CUresult cuMemExportToShareableHandle(void *shareableHandle, CUmemGenericAllocationHandle handle,
                                                 CUmemAllocationHandleType handleType, unsigned long long flags)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (shareableHandle == NULL || flags != 0 || handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_vmm_mu);
    struct vmm_handle *h = ptr_map_get(&g_handles, handle);
    int fd = -1;
    if (h == NULL || (!h->exportable && h->share == 0)) {
        rc = CUDA_ERROR_INVALID_VALUE; /* not created for this handle type */
    } else if (h->share) {
        fd = sim_share_fd(g_sim_sh, h->share);
    } else {
        fd = sim_share_export(g_sim_sh, share_dir(), g_sim_slot, h->dev, h->bytes, &h->share);
    }
    pthread_mutex_unlock(&g_vmm_mu);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (fd < 0)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *(int *)shareableHandle = fd;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle, void *osHandle,
                                                   CUmemAllocationHandleType shHandleType)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (handle == NULL || shHandleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        return CUDA_ERROR_INVALID_VALUE;
    int fd = (int)(intptr_t)osHandle;
    struct vmm_handle *h = calloc(1, sizeof *h);
    if (h == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (fd < 0 || sim_share_import(g_sim_sh, fd, g_sim_slot, &h->share, &h->dev, &h->bytes) != 0) {
        free(h);
        return CUDA_ERROR_INVALID_VALUE;
    }
    h->refs = 1;
    h->exportable = 1;
    h->handle = sim_va_alloc(SIM_VA_HANDLE, 0, 16, 16);
    pthread_mutex_lock(&g_vmm_mu);
    if (h->handle == 0 || ptr_map_put(&g_handles, h->handle, h) != 0) {
        h->refs = 0;
        maybe_free(h); /* gives the hold back unless another handle of this process names the share */
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
        *handle = h->handle;
    }
    pthread_mutex_unlock(&g_vmm_mu);
    return rc;
}
