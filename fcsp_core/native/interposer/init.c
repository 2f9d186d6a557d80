/* Lazy initialisation on first CUDA or NVML use (never in the constructor: the library is also preloaded into
 * shells and tools that never touch a GPU), the failure policy, fork and exit. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "fcsp/fcsp_api.h"
#include "interposer/alloc_map.h"
#include "interposer/gpu_map.h"
#include "interposer/heartbeat.h"
#include "interposer/kernel_cost.h"
#include "interposer/sm_limiter.h"
#include "interposer/proc_slot.h"
#include "interposer/state.h"

struct fcsp_state fcsp_g;
_Atomic int fcsp_mode_v;

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static _Thread_local int in_init;

static void atfork_prepare(void) { pthread_mutex_lock(&init_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&init_lock); }

/* The child is a new process: it must not touch the parent's slot or allocation map. It initialises again on its
 * first CUDA use, with a slot of its own. Only this thread exists here, so plain resets are safe. */
static void atfork_child(void)
{
    pthread_mutex_init(&init_lock, NULL);
    if (fcsp_g.region.r)
        fcsp_region_map_close(&fcsp_g.region);
    if (fcsp_g.policy.p)
        fcsp_policy_map_close(&fcsp_g.policy);
    memset(&fcsp_g, 0, sizeof fcsp_g);
    fcsp_g.region.fd = fcsp_g.policy.fd = -1;
    fcsp_map_reset();
    fcsp_devs_reset();
    fcsp_cost_reset();
    fcsp_heartbeat_forget();
    /* relaxed: single-threaded child */
    atomic_store_explicit(&fcsp_mode_v, FCSP_MODE_UNINIT, memory_order_relaxed);
}

