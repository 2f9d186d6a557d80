#include "interposer/proc_slot.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "fcsp/fcsp_api.h"
#include "interposer/reclaim.h"

void fcsp_tenant_leave(struct fcsp_region *r, int tenant_idx)
{
    struct fcsp_tenant *t = &r->tenants[tenant_idx];
    /* relaxed: nprocs is only changed under the region lock; readers (status) only display it */
    uint32_t n = atomic_load_explicit(&t->nprocs, memory_order_relaxed);
    if (n > 0)
        atomic_store_explicit(&t->nprocs, --n, memory_order_relaxed);
    if (n == 0 && (t->flags & FCSP_TENANT_EPHEMERAL)) {
        /* release: a snapshot that sees FREE must not see the old counters as live */
        atomic_store_explicit(&t->state, FCSP_TENANT_FREE, memory_order_release);
        atomic_store_explicit(&r->header.tenant_key[tenant_idx], 0, memory_order_relaxed); /* under the lock */
        fcsp_region_bump_topology(r);
    }
}

int fcsp_proc_is_dead(const struct fcsp_proc *p)
{
    return !fcsp_proc_alive(p->pid, p->start_time);
}

static uint32_t name_key(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < FCSP_NAME_LEN && name[i]; i++)
        h = (h ^ (uint8_t)name[i]) * 16777619u;
    return h | 1u;
}

/* Under the lock: a slot's pid and heartbeat in the dense indexes (pid 0: the slot is free). */
void fcsp_index_proc(struct fcsp_region *r, int proc_idx, int32_t pid)
{
    /* relaxed: written under the lock; readers outside it (snapshots) retry on topology_seq */
    atomic_store_explicit(&r->header.proc_beat_ms[proc_idx], pid ? fcsp_now_ms() : 0, memory_order_relaxed);
    atomic_store_explicit(&r->header.proc_pid[proc_idx], pid, memory_order_relaxed);
}

