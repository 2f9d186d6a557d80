/* Accounting windows. A charge touches two counters: the tenant's (what admission checks) and this process's slot
 * (what a reaper subtracts if we die). A process killed between the two would leave them disagreeing, so every
 * update runs inside a window: in_op counts our threads inside one. A reaper that finds a dead slot with in_op != 0
 * closes the tenant's gate, waits for the live processes' windows to drain and recomputes the tenant from their
 * slots (reclaim.c). Entering checks the gate after announcing itself (Dekker, both sides seq_cst), so no window
 * starts unseen while the reaper recomputes. */
#include "interposer/admission.h"

#include <time.h>

#include "common/clock.h"
#include "interposer/state.h"

/* A gate older than this was left by a reaper that died: ignore it rather than stall the job forever. */
#define GATE_EXPIRY_MS 2000

static void wait_gate(struct fcsp_tenant *t)
{
    for (int spins = 0;; spins++) {
        /* acquire: pairs with the reaper's release reopening, so recomputed counters are visible */
        uint64_t gate = atomic_load_explicit(&t->reap_gate_ms, memory_order_acquire);
        if (!gate || fcsp_now_ms() > gate + GATE_EXPIRY_MS)
            return;
        if (spins < 64) {
            fcsp_cpu_relax();
        } else {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 50000};
            nanosleep(&ts, NULL);
        }
    }
}

static inline void op_enter(struct fcsp_tenant *t, struct fcsp_proc *p)
{
    for (;;) {
        /* seq_cst: our increment must be visible before we read the gate (Dekker with the reaper) */
        atomic_fetch_add_explicit(&p->in_op, 1, memory_order_seq_cst);
        uint64_t gate = atomic_load_explicit(&t->reap_gate_ms, memory_order_seq_cst);
        if (__builtin_expect(gate == 0, 1) || fcsp_now_ms() > gate + GATE_EXPIRY_MS)
            return;
        /* release: the reaper may read our counters once it sees in_op drop */
        atomic_fetch_sub_explicit(&p->in_op, 1, memory_order_release);
        wait_gate(t);
    }
}

static inline void op_exit(struct fcsp_proc *p)
{
    /* release: a reaper that reads in_op == 0 (acquire/seq_cst) sees both counter updates of this window */
    atomic_fetch_sub_explicit(&p->in_op, 1, memory_order_release);
}

int fcsp_admit(struct fcsp_dev *d, uint64_t size)
{
    struct fcsp_tenant *t = fcsp_g.tenant;
    struct fcsp_proc *p = fcsp_g.proc;
    struct fcsp_tenant_gpu *tg = &t->gpu[d->gpu];
    /* relaxed: the cap is a value on its own; a concurrent change applies to the next admission */
    uint64_t limit = atomic_load_explicit(&d->limit_bytes, memory_order_relaxed);
    op_enter(t, p);
    /* relaxed throughout: the counter publishes no other data; the atomicity of the CAS alone keeps the sum of
     * admitted bytes under the cap in every order of concurrent admissions */
    uint64_t used = atomic_load_explicit(&tg->used_bytes, memory_order_relaxed);
    do {
        if (limit && (size > limit || used > limit - size)) {
            op_exit(p);
            atomic_fetch_add_explicit(&tg->refused_total, 1, memory_order_relaxed);
            return -1;
        }
    } while (!atomic_compare_exchange_weak_explicit(&tg->used_bytes, &used, used + size, memory_order_relaxed,
                                                    memory_order_relaxed));
    atomic_fetch_add_explicit(&p->used_bytes[d->gpu], size, memory_order_relaxed);
    op_exit(p);
    /* relaxed: the peak is a statistic; raising it only when exceeded keeps the common path to one load */
    uint64_t now = used + size, peak = atomic_load_explicit(&tg->peak_bytes, memory_order_relaxed);
    while (now > peak &&
           !atomic_compare_exchange_weak_explicit(&tg->peak_bytes, &peak, now, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
    return 0;
}

void fcsp_charge(struct fcsp_dev *d, uint64_t size)
{
    struct fcsp_tenant *t = fcsp_g.tenant;
    struct fcsp_proc *p = fcsp_g.proc;
    op_enter(t, p);
    /* relaxed: plain counter arithmetic (see fcsp_admit) */
    uint64_t now = atomic_fetch_add_explicit(&t->gpu[d->gpu].used_bytes, size, memory_order_relaxed) + size;
    atomic_fetch_add_explicit(&p->used_bytes[d->gpu], size, memory_order_relaxed);
    op_exit(p);
    uint64_t peak = atomic_load_explicit(&t->gpu[d->gpu].peak_bytes, memory_order_relaxed);
    while (now > peak && !atomic_compare_exchange_weak_explicit(&t->gpu[d->gpu].peak_bytes, &peak, now,
                                                                memory_order_relaxed, memory_order_relaxed))
        ;
}

void fcsp_release(struct fcsp_dev *d, uint64_t size)
{
    struct fcsp_tenant *t = fcsp_g.tenant;
    struct fcsp_proc *p = fcsp_g.proc;
    op_enter(t, p);
    /* relaxed: plain counter arithmetic (see fcsp_admit) */
    atomic_fetch_sub_explicit(&t->gpu[d->gpu].used_bytes, size, memory_order_relaxed);
    atomic_fetch_sub_explicit(&p->used_bytes[d->gpu], size, memory_order_relaxed);
    op_exit(p);
}

uint64_t fcsp_tenant_used(const struct fcsp_dev *d)
{
    /* relaxed: a reading for cuMemGetInfo, stale by nature */
    return atomic_load_explicit(&fcsp_g.tenant->gpu[d->gpu].used_bytes, memory_order_relaxed);
}
