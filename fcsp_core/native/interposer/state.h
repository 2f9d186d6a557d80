/* Process-wide state of the interposer and its lazy initialisation. */
#ifndef FCSP_STATE_H
#define FCSP_STATE_H

#include <stdatomic.h>
#include <sys/types.h>

#include "common/region.h"
#include "interposer/limits_env.h"

enum fcsp_mode {
    FCSP_MODE_UNINIT = 0,
    FCSP_MODE_ENFORCE = 1,     /* caps enforced, usage accounted in the node region */
    FCSP_MODE_PASSTHROUGH = 2, /* inert: not configured, or init failed with the pass-through policy */
    FCSP_MODE_CLOSED = 3       /* init failed with the fail-closed policy: device allocations are refused */
};

struct fcsp_state {
    struct fcsp_config cfg;
    struct fcsp_region_map region;
    struct fcsp_policy_map policy;          /* policy.p == NULL: no policy table */
    struct fcsp_policy_entry policy_entry;  /* this tenant's entry, when has_policy_entry */
    int has_policy_entry;
    uint64_t policy_generation;
    struct fcsp_tenant *tenant;
    struct fcsp_proc *proc;
    int tenant_idx;
    int proc_idx;
    pid_t pid;
};

extern struct fcsp_state fcsp_g;
extern _Atomic int fcsp_mode_v;

int fcsp_init_slow(void);

/* The mode, initialising on first use. Fast path: one acquire load (pairs with the release store that ends init,
 * so everything init wrote to fcsp_g is visible). */
static inline int fcsp_mode(void)
{
    int m = atomic_load_explicit(&fcsp_mode_v, memory_order_acquire);
    if (__builtin_expect(m != FCSP_MODE_UNINIT, 1))
        return m;
    return fcsp_init_slow();
}

#endif
