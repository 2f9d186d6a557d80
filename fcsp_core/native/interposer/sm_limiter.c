/* GCRA ("virtual scheduling") per tenant and per stream.
 *
 * A launch of cost c at share p advances the tenant's theoretical arrival time (TAT) by c / p: start = max(TAT,
 * now), TAT' = start + c / p. It may run once now >= start - burst, so the tenant stays at most `burst` ahead of
 * its share: long-run GPU time per second is p, exactly, whatever the launch pattern. The reservation is taken by
 * the CAS before waiting, so concurrent launchers of a tenant (threads, processes) are served in the order they
 * booked, and a launch never waits for a later one.
 *
 * Work-conserving mode (FCSP_SM_MODE=borrow): while no other capped tenant has work on the GPU (its TAT is more
 * than a few ms behind the clock), a launch advances the TAT by c (as if the share were 100%), so the tenant keeps at most `burst` of work
 * queued and gives the GPU back within that when a neighbour starts. */
#include "interposer/sm_limiter.h"

#include <errno.h>
#include <stdatomic.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "interposer/state.h"

/* A neighbour's TAT within this window of now: it has work, the GPU is contended, borrowing stops. */
#define CONTENDED_WINDOW_NS (5ull * 1000000ull)
/* How long a process trusts its last look at the neighbours. */
#define CONTENDED_RECHECK_NS (1ull * 1000000ull)
/* Waits longer than this sleep (until just before the deadline), shorter ones spin with a CPU pause. */
#define SPIN_LIMIT_NS 200000ull

uint64_t fcsp_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- per-stream buckets (process-local) ---- */

#define STREAM_SLOTS 256
static struct {
    _Atomic uintptr_t key; /* CUstream + 1 (so the legacy stream 0 is a valid key); 0 = free */
    _Atomic uint64_t tat_ns;
} streams[STREAM_SLOTS];
static _Atomic uint64_t overflow_tat_ns; /* shared by streams that find no slot */

static _Atomic uint64_t *stream_tat(CUstream s)
{
    uintptr_t key = (uintptr_t)s + 1;
    uintptr_t h = (key * 0x9E3779B97F4A7C15ull) >> 56;
    for (int n = 0; n < 16; n++) {
        size_t i = (h + (uintptr_t)n) % STREAM_SLOTS;
        /* acquire: pairs with the claimer's CAS; the tat beside it is then ours to use */
        uintptr_t k = atomic_load_explicit(&streams[i].key, memory_order_acquire);
        if (k == key)
            return &streams[i].tat_ns;
        if (k == 0) {
            uintptr_t expected = 0;
            /* acq_rel: claim the slot once; a loser re-reads the winner's key */
            if (atomic_compare_exchange_strong_explicit(&streams[i].key, &expected, key, memory_order_acq_rel,
                                                        memory_order_acquire) ||
                expected == key)
                return &streams[i].tat_ns;
        }
    }
    return &overflow_tat_ns;
}

/* Book inc ns on a GCRA word; returns the start of the booking. */
static inline uint64_t book(_Atomic uint64_t *tat, uint64_t now, uint64_t inc)
{
    /* relaxed: the TAT is a value of its own; the CAS's atomicity orders the bookings among themselves */
    uint64_t cur = atomic_load_explicit(tat, memory_order_relaxed), start;
    do {
        start = cur > now ? cur : now;
    } while (!atomic_compare_exchange_weak_explicit(tat, &cur, start + inc, memory_order_relaxed,
                                                    memory_order_relaxed));
    return start;
}

/* ---- neighbours (work-conserving mode) ---- */

static struct {
    _Atomic uint64_t until_ns; /* the answer below holds until then */
    _Atomic int contended;
} neighbours[FCSP_MAX_GPUS];

static int gpu_contended(int gpu, uint64_t now)
{
    /* relaxed: a cached hint; a stale answer costs at most CONTENDED_RECHECK_NS of borrowing */
    if (now < atomic_load_explicit(&neighbours[gpu].until_ns, memory_order_relaxed))
        return atomic_load_explicit(&neighbours[gpu].contended, memory_order_relaxed);
    struct fcsp_region *r = fcsp_g.region.r;
    int contended = 0;
    for (int i = 0; i < FCSP_MAX_TENANTS && !contended; i++) {
        if (i == fcsp_g.tenant_idx || !atomic_load_explicit(&r->header.tenant_key[i], memory_order_relaxed))
            continue;
        /* A capped tenant's TAT runs at or ahead of the clock while it has work, at any launch interval; it
         * falls behind once the tenant stops. (A last-launch time misread a tenant whose launches were spaced
         * more than the window apart as idle, and a borrower then took its share.) */
        uint64_t tat = atomic_load_explicit(&r->tenants[i].gpu[gpu].sm_tat_ns, memory_order_relaxed);
        contended = tat + CONTENDED_WINDOW_NS > now;
    }
    atomic_store_explicit(&neighbours[gpu].contended, contended, memory_order_relaxed);
    atomic_store_explicit(&neighbours[gpu].until_ns, now + CONTENDED_RECHECK_NS, memory_order_relaxed);
    return contended;
}

/* ---- waiting ---- */

static void wait_until(uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = fcsp_now_ns();
        if (now >= deadline_ns)
            return;
        if (deadline_ns - now > SPIN_LIMIT_NS) {
            uint64_t wake = deadline_ns - SPIN_LIMIT_NS / 2;
            struct timespec ts = {.tv_sec = (time_t)(wake / 1000000000ull), .tv_nsec = (long)(wake % 1000000000ull)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
        } else {
            for (int i = 0; i < 64; i++)
                fcsp_cpu_relax();
        }
    }
}

/* ---- counters ---- */

