/* The public C API (include/fcsp/fcsp_api.h) over the region: used by the Python region manager and tools. */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/region.h"
#include "fcsp/fcsp_api.h"
#include "interposer/api_handle.h"

_Static_assert(sizeof(((struct fcsp_snapshot *)0)->gpus) / sizeof(struct fcsp_gpu_info) == FCSP_MAX_GPUS, "gpus");
_Static_assert(sizeof(((struct fcsp_snapshot *)0)->tenants) / sizeof(struct fcsp_tenant_info) == FCSP_MAX_TENANTS,
               "tenants");
_Static_assert(sizeof(((struct fcsp_snapshot *)0)->procs) / sizeof(struct fcsp_proc_info) == FCSP_MAX_PROCS, "procs");

FCSP_API const char *fcsp_version(void) { return FCSP_VERSION_STRING; /* pyproject.toml's, from CMake */ }

FCSP_API int fcsp_region_open(const char *dir, int create, fcsp_region_handle **out, char *err, size_t errlen)
{
    *out = NULL;
    fcsp_region_handle *h = calloc(1, sizeof *h);
    if (!h)
        return fcsp_err(err, errlen, FCSP_EIO, "out of memory");
    int rc = fcsp_region_map_open(dir, create, &h->map, err, errlen);
    if (rc) {
        free(h);
        return rc;
    }
    *out = h;
    return FCSP_OK;
}

FCSP_API void fcsp_region_close(fcsp_region_handle *h)
{
    if (!h)
        return;
    fcsp_region_map_close(&h->map);
    free(h);
}

FCSP_API const char *fcsp_region_file(const fcsp_region_handle *h) { return h->map.path; }

static void copy_once(const struct fcsp_region *r, struct fcsp_snapshot *out)
{
    out->ngpus = out->ntenants = out->nprocs = 0;
    for (int i = 0; i < FCSP_MAX_GPUS; i++) {
        const struct fcsp_gpu_entry *g = &r->gpus[i];
        /* acquire: the entry's fields are complete once READY */
        if (atomic_load_explicit(&g->state, memory_order_acquire) != FCSP_GPU_READY)
            continue;
        struct fcsp_gpu_info *o = &out->gpus[out->ngpus++];
        o->index = i;
        o->sm_count = g->sm_count;
        o->total_bytes = g->total_bytes;
        o->used_bytes = 0;
        memcpy(o->uuid, g->uuid, sizeof o->uuid);
        o->uuid[sizeof o->uuid - 1] = '\0';
        /* relaxed: a statistic */
        o->reaped_total = atomic_load_explicit(&g->reaped_total, memory_order_relaxed);
        o->nprocs = 0; /* counted from the process slots below */
        o->reserved = 0;
    }
    for (int i = 0; i < FCSP_MAX_TENANTS; i++) {
        const struct fcsp_tenant *t = &r->tenants[i];
        if (atomic_load_explicit(&t->state, memory_order_acquire) != FCSP_TENANT_ACTIVE)
            continue;
        struct fcsp_tenant_info *o = &out->tenants[out->ntenants++];
        o->index = i;
        o->uid = t->uid;
        o->flags = t->flags;
        /* relaxed: counters are read one by one; each is exact, together they are a moment's view */
        o->nprocs = atomic_load_explicit(&t->nprocs, memory_order_relaxed);
        o->created_ns = t->created_ns;
        memcpy(o->name, t->name, sizeof o->name);
        o->name[sizeof o->name - 1] = '\0';
        o->reaped_total = atomic_load_explicit(&t->reaped_total, memory_order_relaxed);
        o->reaped_bytes_total = atomic_load_explicit(&t->reaped_bytes_total, memory_order_relaxed);
        for (int g = 0; g < FCSP_MAX_GPUS; g++) {
            struct fcsp_tenant_gpu_info *og = &o->gpu[g];
            og->used_bytes = atomic_load_explicit(&t->gpu[g].used_bytes, memory_order_relaxed);
            og->limit_bytes = atomic_load_explicit(&t->gpu[g].limit_bytes, memory_order_relaxed);
            og->peak_bytes = atomic_load_explicit(&t->gpu[g].peak_bytes, memory_order_relaxed);
            og->refused_total = atomic_load_explicit(&t->gpu[g].refused_total, memory_order_relaxed);
            og->sm_limit_pct = atomic_load_explicit(&t->gpu[g].sm_limit_pct, memory_order_relaxed);
            og->sm_granted_ns_total = atomic_load_explicit(&t->gpu[g].sm_granted_ns_total, memory_order_relaxed);
            og->sm_throttled_ns_total =
                atomic_load_explicit(&t->gpu[g].sm_throttled_ns_total, memory_order_relaxed);
            og->launches_total = atomic_load_explicit(&t->gpu[g].launches_total, memory_order_relaxed);
            og->reserved = 0;
            for (uint32_t k = 0; k < out->ngpus; k++)
                if (out->gpus[k].index == g)
                    out->gpus[k].used_bytes += og->used_bytes;
        }
    }
    for (int i = 0; i < FCSP_MAX_PROCS; i++) {
        const struct fcsp_proc *p = &r->procs[i];
        uint32_t st = atomic_load_explicit(&p->state, memory_order_acquire);
        if (st != FCSP_PROC_LIVE && st != FCSP_PROC_REAPING)
            continue;
        struct fcsp_proc_info *o = &out->procs[out->nprocs++];
        o->index = i;
        o->pid = p->pid;
        o->tenant = p->tenant;
        o->state = st;
        o->in_op = atomic_load_explicit(&p->in_op, memory_order_relaxed);
        o->reserved = 0;
        o->start_time = p->start_time;
        o->heartbeat_ms = atomic_load_explicit(&r->header.proc_beat_ms[i], memory_order_relaxed);
        for (int g = 0; g < FCSP_MAX_GPUS; g++)
            o->used_bytes[g] = atomic_load_explicit(&p->used_bytes[g], memory_order_relaxed);
        for (uint32_t k = 0; k < out->ngpus; k++)
            if (st == FCSP_PROC_LIVE && o->used_bytes[out->gpus[k].index])
                out->gpus[k].nprocs++;
    }
    out->reaped_total = atomic_load_explicit(&r->header.reaped_total, memory_order_relaxed);
}

