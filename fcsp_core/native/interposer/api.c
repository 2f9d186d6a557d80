/* The public C API (include/fcsp/fcsp_api.h) over the accounting files: used by the Python region manager and tools.
 * A handle maps the caller's own file and, for root, every uid's (api_files.c); a snapshot merges them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/region.h"
#include "fcsp/fcsp_api.h"
#include "interposer/api_handle.h"

#define SNAP_TENANTS (sizeof(((struct fcsp_snapshot *)0)->tenants) / sizeof(struct fcsp_tenant_info))
#define SNAP_PROCS (sizeof(((struct fcsp_snapshot *)0)->procs) / sizeof(struct fcsp_proc_info))
_Static_assert(sizeof(((struct fcsp_snapshot *)0)->gpus) / sizeof(struct fcsp_gpu_info) == FCSP_MAX_GPUS, "gpus");
_Static_assert(FCSP_TENANT_INFO_EPHEMERAL == FCSP_TENANT_EPHEMERAL && FCSP_TENANT_INFO_POLICY == FCSP_TENANT_POLICY &&
                   FCSP_TENANT_INFO_CLOSING == FCSP_TENANT_CLOSING,
               "the snapshot's tenant flags are the region's");
_Static_assert(FCSP_PROC_INFO_FREE == FCSP_PROC_FREE && FCSP_PROC_INFO_CLAIMING == FCSP_PROC_CLAIMING &&
                   FCSP_PROC_INFO_LIVE == FCSP_PROC_LIVE && FCSP_PROC_INFO_REAPING == FCSP_PROC_REAPING,
               "the snapshot's process states are the region's");
_Static_assert(SNAP_TENANTS >= FCSP_MAX_TENANTS && SNAP_PROCS >= FCSP_MAX_PROCS, "a whole file fits a snapshot");
_Static_assert(sizeof(((struct fcsp_tenant_info *)0)->gpu) / sizeof(struct fcsp_tenant_gpu_info) == FCSP_MAX_GPUS,
               "tenant gpus");

FCSP_API const char *fcsp_version(void) { return FCSP_VERSION_STRING; /* pyproject.toml's, from CMake */ }