/* Under the lock: find the tenant by name, or create it. */
static int tenant_join(struct fcsp_region *r, const struct fcsp_config *cfg, int policy_managed)
{
    int free_idx = -1;
    uint32_t key = name_key(cfg->tenant);
    for (int i = 0; i < FCSP_MAX_TENANTS; i++) {
        /* relaxed: keys change only under the lock, which we hold */
        uint32_t k = atomic_load_explicit(&r->header.tenant_key[i], memory_order_relaxed);
        struct fcsp_tenant *t = &r->tenants[i];
        if (k == key && atomic_load_explicit(&t->state, memory_order_acquire) == FCSP_TENANT_ACTIVE &&
            strncmp(t->name, cfg->tenant, FCSP_NAME_LEN) == 0) {
            atomic_store_explicit(&t->nprocs, atomic_load_explicit(&t->nprocs, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
            return i;
        }
        if (k == 0 && free_idx < 0 && atomic_load_explicit(&t->state, memory_order_acquire) == FCSP_TENANT_FREE)
            free_idx = i;
    }
    if (free_idx < 0)
        return FCSP_EFULL;
    struct fcsp_tenant *t = &r->tenants[free_idx];
    for (int g = 0; g < FCSP_MAX_GPUS; g++) {
        atomic_store_explicit(&t->gpu[g].used_bytes, 0, memory_order_relaxed);
        atomic_store_explicit(&t->gpu[g].limit_bytes, 0, memory_order_relaxed);
        atomic_store_explicit(&t->gpu[g].peak_bytes, 0, memory_order_relaxed);
        atomic_store_explicit(&t->gpu[g].refused_total, 0, memory_order_relaxed);
        atomic_store_explicit(&t->gpu[g].sm_limit_pct, 0, memory_order_relaxed);
        atomic_store_explicit(&t->gpu[g].cap_set, 0, memory_order_relaxed);
        atomic_store_explicit(&t->gpu[g].sm_tat_ns, 0, memory_order_relaxed);
        atomic_store_explicit(&t->gpu[g].sm_granted_ns_total, 0, memory_order_relaxed);
        atomic_store_explicit(&t->gpu[g].sm_throttled_ns_total, 0, memory_order_relaxed);
        atomic_store_explicit(&t->gpu[g].launches_total, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&t->reap_gate_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&t->reaped_total, 0, memory_order_relaxed);
    atomic_store_explicit(&t->reaped_bytes_total, 0, memory_order_relaxed);
    atomic_store_explicit(&t->nprocs, 1, memory_order_relaxed);
    t->flags = policy_managed ? FCSP_TENANT_POLICY : FCSP_TENANT_EPHEMERAL;
    t->uid = (uint32_t)geteuid();
    t->created_ns = fcsp_realtime_ns();
    memset(t->name, 0, sizeof t->name);
    memcpy(t->name, cfg->tenant, strnlen(cfg->tenant, FCSP_NAME_LEN - 1));
    /* release: a reader that sees ACTIVE (acquire) sees the name, flags and zeroed counters */
    atomic_store_explicit(&t->state, FCSP_TENANT_ACTIVE, memory_order_release);
    atomic_store_explicit(&r->header.tenant_key[free_idx], key, memory_order_relaxed);
    return free_idx;
}

int fcsp_attach(struct fcsp_region_map *m, const struct fcsp_config *cfg, int policy_managed, int *tenant_idx,
                int *proc_idx, char *err, size_t errlen)
{
    if (!m->writable)
        return fcsp_err(err, errlen, FCSP_EPERM, "region %s is read-only for this user", m->path);
    if (fcsp_region_lock(m) != FCSP_OK)
        return fcsp_err(err, errlen, FCSP_EBUSY, "region %s: timed out waiting for its lock", m->path);
    struct fcsp_region *r = m->r;
    pid_t me = getpid();
    uint64_t my_start = fcsp_proc_start_time(me);
    /* Reclaim the dead slots we meet (nothing leaks forever without a daemon), including our own pre-exec image's:
     * same PID and start time, but its CUDA state died with the exec. Only slots whose heartbeat went stale cost
     * a look at /proc. */
    int free_idx = -1;
    uint64_t now = fcsp_now_ms();
    for (int i = 0; i < FCSP_MAX_PROCS; i++) {
        /* relaxed: pids change only under the lock, which we hold; beats are timestamps */
        int32_t pid = atomic_load_explicit(&r->header.proc_pid[i], memory_order_relaxed);
        if (pid == 0) {
            if (free_idx < 0 && atomic_load_explicit(&r->procs[i].state, memory_order_acquire) == FCSP_PROC_FREE)
                free_idx = i;
            continue;
        }
        uint64_t beat = atomic_load_explicit(&r->header.proc_beat_ms[i], memory_order_relaxed);
        struct fcsp_proc *p = &r->procs[i];
        int mine = pid == me && p->start_time == my_start;
        if ((mine || (now > beat + FCSP_STALE_BEAT_MS && fcsp_proc_is_dead(p))) &&
            fcsp_reclaim_slot(r, i, NULL, FCSP_RECLAIM_QUIESCE_MS) >= 0 && free_idx < 0)
            free_idx = i;
    }
    fcsp_tenants_recount(r); /* a process killed inside a slot change leaves its tenant's count off */
    int t = tenant_join(r, cfg, policy_managed);
    if (t < 0) {
        fcsp_region_unlock(m);
        return fcsp_err(err, errlen, FCSP_EFULL, "region %s: all %d tenant slots are in use", m->path,
                        FCSP_MAX_TENANTS);
    }
    if (free_idx < 0) {
        fcsp_tenant_leave(r, t);
        fcsp_region_unlock(m);
        return fcsp_err(err, errlen, FCSP_EFULL, "region %s: all %d process slots are in use", m->path,
                        FCSP_MAX_PROCS);
    }
    struct fcsp_proc *p = &r->procs[free_idx];
    p->pid = me;
    p->start_time = my_start;
    p->tenant = (uint32_t)t;
    for (int g = 0; g < FCSP_MAX_GPUS; g++)
        atomic_store_explicit(&p->used_bytes[g], 0, memory_order_relaxed);
    atomic_store_explicit(&p->in_op, 0, memory_order_relaxed);
    /* release: a reader that sees LIVE (acquire) sees pid, start time and tenant */
    atomic_store_explicit(&p->state, FCSP_PROC_LIVE, memory_order_release);
    fcsp_index_proc(r, free_idx, me);
    fcsp_region_bump_topology(r);
    fcsp_region_unlock(m);
    *tenant_idx = t;
    *proc_idx = free_idx;
    return FCSP_OK;
}

void fcsp_slot_give_back(struct fcsp_region *r, int proc_idx, uint64_t released[])
{
    struct fcsp_proc *p = &r->procs[proc_idx];
    struct fcsp_tenant *t = &r->tenants[p->tenant];
    for (int g = 0; g < FCSP_MAX_GPUS; g++) {
        uint64_t u = atomic_exchange_explicit(&p->used_bytes[g], 0, memory_order_relaxed);
        if (u) /* relaxed: plain counter arithmetic, no data published through it */
            atomic_fetch_sub_explicit(&t->gpu[g].used_bytes, u, memory_order_relaxed);
        if (released)
            released[g] = u;
    }
}

void fcsp_slot_free(struct fcsp_region *r, int proc_idx)
{
    /* release: whoever claims the slot next (acquire) sees it cleared */
    atomic_store_explicit(&r->procs[proc_idx].state, FCSP_PROC_FREE, memory_order_release);
    fcsp_index_proc(r, proc_idx, 0);
}

void fcsp_detach(struct fcsp_region_map *m, int tenant_idx, int proc_idx)
{
    struct fcsp_region *r = m->r;
    struct fcsp_proc *p = &r->procs[proc_idx];
    /* acquire: pairs with the release decrements of our own threads' op_exit */
    if (atomic_load_explicit(&p->in_op, memory_order_acquire) != 0) {
        /* Another thread is inside an accounting window while we exit: leave the slot to a reaper, which will
         * recompute the tenant exactly once we are gone. */
        return;
    }
    if (fcsp_region_lock(m) != FCSP_OK)
        return; /* a later attach or the daemon reclaims it */
    fcsp_slot_give_back(r, proc_idx, NULL);
    fcsp_slot_free(r, proc_idx);
    fcsp_tenant_leave(r, tenant_idx);
    fcsp_region_bump_topology(r);
    fcsp_region_unlock(m);
}