static void register_atfork(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

/* A process that asked for caps (a limit variable, a scheduler) never runs without them: it is refused. Only one
 * that asked for none (accounting only, FCSP_TENANT alone) may pass through, if FCSP_ON_INIT_FAILURE says so. */
static int fail(const char *why)
{
    if (fcsp_g.cfg.caps_asked) {
        fcsp_log(FCSP_LOG_ERROR, "cannot initialise: %s; refusing GPU memory allocations (fail-closed: this process "
                                 "asked for %s, so it never runs uncapped)",
                 why, fcsp_g.cfg.scheduler ? "its scheduler's caps" : "caps");
        return FCSP_MODE_CLOSED;
    }
    if (fcsp_g.cfg.on_failure == FCSP_ON_FAILURE_FAIL) {
        fcsp_log(FCSP_LOG_ERROR, "cannot initialise: %s; refusing GPU memory allocations (fail-closed policy: "
                                 "FCSP_ON_INIT_FAILURE=fail)",
                 why);
        return FCSP_MODE_CLOSED;
    }
    fcsp_log(FCSP_LOG_ERROR, "cannot initialise: %s; running without accounting (it asked for no caps; "
                             "FCSP_ON_INIT_FAILURE=passthrough)",
             why);
    return FCSP_MODE_PASSTHROUGH;
}

static int load_policy(const char *dir, char *why, size_t whylen)
{
    char err[FCSP_ERR_LEN];
    int rc = fcsp_policy_map_open(dir, &fcsp_g.policy, err, sizeof err);
    if (rc == FCSP_ENOENT)
        return 0;
    if (rc) {
        snprintf(why, whylen, "%s", err);
        return -1;
    }
    fcsp_g.policy_generation = fcsp_policy_generation(fcsp_g.policy.p);
    struct fcsp_policy_entry e;
    if (fcsp_policy_lookup(fcsp_g.policy.p, fcsp_g.cfg.tenant, &e) == FCSP_OK) {
        if (e.uid >= 0 && (uid_t)e.uid != geteuid()) {
            snprintf(why, whylen, "the limits of tenant %s belong to uid %lld, not %u", fcsp_g.cfg.tenant,
                     (long long)e.uid, (unsigned)geteuid());
            return -1;
        }
        fcsp_g.policy_entry = e;
        fcsp_g.has_policy_entry = 1;
        /* The entry's writer picks spatial mode, never the job: under MPS each client of a tenant gets the whole
         * partition, more than the tenant's time share. Read once, at start. */
        if (fcsp_g.cfg.sm_spatial && e.sm_mode != FCSP_POLICY_SM_SPATIAL)
            fcsp_log(FCSP_LOG_WARN, "FCSP_SM_MODE=spatial: tenant %s's policy entry keeps its SM share in time "
                                    "slices (the scheduler picks spatial mode, not the job)", fcsp_g.cfg.tenant);
        fcsp_g.cfg.sm_spatial = e.sm_mode == FCSP_POLICY_SM_SPATIAL;
    }
    return 0;
}

static int do_init(void)
{
    char why[PATH_MAX + 512], err[FCSP_ERR_LEN], dir[PATH_MAX];
    pthread_once(&atfork_once, register_atfork);
    fcsp_g.region.fd = fcsp_g.policy.fd = -1;
    if (fcsp_config_from_env(&fcsp_g.cfg) != 0)
        return fail("invalid configuration (see the message above)");
    if (!fcsp_config_active(&fcsp_g.cfg))
        return FCSP_MODE_PASSTHROUGH; /* nothing asked of us: stay inert and silent */
    if (fcsp_region_dir_default(dir, sizeof dir, err, sizeof err) != FCSP_OK)
        return fail(err);
    if (fcsp_region_map_open(dir, 1, &fcsp_g.region, err, sizeof err) != FCSP_OK)
        return fail(err);
    if (load_policy(dir, why, sizeof why) != 0)
        return fail(why);
    if (fcsp_g.cfg.scheduler && !fcsp_g.has_policy_entry) {
        snprintf(why, sizeof why, "no limits for tenant %s in the policy table %s/policy (FCSP_SCHEDULER=%s)",
                 fcsp_g.cfg.tenant, dir, getenv("FCSP_SCHEDULER"));
        return fail(why);
    }
    fcsp_sm_recheck_possible();
    if (fcsp_map_init() != 0)
        return fail("cannot map the allocation table");
    if (fcsp_attach(&fcsp_g.region, &fcsp_g.cfg, fcsp_g.has_policy_entry, &fcsp_g.tenant_idx, &fcsp_g.proc_idx, err,
                    sizeof err) != FCSP_OK)
        return fail(err);
    fcsp_g.tenant = &fcsp_g.region.r->tenants[fcsp_g.tenant_idx];
    fcsp_g.proc = &fcsp_g.region.r->procs[fcsp_g.proc_idx];
    fcsp_g.pid = getpid();
    fcsp_heartbeat_start();
    fcsp_log(FCSP_LOG_INFO, "tenant %s, process slot %d, region %s", fcsp_g.cfg.tenant, fcsp_g.proc_idx,
             fcsp_g.region.path);
    return FCSP_MODE_ENFORCE;
}

int fcsp_init_slow(void)
{
    if (in_init)
        return FCSP_MODE_PASSTHROUGH; /* a driver call made by init itself */
    pthread_mutex_lock(&init_lock);
    int m = atomic_load_explicit(&fcsp_mode_v, memory_order_acquire);
    if (m == FCSP_MODE_UNINIT) {
        in_init = 1;
        m = do_init();
        in_init = 0;
        /* release: fcsp_mode()'s acquire load makes everything do_init wrote visible */
        atomic_store_explicit(&fcsp_mode_v, m, memory_order_release);
    }
    pthread_mutex_unlock(&init_lock);
    return m;
}

__attribute__((destructor)) static void fcsp_fini(void)
{
    if (atomic_load_explicit(&fcsp_mode_v, memory_order_acquire) != FCSP_MODE_ENFORCE || fcsp_g.pid != getpid())
        return;
    fcsp_heartbeat_stop();
    fcsp_sm_flush();
    fcsp_detach(&fcsp_g.region, fcsp_g.tenant_idx, fcsp_g.proc_idx);
}
