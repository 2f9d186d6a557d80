/* The node daemon's part of the public C API: reaping dead processes' slots and checking the accounting files for
 * corruption. Both run under each file's lock, like every slot change; the lock of another uid's file is only
 * tried, never waited for (a user holding their own lock must not stall the node's work for everyone else). */
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/parse.h"
#include "common/region.h"
#include "fcsp/fcsp_api.h"
#include "interposer/api_handle.h"
#include "interposer/proc_slot.h"
#include "interposer/reclaim.h"

FCSP_API uint32_t fcsp_region_layout_version(void) { return FCSP_REGION_VERSION; }

FCSP_API uint64_t fcsp_region_topology_seq(fcsp_region_handle *h)
{
    uint64_t seq = h->generation << 40;
    for (int f = 0; f < h->n; f++)
        if (h->files[f].map.r) /* acquire: pairs with fcsp_region_bump_topology's release, so a snapshot taken
                                * after seeing a new value sees the slot changes behind it */
            seq += atomic_load_explicit(&h->files[f].map.r->header.topology_seq, memory_order_acquire);
    return seq;
}

static void fill_event(struct fcsp_reap_event *ev, const struct fcsp_region *r, int pos, uint32_t uid, int proc_idx,
                       const struct fcsp_reclaim_info *info)
{
    memset(ev, 0, sizeof *ev);
    ev->pid = info->pid;
    ev->uid = uid;
    ev->proc_index = (uint32_t)(pos * FCSP_MAX_PROCS + proc_idx);
    ev->tenant_index = (uint32_t)(pos * FCSP_MAX_TENANTS + info->tenant);
    ev->start_time = info->start_time;
    ev->flags = (info->recomputed ? FCSP_REAP_RECOMPUTED : 0) | (info->pending ? FCSP_REAP_PENDING : 0) |
                (info->deferred ? FCSP_REAP_DEFERRED : 0);
    for (int g = 0; g < FCSP_MAX_GPUS; g++) {
        ev->released_gpu_bytes[g] = info->released[g];
        ev->released_bytes += info->released[g];
    }
    /* The name stays readable: the tenant may have been freed by this reclaim, but only a later join reuses it. */
    memcpy(ev->tenant, r->tenants[info->tenant].name, sizeof ev->tenant);
    ev->tenant[sizeof ev->tenant - 1] = '\0';
}

/* One file's pass, under its lock; returns the events written. Another uid's file stops at its first deferral:
 * its processes' windows cost the daemon at most one quiesce wait per pass. */
static int reap_file(fcsp_region_handle *h, int pos, uint64_t min_heartbeat_age_ms, struct fcsp_reap_event *events,
                     int max)
{
    struct fcsp_region *r = h->files[pos].map.r;
    uint64_t now = fcsp_now_ms();
    int n = 0;
    /* The slots' states are the truth (the dense pid index only speeds up attaching), so every slot is looked at:
     * one load per slot, and the kernel is asked only about those whose heartbeat is old enough. */
    for (int i = 0; i < FCSP_MAX_PROCS && n < max; i++) {
        struct fcsp_proc *p = &r->procs[i];
        /* acquire: pairs with the owner's release store of LIVE (pid, start time, tenant are its own) */
        uint32_t st = atomic_load_explicit(&p->state, memory_order_acquire);
        if (st == FCSP_PROC_LIVE) {
            /* relaxed: written under the lock, which we hold */
            if (atomic_load_explicit(&r->header.proc_pid[i], memory_order_relaxed) != p->pid) {
                /* its owner died between publishing the slot and indexing it: index it, or attaching processes
                 * (which go by the index) would never look at it */
                atomic_store_explicit(&r->header.proc_pid[i], p->pid, memory_order_relaxed);
            }
            /* relaxed: a timestamp, nothing is published with it */
            uint64_t beat = atomic_load_explicit(&r->header.proc_beat_ms[i], memory_order_relaxed);
            if (min_heartbeat_age_ms && beat + min_heartbeat_age_ms > now)
                continue;
            if (!fcsp_proc_is_dead(p))
                continue;
        } else if (st != FCSP_PROC_REAPING) {
            continue;
        }
        struct fcsp_reclaim_info info;
        fcsp_reclaim_slot(r, i, &info,
                          fcsp_file_is_own(h, pos) ? FCSP_RECLAIM_QUIESCE_MS : FCSP_RECLAIM_QUIESCE_OTHER_MS);
        if (info.pid != 0 || info.deferred)
            fill_event(&events[n++], r, pos, h->files[pos].uid, i, &info);
        if (info.deferred && !fcsp_file_is_own(h, pos))
            break;
    }
    fcsp_tenants_recount(r);
    return n;
}

FCSP_API int fcsp_region_reap(fcsp_region_handle *h, uint64_t min_heartbeat_age_ms, struct fcsp_reap_event *events,
                              int max)
{
    if (max < 0 || (max > 0 && !events))
        return FCSP_EINVAL;
    int n = 0;
    for (int f = 0; f < h->n && n < max; f++) {
        struct fcsp_region_map *m = &h->files[f].map;
        if (!m->r)
            continue;
        if (fcsp_region_lock_wait(m, fcsp_file_lock_wait(h, f)) != FCSP_OK) {
            if (fcsp_file_is_own(h, f))
                return FCSP_EBUSY;
            continue; /* its owner holds it: next pass */
        }
        n += reap_file(h, f, min_heartbeat_age_ms, events + n, max - n);
        fcsp_region_unlock(m);
    }
    return n;
}