FCSP_API int fcsp_region_open(const char *dir, int create, fcsp_region_handle **out, char *err, size_t errlen)
{
    *out = NULL;
    fcsp_region_handle *h = calloc(1, sizeof *h);
    if (!h)
        return fcsp_err(err, errlen, FCSP_EIO, "out of memory");
    int rc = fcsp_handle_open(h, dir, create, err, errlen);
    if (rc) {
        fcsp_handle_close(h);
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
    fcsp_handle_close(h);
    free(h);
}

static int merged_index(const struct fcsp_snapshot *out, const char *uuid)
{
    for (uint32_t k = 0; k < out->ngpus; k++)
        if (strncmp(out->gpus[k].uuid, uuid, sizeof out->gpus[k].uuid - 1) == 0)
            return (int)k;
    return -1;
}

/* The snapshot's GPU for a file's GPU entry (merged by UUID); -1 when the list is full. A GPU the daemon vouched for
 * (fcsp_region_trust_gpu) always finds room: others may only take what the vouched ones not met yet leave. */
static int merged_gpu(const fcsp_region_handle *h, struct fcsp_snapshot *out, const struct fcsp_gpu_entry *g)
{
    int k = merged_index(out, g->uuid);
    if (k >= 0)
        return k;
    int vouched = 0, pending = 0;
    for (int i = 0; i < h->nseed; i++) {
        int same = strncmp(h->gpu_seed[i], g->uuid, FCSP_UUID_LEN - 1) == 0;
        vouched |= same;
        pending += !same && merged_index(out, h->gpu_seed[i]) < 0;
    }
    if (out->ngpus + (uint32_t)(vouched ? 0 : pending) >= FCSP_MAX_GPUS)
        return -1;
    struct fcsp_gpu_info *o = &out->gpus[out->ngpus];
    memset(o, 0, sizeof *o);
    o->index = (int32_t)out->ngpus;
    o->sm_count = g->sm_count;
    o->total_bytes = g->total_bytes;
    memcpy(o->uuid, g->uuid, sizeof o->uuid);
    o->uuid[sizeof o->uuid - 1] = '\0';
    return (int)out->ngpus++;
}

FCSP_API int fcsp_region_trust_gpu(fcsp_region_handle *h, const char *uuid)
{
    for (int i = 0; i < h->nseed; i++)
        if (strncmp(h->gpu_seed[i], uuid, FCSP_UUID_LEN - 1) == 0)
            return FCSP_OK;
    if (h->nseed >= FCSP_MAX_GPUS)
        return FCSP_EFULL;
    snprintf(h->gpu_seed[h->nseed++], FCSP_UUID_LEN, "%s", uuid);
    return FCSP_OK;
}

/* Append one file's tenants and processes (gpu[] remapped to the merged GPUs); reaped[] gets its GPUs' reaper
 * statistics, added by the caller once the copy is consistent. */
static void copy_file(const fcsp_region_handle *h, const struct fcsp_region *r, int pos, uint32_t uid,
                      struct fcsp_snapshot *out, uint64_t reaped[FCSP_MAX_GPUS])
{
    int map[FCSP_MAX_GPUS];
    for (int i = 0; i < FCSP_MAX_GPUS; i++) {
        const struct fcsp_gpu_entry *g = &r->gpus[i];
        map[i] = -1;
        /* acquire: the entry's fields are complete once READY */
        if (atomic_load_explicit(&g->state, memory_order_acquire) != FCSP_GPU_READY)
            continue;
        map[i] = merged_gpu(h, out, g);
        if (map[i] >= 0) /* relaxed: a statistic */
            reaped[map[i]] += atomic_load_explicit(&g->reaped_total, memory_order_relaxed);
    }
    for (int i = 0; i < FCSP_MAX_TENANTS; i++) {
        const struct fcsp_tenant *t = &r->tenants[i];
        if (atomic_load_explicit(&t->state, memory_order_acquire) != FCSP_TENANT_ACTIVE)
            continue;
        if (out->ntenants >= SNAP_TENANTS) {
            out->truncated++;
            continue;
        }
        struct fcsp_tenant_info *o = &out->tenants[out->ntenants++];
        memset(o, 0, sizeof *o);
        o->index = pos * FCSP_MAX_TENANTS + i;
        o->uid = uid; /* the file's owner: what the tenant's processes run as (t->uid is only what they wrote) */
        o->flags = t->flags;
        /* relaxed: counters are read one by one; each is exact, together they are a moment's view */
        o->nprocs = atomic_load_explicit(&t->nprocs, memory_order_relaxed);
        o->created_ns = t->created_ns;
        memcpy(o->name, t->name, sizeof o->name);
        o->name[sizeof o->name - 1] = '\0';
        o->reaped_total = atomic_load_explicit(&t->reaped_total, memory_order_relaxed);
        o->reaped_bytes_total = atomic_load_explicit(&t->reaped_bytes_total, memory_order_relaxed);
        for (int g = 0; g < FCSP_MAX_GPUS; g++) {
            if (map[g] < 0)
                continue;
            struct fcsp_tenant_gpu_info *og = &o->gpu[map[g]];
            og->used_bytes = atomic_load_explicit(&t->gpu[g].used_bytes, memory_order_relaxed);
            og->limit_bytes = atomic_load_explicit(&t->gpu[g].limit_bytes, memory_order_relaxed);
            og->peak_bytes = atomic_load_explicit(&t->gpu[g].peak_bytes, memory_order_relaxed);
            og->refused_total = atomic_load_explicit(&t->gpu[g].refused_total, memory_order_relaxed);
            og->sm_limit_pct = atomic_load_explicit(&t->gpu[g].sm_limit_pct, memory_order_relaxed);
            og->sm_granted_ns_total = atomic_load_explicit(&t->gpu[g].sm_granted_ns_total, memory_order_relaxed);
            og->sm_throttled_ns_total =
                atomic_load_explicit(&t->gpu[g].sm_throttled_ns_total, memory_order_relaxed);
            og->launches_total = atomic_load_explicit(&t->gpu[g].launches_total, memory_order_relaxed);
        }
    }
    for (int i = 0; i < FCSP_MAX_PROCS; i++) {
        const struct fcsp_proc *p = &r->procs[i];
        uint32_t st = atomic_load_explicit(&p->state, memory_order_acquire);
        if (st != FCSP_PROC_LIVE && st != FCSP_PROC_REAPING)
            continue;
        if (out->nprocs >= SNAP_PROCS) {
            out->truncated++;
            continue;
        }
        struct fcsp_proc_info *o = &out->procs[out->nprocs++];
        memset(o, 0, sizeof *o);
        o->index = pos * FCSP_MAX_PROCS + i;
        o->pid = p->pid;
        o->tenant = p->tenant < FCSP_MAX_TENANTS ? (uint32_t)pos * FCSP_MAX_TENANTS + p->tenant : UINT32_MAX;
        o->state = st;
        o->in_op = atomic_load_explicit(&p->in_op, memory_order_relaxed);
        o->uid = uid;
        o->start_time = p->start_time;
        o->heartbeat_ms = atomic_load_explicit(&r->header.proc_beat_ms[i], memory_order_relaxed);
        for (int g = 0; g < FCSP_MAX_GPUS; g++)
            if (map[g] >= 0)
                o->used_bytes[map[g]] = atomic_load_explicit(&p->used_bytes[g], memory_order_relaxed);
    }
}

/* The per-GPU sums, from the copied tenants and processes. */
static void sum_gpus(struct fcsp_snapshot *out)
{
    for (uint32_t k = 0; k < out->ngpus; k++) {
        struct fcsp_gpu_info *g = &out->gpus[k];
        g->used_bytes = 0;
        g->nprocs = 0;
        for (uint32_t i = 0; i < out->ntenants; i++)
            g->used_bytes += out->tenants[i].gpu[k].used_bytes;
        for (uint32_t i = 0; i < out->nprocs; i++)
            g->nprocs += out->procs[i].state == FCSP_PROC_LIVE && out->procs[i].used_bytes[k] != 0;
    }
}

FCSP_API int fcsp_region_snapshot(fcsp_region_handle *h, struct fcsp_snapshot *out)
{
    out->ngpus = out->ntenants = out->nprocs = out->nfiles = out->truncated = out->unsettled = 0;
    out->reaped_total = 0;
    uint64_t seq = h->generation << 40, reaped[FCSP_MAX_GPUS] = {0};
    for (int f = 0; f < h->n; f++) {
        const struct fcsp_region *r = h->files[f].map.r;
        if (!r)
            continue;
        uint32_t nt = out->ntenants, np = out->nprocs, tr = out->truncated;
        uint64_t file_reaped[FCSP_MAX_GPUS];
        int settled = 0;
        uint64_t s2 = 0;
        for (int tries = 0; tries < 100 && !settled; tries++) {
            out->ntenants = nt;
            out->nprocs = np;
            out->truncated = tr;
            memset(file_reaped, 0, sizeof file_reaped);
            /* acquire: pairs with fcsp_region_bump_topology's release; an unchanged value across the copy means no
             * slot changed hands meanwhile */
            uint64_t s1 = atomic_load_explicit(&r->header.topology_seq, memory_order_acquire);
            copy_file(h, r, f, h->files[f].uid, out, file_reaped);
            atomic_thread_fence(memory_order_acquire);
            s2 = atomic_load_explicit(&r->header.topology_seq, memory_order_relaxed);
            settled = s1 == s2;
        }
        if (!settled) {
            if (fcsp_file_is_own(h, f))
                return FCSP_EBUSY;
            out->unsettled++; /* another uid's own churn must not stop the node's view of everyone else */
        }
        for (int g = 0; g < FCSP_MAX_GPUS; g++)
            reaped[g] += file_reaped[g];
        /* relaxed: a statistic */
        out->reaped_total += atomic_load_explicit(&r->header.reaped_total, memory_order_relaxed);
        out->nfiles++;
        seq += s2;
    }
    for (uint32_t k = 0; k < out->ngpus; k++)
        out->gpus[k].reaped_total = reaped[k];
    sum_gpus(out);
    out->topology_seq = seq;
    out->now_ms = fcsp_now_ms();
    return FCSP_OK;
}

FCSP_API int fcsp_region_tenant_remove(fcsp_region_handle *h, uint32_t uid, const char *tenant)
{
    int f = -1;
    for (int i = 0; i < h->n && f < 0; i++)
        if (h->files[i].uid == uid && h->files[i].map.r)
            f = i;
    if (f < 0)
        return FCSP_ENOENT;
    struct fcsp_region_map *m = &h->files[f].map;
    if (fcsp_region_lock_wait(m, fcsp_file_lock_wait(h, f)) != FCSP_OK)
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
