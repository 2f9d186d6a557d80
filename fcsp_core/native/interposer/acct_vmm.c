/* VMM accounting. The driver keeps a physical allocation (cuMemCreate) while any reference to its handle is
 * unreleased (cuMemCreate gives one, cuMemRetainAllocationHandle one more each) or any mapping of it is left
 * (cuMemMap .. cuMemUnmap): releasing the handle while mapped, as CUDA's own samples do, frees nothing. So the charge
 * taken at cuMemCreate is given back only when both counts reach zero. Handles imported from another process
 * (cuMemImportFromShareableHandle) or created while fcsp did not enforce are not ours: their maps and releases pass
 * through, their memory stays the exporter's charge.
 *
 * One lock over the handle and mapping tables, held across the driver call so that a release racing an unmap of
 * the same handle cannot both see the other's count. The VMM path is cold next to the driver's own cost. */
#include <pthread.h>
#include <stdlib.h>

#include "interposer/acct.h"
#include "interposer/admission.h"
#include "interposer/state.h"
#include "../common/ptr_map.h"

struct vmm_rec {
    uint64_t handle;
    uint64_t size;
    int ordinal;
    int refs; /* unreleased references */
    int maps; /* live mappings */
};

struct vmm_mapping {
    uint64_t addr;
    struct vmm_rec *rec;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ptr_map g_handles = PTR_MAP_INIT; /* handle -> vmm_rec, while it has a reference or a mapping */
static struct ptr_map g_mappings = PTR_MAP_INIT; /* mapped address -> vmm_mapping */

int fcsp_vmm_created(CUmemGenericAllocationHandle handle, uint64_t size, int ordinal)
{
    struct vmm_rec *r = malloc(sizeof *r);
    if (r == NULL)
        return -1;
    *r = (struct vmm_rec){handle, size, ordinal, 1, 0};
    pthread_mutex_lock(&g_mu);
    int rc = ptr_map_put(&g_handles, handle, r);
    pthread_mutex_unlock(&g_mu);
    if (rc != 0)
        free(r);
    return rc;
}

/* Caller holds g_mu. Gives the charge back once r has neither a reference nor a mapping. */
static void maybe_uncharge(struct vmm_rec *r)
{
    if (r->refs > 0 || r->maps > 0)
        return;
    ptr_map_take(&g_handles, r->handle);
    struct fcsp_dev *d = fcsp_dev_by_ordinal(r->ordinal);
    if (d)
        fcsp_release(d, r->size);
    free(r);
}

CUresult fcsp_vmm_release(fcsp_pfn_cuMemRelease real, CUmemGenericAllocationHandle handle)
{
    pthread_mutex_lock(&g_mu);
    CUresult rc = real(handle);
    struct vmm_rec *r = rc == CUDA_SUCCESS ? ptr_map_get(&g_handles, handle) : NULL;
    if (r && r->refs > 0) {
        r->refs--;
        maybe_uncharge(r);
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

CUresult fcsp_vmm_retain(fcsp_pfn_cuMemRetainAllocationHandle real, CUmemGenericAllocationHandle *handle, void *addr)
{
    pthread_mutex_lock(&g_mu);
    CUresult rc = real(handle, addr);
    struct vmm_rec *r = rc == CUDA_SUCCESS && handle ? ptr_map_get(&g_handles, *handle) : NULL;
    if (r)
        r->refs++;
    pthread_mutex_unlock(&g_mu);
    return rc;
}

CUresult fcsp_vmm_map(fcsp_pfn_cuMemMap real, CUdeviceptr ptr, size_t size, size_t offset,
                      CUmemGenericAllocationHandle handle, unsigned long long flags)
{
    pthread_mutex_lock(&g_mu);
    CUresult rc = real(ptr, size, offset, handle, flags);
    struct vmm_rec *r = rc == CUDA_SUCCESS ? ptr_map_get(&g_handles, handle) : NULL;
    if (r) {
        struct vmm_mapping *m = malloc(sizeof *m);
        if (m)
            *m = (struct vmm_mapping){ptr, r};
        if (m && ptr_map_put(&g_mappings, ptr, m) == 0) {
            r->maps++;
        } else {
            /* cannot follow this mapping: the handle's charge then ends at its release, as before */
            free(m);
        }
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

struct range {
    uint64_t lo, hi;
};

static int starts_in(uint64_t key, void *val, void *arg)
{
    const struct range *q = arg;
    (void)val;
    return key >= q->lo && key < q->hi;
}

CUresult fcsp_vmm_unmap(fcsp_pfn_cuMemUnmap real, CUdeviceptr ptr, size_t size)
{
    pthread_mutex_lock(&g_mu);
    CUresult rc = real(ptr, size);
    if (rc == CUDA_SUCCESS) {
        /* every mapping that starts in the unmapped range is gone (the driver unmaps whole mappings only) */
        struct range q = {ptr, ptr + size};
        struct vmm_mapping *m;
        while ((m = ptr_map_find(&g_mappings, starts_in, &q)) != NULL) {
            ptr_map_take(&g_mappings, m->addr);
            struct vmm_rec *r = m->rec;
            free(m);
            r->maps--;
            maybe_uncharge(r);
        }
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void fcsp_vmm_reset(void)
{
    /* the child has no thread but this one: start over with empty tables (the parent's stay allocated) */
    pthread_mutex_init(&g_mu, NULL);
    g_handles = (struct ptr_map)PTR_MAP_INIT;
    g_mappings = (struct ptr_map)PTR_MAP_INIT;
}
