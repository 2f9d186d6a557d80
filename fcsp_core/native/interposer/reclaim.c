/* Reclaiming the slots of dead processes: their memory accounting, their tenant membership, the reaper statistics.
 * Runs under the region lock, in an attaching process (so nothing leaks without a daemon) or in the node daemon.
 *
 * Exactness: a process that died outside every accounting window (in_op == 0) held exactly its slot's counters, so
 * those are subtracted from its tenant. One that died inside a window left the tenant and its slot disagreeing: the
 * tenant's gate is closed, its live processes' windows drain, and the tenant is recomputed from the live slots
 * (admission.c explains the windows and the gate). A reclaim holds the slot in REAPING, which nobody claims; a
 * REAPING slot met under the lock was left by a reaper that died or deferred, and is finished by recomputation,
 * which is exact however far the earlier attempt got. */
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "interposer/proc_slot.h"
#include "interposer/reclaim.h"


static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = us * 1000L};
    nanosleep(&ts, NULL);
}

/* Close the gate of tenant_idx, wait until none of its live processes but skip_idx is inside an accounting window,
 * then set its counters to the sum of its live slots; released[] gets what each GPU's counter lost. 0, or -1 if
 * the tenant could not be quiesced in time (gate reopened, nothing changed). */
static int recompute_tenant(struct fcsp_region *r, uint32_t tenant_idx, int skip_idx, uint64_t released[],
                            unsigned quiesce_ms)
{
    struct fcsp_tenant *t = &r->tenants[tenant_idx];
    uint64_t deadline = fcsp_now_ms() + quiesce_ms;
    /* seq_cst: Dekker pair with op_enter's seq_cst increment of in_op and load of the gate */
    atomic_store_explicit(&t->reap_gate_ms, fcsp_now_ms() | 1u, memory_order_seq_cst);
    for (int i = 0; i < FCSP_MAX_PROCS; i++) {
        struct fcsp_proc *q = &r->procs[i];
        /* acquire: a LIVE slot's tenant field is its owner's (pairs with the owner's release store of LIVE) */
        if (i == skip_idx || atomic_load_explicit(&q->state, memory_order_acquire) != FCSP_PROC_LIVE ||
            q->tenant != tenant_idx)
            continue;
        while (atomic_load_explicit(&q->in_op, memory_order_seq_cst) != 0) {
            if (fcsp_now_ms() > deadline || fcsp_proc_is_dead(q)) {
                /* release: reopen the gate; the reclaim is retried by the next lock holder */
                atomic_store_explicit(&t->reap_gate_ms, 0, memory_order_release);
                return -1;
            }
            sleep_us(50);
        }
    }
    for (int g = 0; g < FCSP_MAX_GPUS; g++) {
        uint64_t sum = 0;
        for (int i = 0; i < FCSP_MAX_PROCS; i++) {
            struct fcsp_proc *q = &r->procs[i];
            if (i != skip_idx && q->tenant == tenant_idx &&
                atomic_load_explicit(&q->state, memory_order_acquire) == FCSP_PROC_LIVE)
                sum += atomic_load_explicit(&q->used_bytes[g], memory_order_relaxed); /* quiesced: exact */
        }
        /* relaxed: the gate keeps every admission of this tenant out while we overwrite its counter */
        uint64_t before = atomic_load_explicit(&t->gpu[g].used_bytes, memory_order_relaxed);
        atomic_store_explicit(&t->gpu[g].used_bytes, sum, memory_order_relaxed);
        released[g] = before > sum ? before - sum : 0;
    }
    /* release: admissions that resume see the recomputed counters */
    atomic_store_explicit(&t->reap_gate_ms, 0, memory_order_release);
    return 0;
}

/* The reaper statistics (relaxed: statistics, each read on its own by the exporter). */
static void count_reclaim(struct fcsp_region *r, struct fcsp_tenant *t, const uint64_t held[],
                          const uint64_t released[], uint64_t total)
{
    atomic_fetch_add_explicit(&r->header.reaped_total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->reaped_total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->reaped_bytes_total, total, memory_order_relaxed);
    for (int g = 0; g < FCSP_MAX_GPUS; g++)
        if (held[g] || released[g])
            atomic_fetch_add_explicit(&r->gpus[g].reaped_total, 1, memory_order_relaxed);
}