/* ---- corruption check ---- */

static int check_locked(const struct fcsp_region *r, const char *path, char *err, size_t errlen)
{
    const struct fcsp_region_header *hd = &r->header;
    /* acquire: pairs with the creator's release store of the magic */
    uint64_t magic = __atomic_load_n(&hd->magic, __ATOMIC_ACQUIRE);
    if (magic != FCSP_REGION_MAGIC || hd->version != FCSP_REGION_VERSION ||
        hd->header_size != sizeof(struct fcsp_region_header) || hd->total_size != sizeof(struct fcsp_region) ||
        hd->max_gpus != FCSP_MAX_GPUS || hd->max_tenants != FCSP_MAX_TENANTS || hd->max_procs != FCSP_MAX_PROCS ||
        hd->cacheline != FCSP_CACHELINE)
        return fcsp_err(err, errlen, FCSP_ESTALE,
                        "region %s is corrupt: its header changed while mapped (magic 0x%016llx, version %u)", path,
                        (unsigned long long)magic, hd->version);
    for (int i = 0; i < FCSP_MAX_GPUS; i++) {
        const struct fcsp_gpu_entry *g = &r->gpus[i];
        uint32_t st = atomic_load_explicit(&g->state, memory_order_acquire);
        if (st > FCSP_GPU_READY)
            return fcsp_err(err, errlen, FCSP_ESTALE, "region %s is corrupt: GPU entry %d has state %u", path, i, st);
        if (st == FCSP_GPU_READY && (!fcsp_printable_name(g->uuid, sizeof g->uuid) || g->total_bytes == 0))
            return fcsp_err(err, errlen, FCSP_ESTALE,
                            "region %s is corrupt: GPU entry %d has no valid UUID or memory size", path, i);
    }
    for (int i = 0; i < FCSP_MAX_TENANTS; i++) {
        const struct fcsp_tenant *t = &r->tenants[i];
        uint32_t st = atomic_load_explicit(&t->state, memory_order_acquire);
        if (st > FCSP_TENANT_ACTIVE)
            return fcsp_err(err, errlen, FCSP_ESTALE, "region %s is corrupt: tenant slot %d has state %u", path, i,
                            st);
        if (st != FCSP_TENANT_ACTIVE)
            continue;
        /* relaxed: only changed under the lock, which we hold */
        uint32_t n = atomic_load_explicit(&t->nprocs, memory_order_relaxed);
        if (!fcsp_printable_name(t->name, sizeof t->name) ||
            (t->flags & ~(uint32_t)(FCSP_TENANT_EPHEMERAL | FCSP_TENANT_POLICY)) != 0 ||
            (n > FCSP_MAX_PROCS && n != FCSP_TENANT_CLOSING))
            return fcsp_err(err, errlen, FCSP_ESTALE,
                            "region %s is corrupt: tenant slot %d has an invalid name, flags 0x%x or process count %u",
                            path, i, t->flags, n);
    }
    for (int i = 0; i < FCSP_MAX_PROCS; i++) {
        const struct fcsp_proc *p = &r->procs[i];
        uint32_t st = atomic_load_explicit(&p->state, memory_order_acquire);
        if (st > FCSP_PROC_REAPING)
            return fcsp_err(err, errlen, FCSP_ESTALE, "region %s is corrupt: process slot %d has state %u", path, i,
                            st);
        if (st != FCSP_PROC_LIVE && st != FCSP_PROC_REAPING)
            continue;
        if (p->pid <= 0 || p->tenant >= FCSP_MAX_TENANTS ||
            atomic_load_explicit(&r->tenants[p->tenant].state, memory_order_acquire) != FCSP_TENANT_ACTIVE)
            return fcsp_err(err, errlen, FCSP_ESTALE,
                            "region %s is corrupt: process slot %d (pid %d) names tenant %u, which is not active",
                            path, i, (int)p->pid, p->tenant);
    }
    return FCSP_OK;
}

FCSP_API int fcsp_region_check(fcsp_region_handle *h, char *err, size_t errlen)
{
    for (int f = 0; f < h->n; f++) {
        struct fcsp_region_map *m = &h->files[f].map;
        if (!m->r)
            continue;
        if (fcsp_region_lock_wait(m, fcsp_file_lock_wait(h, f)) != FCSP_OK) {
            if (fcsp_file_is_own(h, f))
                return fcsp_err(err, errlen, FCSP_EBUSY, "region %s: timed out waiting for its lock", m->path);
            continue;
        }
        char why[FCSP_ERR_LEN];
        int rc = check_locked(m->r, m->path, why, sizeof why);
        fcsp_region_unlock(m);
        if (rc && fcsp_file_is_own(h, f))
            return fcsp_err(err, errlen, rc, "%s", why);
        if (rc) {
            fcsp_log(FCSP_LOG_WARN, "%s: not used until it is rebuilt", why);
            fcsp_handle_refuse(h, f, why);
        }
    }
    return FCSP_OK;
}
