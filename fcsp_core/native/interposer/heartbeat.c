/* The heartbeat thread of an enforcing process: every 100 ms it stamps this process's slot (a reaper looks at
 * /proc only for slots whose beat went stale), applies the policy table's changes live (`fcsp limit`: poll here,
 * recompute in gpu_map.c) and flushes the SM-time counters (sm_limiter.c). */
#include "interposer/heartbeat.h"

#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "fcsp/fcsp_api.h"
#include "interposer/bg_thread.h"
#include "interposer/gpu_map.h"
#include "interposer/sm_limiter.h"
#include "interposer/state.h"

/* If the policy table changed: this tenant's entry (or *has_entry = 0 if none); 1 when the limits must be
 * recomputed. Only this thread writes policy_generation after init. */
static int policy_poll(struct fcsp_policy_entry *entry, int *has_entry)
{
    if (!fcsp_g.policy.p) {
        /* A manager may create the table after we started (`fcsp limit` on a standalone tenant): look for it
         * about once a second. */
        static unsigned polls;
        char dir[PATH_MAX], err[FCSP_ERR_LEN];
        if (++polls % 10 != 0 || fcsp_region_dir_default(dir, sizeof dir, err, sizeof err) != FCSP_OK ||
            fcsp_policy_map_open(dir, &fcsp_g.policy, err, sizeof err) != FCSP_OK)
            return 0;
    }
    uint64_t gen = fcsp_policy_generation(fcsp_g.policy.p);
    if (gen == fcsp_g.policy_generation) /* only the heartbeat thread writes it after init */
        return 0;
    fcsp_g.policy_generation = gen;
    /* An entry for another uid's tenant of the same name is not ours (a scheduler registering its name later must
     * not hand its caps to a process that took the name first). */
    if (fcsp_policy_lookup(fcsp_g.policy.p, fcsp_g.cfg.tenant, entry) == FCSP_OK &&
        (entry->uid < 0 || (uid_t)entry->uid == geteuid())) {
        *has_entry = 1;
        return 1;
    }
    /* Gone from the table: under a scheduler keep the last limits (the job is ending), else fall back to env. */
    *has_entry = 0;
    return !fcsp_g.cfg.scheduler;
}

#define HEARTBEAT_MS 100

static _Atomic int hb_stop;
static _Atomic int hb_running;

static void *heartbeat_main(void *arg)
{
    (void)arg;
    /* relaxed: the stop flag orders nothing; the thread only has to notice it eventually */
    while (!atomic_load_explicit(&hb_stop, memory_order_relaxed)) {
        if (fcsp_g.proc) /* relaxed: a liveness timestamp, nothing is published with it */
            atomic_store_explicit(&fcsp_g.region.r->header.proc_beat_ms[fcsp_g.proc_idx], fcsp_now_ms(),
                                  memory_order_relaxed);
        struct fcsp_policy_entry e;
        int has;
        if (policy_poll(&e, &has))
            fcsp_devs_apply_policy(&e, has);
        fcsp_sm_flush();
        struct timespec ts = {.tv_sec = 0, .tv_nsec = HEARTBEAT_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    atomic_store_explicit(&hb_running, 0, memory_order_relaxed);
    return NULL;
}

void fcsp_heartbeat_start(void)
{
    int expected = 0;
    /* relaxed: only elects the one starter */
    if (!atomic_compare_exchange_strong_explicit(&hb_running, &expected, 1, memory_order_relaxed,
                                                 memory_order_relaxed))
        return;
    atomic_store_explicit(&hb_stop, 0, memory_order_relaxed);
    int rc = fcsp_start_bg_thread(heartbeat_main);
    if (rc != 0) {
        atomic_store_explicit(&hb_running, 0, memory_order_relaxed);
        fcsp_log(FCSP_LOG_WARN, "cannot start the heartbeat thread (%s): live limit changes will not apply",
                 strerror(rc));
    }
}

void fcsp_heartbeat_stop(void)
{
    atomic_store_explicit(&hb_stop, 1, memory_order_relaxed);
}

void fcsp_heartbeat_forget(void)
{
    atomic_store_explicit(&hb_running, 0, memory_order_relaxed);
    atomic_store_explicit(&hb_stop, 0, memory_order_relaxed);
}