FCSP_API int fcsp_region_snapshot(fcsp_region_handle *h, struct fcsp_snapshot *out)
{
    const struct fcsp_region *r = h->map.r;
    for (int tries = 0; tries < 100; tries++) {
        /* acquire: pairs with fcsp_region_bump_topology's release; an unchanged value across the copy means no
         * slot changed hands meanwhile */
        uint64_t s1 = atomic_load_explicit(&r->header.topology_seq, memory_order_acquire);
        copy_once(r, out);
        atomic_thread_fence(memory_order_acquire);
        uint64_t s2 = atomic_load_explicit(&r->header.topology_seq, memory_order_relaxed);
        out->topology_seq = s2;
        out->now_ms = fcsp_now_ms();
        if (s1 == s2)
            return FCSP_OK;
    }
    return FCSP_EBUSY;
}

FCSP_API int fcsp_region_tenant_remove(fcsp_region_handle *h, const char *tenant)
{
    struct fcsp_region_map *m = &h->map;
    if (!m->writable)
        return FCSP_EPERM;
    if (fcsp_region_lock(m) != FCSP_OK)
        return FCSP_EBUSY;
    int rc = FCSP_ENOENT;
    for (int i = 0; i < FCSP_MAX_TENANTS; i++) {
        struct fcsp_tenant *t = &m->r->tenants[i];
        if (atomic_load_explicit(&t->state, memory_order_acquire) != FCSP_TENANT_ACTIVE ||
            strncmp(t->name, tenant, FCSP_NAME_LEN) != 0)
            continue;
        if (atomic_load_explicit(&t->nprocs, memory_order_relaxed) != 0) {
            rc = FCSP_EBUSY;
            break;
        }
        /* release: a snapshot that sees FREE does not see the old tenant as live */
        atomic_store_explicit(&t->state, FCSP_TENANT_FREE, memory_order_release);
        atomic_store_explicit(&m->r->header.tenant_key[i], 0, memory_order_relaxed); /* under the lock */
        fcsp_region_bump_topology(m->r);
        rc = FCSP_OK;
        break;
    }
    fcsp_region_unlock(m);
    return rc;
}
