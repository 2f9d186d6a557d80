/* Devices as this process sees them (CUDA ordinals, NVML handles) mapped to GPUs of the node region (by UUID),
 * with this tenant's limits on each. */
#ifndef FCSP_GPU_MAP_H
#define FCSP_GPU_MAP_H

#include <stdatomic.h>
#include <stdint.h>

#include "fcsp/cuda_abi.h"
#include "fcsp/limits.h"
#include "fcsp/nvml_abi.h"

#define FCSP_MAX_ORDINALS 64

enum fcsp_dev_state { FCSP_DEV_UNKNOWN = 0, FCSP_DEV_READY = 1, FCSP_DEV_FAILED = 2 };

struct fcsp_dev {
    _Atomic int state;              /* fcsp_dev_state; READY stored with release after the fields */
    int gpu;                        /* index into the region's gpus[] and each tenant's gpu[] */
    int ordinal;                    /* CUDA ordinal in this process, -1 if only known through NVML */
    uint64_t total_bytes;           /* physical */
    _Atomic uint64_t limit_bytes;   /* this tenant's cap here, 0 = none; changed live by the heartbeat */
    _Atomic uint32_t sm_limit_pct;  /* 0 = none */
    uint32_t sm_count;              /* multiprocessors (0 if unknown) */
    char uuid[FCSP_UUID_LEN];
};

/* Whether any GPU of this process may have an SM cap: launches skip all compute-cap work while it is 0. */
extern _Atomic int fcsp_sm_possible;

/* The device of a CUDA ordinal, identified on first use; NULL if it cannot be identified. */
struct fcsp_dev *fcsp_dev_slow(CUdevice ordinal);
extern struct fcsp_dev fcsp_devs[FCSP_MAX_ORDINALS];

static inline struct fcsp_dev *fcsp_dev_by_ordinal(CUdevice ordinal)
{
    if ((unsigned)ordinal >= FCSP_MAX_ORDINALS)
        return NULL;
    struct fcsp_dev *d = &fcsp_devs[ordinal];
    /* acquire: pairs with the release store of READY, so gpu/limits are initialised */
    if (__builtin_expect(atomic_load_explicit(&d->state, memory_order_acquire) == FCSP_DEV_READY, 1))
        return d;
    return fcsp_dev_slow(ordinal);
}

/* The device of the calling thread's current context (where cuMemAlloc allocates). */
struct fcsp_dev *fcsp_dev_current(void);

/* The device behind an NVML handle; NULL if unknown. */
struct fcsp_dev *fcsp_dev_by_nvml(nvmlDevice_t handle);

/* Install a new policy entry for this tenant and recompute every known device's limits. */
struct fcsp_policy_entry;
void fcsp_devs_apply_policy(const struct fcsp_policy_entry *entry, int has_entry);

/* Set fcsp_sm_possible if the configuration or this tenant's policy entry has any SM cap. */
void fcsp_sm_recheck_possible(void);

/* Forget everything (fork child). */
void fcsp_devs_reset(void);

#endif