long long fcsp_reclaim_slot(struct fcsp_region *r, int proc_idx, struct fcsp_reclaim_info *info, unsigned quiesce_ms)
{
    struct fcsp_proc *p = &r->procs[proc_idx];
    if (info)
        memset(info, 0, sizeof *info);
    /* acquire: pairs with the owner's release store of LIVE, so pid/tenant/start_time are its own */
    uint32_t st = atomic_load_explicit(&p->state, memory_order_acquire);
    if (st != FCSP_PROC_LIVE && st != FCSP_PROC_REAPING)
        return 0;
    int pending = st == FCSP_PROC_REAPING;
    uint32_t tenant_idx = p->tenant;
    if (tenant_idx >= FCSP_MAX_TENANTS) { /* no fcsp process writes this: drop the slot, touch no tenant */
        fcsp_log(FCSP_LOG_WARN, "process slot %d names tenant %u (corrupt region?): freed", proc_idx, tenant_idx);
        fcsp_slot_free(r, proc_idx);
        fcsp_region_bump_topology(r);
        return 0;
    }
    atomic_store_explicit(&p->state, FCSP_PROC_REAPING, memory_order_relaxed); /* under the lock: no claimant */
    struct fcsp_tenant *t = &r->tenants[tenant_idx];
    uint64_t held[FCSP_MAX_GPUS], released[FCSP_MAX_GPUS];
    for (int g = 0; g < FCSP_MAX_GPUS; g++)
        held[g] = atomic_load_explicit(&p->used_bytes[g], memory_order_relaxed);
    /* acquire: pairs with the owner's release decrement, so its counter updates before that are visible */
    int recompute = pending || atomic_load_explicit(&p->in_op, memory_order_acquire) != 0;
    if (!recompute) {
        fcsp_slot_give_back(r, proc_idx, released);
    } else if (recompute_tenant(r, tenant_idx, proc_idx, released, quiesce_ms) != 0) {
        if (info) {
            info->pid = p->pid;
            info->tenant = (int)tenant_idx;
            info->deferred = 1;
        }
        return -1; /* stays REAPING: nobody claims it, the next lock holder recomputes again */
    }
    long long total = 0;
    for (int g = 0; g < FCSP_MAX_GPUS; g++) {
        total += (long long)released[g];
        atomic_store_explicit(&p->used_bytes[g], 0, memory_order_relaxed);
    }
    atomic_store_explicit(&p->in_op, 0, memory_order_relaxed);
    if (info) {
        info->pid = p->pid;
        info->start_time = p->start_time;
        info->tenant = (int)tenant_idx;
        info->recomputed = recompute;
        info->pending = pending;
        memcpy(info->released, released, sizeof info->released);
    }
    count_reclaim(r, t, held, released, (uint64_t)total);
    fcsp_slot_free(r, proc_idx);
    fcsp_tenant_leave(r, (int)tenant_idx);
    fcsp_region_bump_topology(r);
    fcsp_log(FCSP_LOG_INFO, "reclaimed process %d of tenant %.*s: %lld bytes released", (int)p->pid,
             FCSP_NAME_LEN - 1, t->name, total);
    return total;
}

int fcsp_tenants_recount(struct fcsp_region *r)
{
    uint32_t count[FCSP_MAX_TENANTS] = {0};
    for (int i = 0; i < FCSP_MAX_PROCS; i++) {
        const struct fcsp_proc *p = &r->procs[i];
        /* acquire: a LIVE/REAPING slot's tenant field is complete */
        uint32_t st = atomic_load_explicit(&p->state, memory_order_acquire);
        if ((st == FCSP_PROC_LIVE || st == FCSP_PROC_REAPING) && p->tenant < FCSP_MAX_TENANTS)
            count[p->tenant]++;
    }
    int repaired = 0;
    for (int i = 0; i < FCSP_MAX_TENANTS; i++) {
        struct fcsp_tenant *t = &r->tenants[i];
        if (atomic_load_explicit(&t->state, memory_order_acquire) != FCSP_TENANT_ACTIVE)
            continue;
        /* relaxed: nprocs only changes under the region lock, which we hold */
        uint32_t n = atomic_load_explicit(&t->nprocs, memory_order_relaxed);
        if (n == count[i] || n == FCSP_TENANT_CLOSING)
            continue;
        fcsp_log(FCSP_LOG_WARN, "tenant %.*s counted %u processes, its slots say %u (a process died inside a slot "
                                "change): repaired",
                 FCSP_NAME_LEN - 1, t->name, n, count[i]);
        /* One more than the truth, then a leave: an ephemeral tenant left with none goes the usual way. */
        atomic_store_explicit(&t->nprocs, count[i] + 1, memory_order_relaxed);
        fcsp_tenant_leave(r, i);
        repaired++;
    }
    return repaired;
}