/* Throttled launches of this process: released on a slice boundary (a neighbour was active) or paced on their
 * own booking (alone). Printed at exit with FCSP_LOG_LEVEL=debug. */
static struct {
    _Atomic uint64_t sliced, paced;
} waits;

__attribute__((destructor)) static void report_waits(void)
{
    /* relaxed: statistics read at exit */
    uint64_t sliced = atomic_load_explicit(&waits.sliced, memory_order_relaxed);
    uint64_t paced = atomic_load_explicit(&waits.paced, memory_order_relaxed);
    if (sliced || paced)
        fcsp_log(FCSP_LOG_DEBUG, "sm waits: sliced=%llu paced=%llu", (unsigned long long)sliced,
                 (unsigned long long)paced);
}

static struct {
    _Atomic uint64_t launches, granted_ns, throttled_ns;
} local[FCSP_MAX_GPUS];

void fcsp_sm_count(int gpu, uint64_t granted_ns, uint64_t waited_ns)
{
    /* relaxed: statistics, flushed to the region by the heartbeat */
    atomic_fetch_add_explicit(&local[gpu].launches, 1, memory_order_relaxed);
    if (granted_ns)
        atomic_fetch_add_explicit(&local[gpu].granted_ns, granted_ns, memory_order_relaxed);
    if (waited_ns)
        atomic_fetch_add_explicit(&local[gpu].throttled_ns, waited_ns, memory_order_relaxed);
}

void fcsp_sm_flush(void)
{
    if (!fcsp_g.tenant)
        return;
    for (int g = 0; g < FCSP_MAX_GPUS; g++) {
        struct fcsp_tenant_gpu *tg = &fcsp_g.tenant->gpu[g];
        /* relaxed: statistics moved from process-local to the tenant's counters */
        uint64_t n = atomic_exchange_explicit(&local[g].launches, 0, memory_order_relaxed);
        uint64_t gr = atomic_exchange_explicit(&local[g].granted_ns, 0, memory_order_relaxed);
        uint64_t th = atomic_exchange_explicit(&local[g].throttled_ns, 0, memory_order_relaxed);
        if (n)
            atomic_fetch_add_explicit(&tg->launches_total, n, memory_order_relaxed);
        if (gr)
            atomic_fetch_add_explicit(&tg->sm_granted_ns_total, gr, memory_order_relaxed);
        if (th)
            atomic_fetch_add_explicit(&tg->sm_throttled_ns_total, th, memory_order_relaxed);
    }
}

/* ---- admission ---- */

uint64_t fcsp_sm_acquire(struct fcsp_dev *d, CUstream stream, uint64_t cost_ns)
{
    /* relaxed: the share is a value of its own; a live change applies from the next launch */
    uint32_t pct = atomic_load_explicit(&d->sm_limit_pct, memory_order_relaxed);
    if (!pct || pct >= 100 || !cost_ns) {
        fcsp_sm_count(d->gpu, cost_ns, 0);
        return 0;
    }
    struct fcsp_tenant_gpu *tg = &fcsp_g.tenant->gpu[d->gpu];
    uint64_t now = fcsp_coarse_ns();
    int borrowing = fcsp_g.cfg.sm_borrow && !gpu_contended(d->gpu, now);
    uint64_t inc = borrowing ? cost_ns : cost_ns * 100u / pct;
    uint64_t burst = fcsp_g.cfg.sm_burst_ns;
    /* The tenant may book up to the whole burst ahead, each stream half of it, so a busy stream cannot take the
     * tenant's burst from its other streams. While the tenant is not ahead of its share no stream can be, and
     * the stream's booking (a second CAS) is skipped. */
    uint64_t t_start = book(&tg->sm_tat_ns, now, inc);
    uint64_t s_start = t_start > now ? book(stream_tat(stream), now, inc) : 0;
    uint64_t deadline = t_start > burst ? t_start - burst : 0;
    uint64_t s_deadline = s_start > burst / 2 ? s_start - burst / 2 : 0;
    if (s_deadline > deadline)
        deadline = s_deadline;
    uint64_t waited = 0;
    uint64_t slice = fcsp_g.cfg.sm_slice_ns;
    int sliced = 0;
    if (deadline > now && slice > 1 && gpu_contended(d->gpu, now)) {
        /* While another capped tenant has work on the GPU, release throttled launches on slice boundaries of the
         * shared clock, so a tenant's work reaches the GPU in batches: without MPS the GPU time-slices between
         * processes, and a tenant trickling a kernel every few tens of microseconds forces a context switch on
         * its neighbours' every launch (an H100 victim's p50 went from 21 us to 400 us). The long-run rate is the
         * same: only the release time is rounded up. Each tenant's slices are offset (golden-ratio steps of its
         * index), so tenants do not all release their batches at the same instant and queue behind each other.
         * A tenant alone (or beside uncapped work only) has nobody to batch for: each launch waits just until
         * its own booking allows it, so its steps stay smooth (a lone decode tenant at 75% saw a p99 step of
         * 4 ms against 1.6 ms native when it waited for slices). */
        uint64_t phase = (uint64_t)fcsp_g.tenant_idx * (slice * 618 / 1000) % slice;
        deadline = (deadline - phase + slice - 1) / slice * slice + phase;
        sliced = 1;
    }
    if (deadline > now) {
        uint64_t t0 = fcsp_now_ns();
        if (deadline > t0) {
            wait_until(deadline);
            waited = fcsp_now_ns() - t0;
            /* relaxed: statistics */
            atomic_fetch_add_explicit(sliced ? &waits.sliced : &waits.paced, 1, memory_order_relaxed);
        }
    }
    fcsp_sm_count(d->gpu, cost_ns, waited);
    return waited;
}
