/* Configuration from the environment (standalone use) and the effective limits of this process's tenant. */
#ifndef FCSP_LIMITS_ENV_H
#define FCSP_LIMITS_ENV_H

#include <stdint.h>

#include "fcsp/limits.h"
#include "fcsp/region_layout.h"

struct fcsp_mem_spec {
    int set;
    uint64_t bytes;  /* absolute, or 0 when percent is used */
    double percent;  /* of the GPU's physical memory */
};

enum fcsp_on_failure { FCSP_ON_FAILURE_PASSTHROUGH = 0, FCSP_ON_FAILURE_FAIL = 1 };

struct fcsp_config {
    char tenant[FCSP_NAME_LEN]; /* FCSP_TENANT, or "proc-<pid>" */
    int tenant_from_env;
    int scheduler;              /* FCSP_SCHEDULER set: limits must come from the policy table */
    int on_failure;             /* enum fcsp_on_failure: only for a process that asked for no caps */
    int caps_asked;             /* a limit variable is set (even an invalid one) or FCSP_SCHEDULER: never uncapped */
    int any_env_limit;
    struct fcsp_mem_spec mem_all;                 /* FCSP_MEM_LIMIT */
    struct fcsp_mem_spec mem_dev[FCSP_MAX_GPUS];  /* FCSP_MEM_LIMIT_<ordinal> */
    uint32_t sm_all;                              /* FCSP_SM_LIMIT, 0 = none */
    uint32_t sm_dev[FCSP_MAX_GPUS];               /* FCSP_SM_LIMIT_<ordinal> */
    /* compute caps */
    int sm_borrow;               /* FCSP_SM_MODE=borrow: work-conserving (default hard) */
    int sm_spatial;              /* FCSP_SM_MODE=spatial: the share is an MPS partition (fcsp node), no time slices */
    int nccl_bypass;             /* FCSP_SM_NCCL_BYPASS (default 1): NCCL kernels are never throttled */
    uint64_t sm_burst_ns;        /* FCSP_SM_BURST_MS (default 10): how far ahead of its share a tenant may run */
    uint64_t sm_slice_ns;        /* FCSP_SM_SLICE_US (default 2000): throttled launches are released in slices */
    uint64_t sm_sample_ns;       /* FCSP_SM_SAMPLE_MS (default 20): one timed launch per function this often */
    uint64_t sm_default_wave_ns; /* FCSP_SM_DEFAULT_WAVE_US (default 20): cost of a wave not measured yet */
};

/* Reads FCSP_* variables. Each invalid value is reported on stderr in one line naming the variable, the value and
 * what is accepted; returns -1 if any was invalid (the caller then applies the failure policy). */
int fcsp_config_from_env(struct fcsp_config *c);

/* Whether fcsp has anything to enforce or account for in this process (else it stays inert). */
int fcsp_config_active(const struct fcsp_config *c);

/* This process's own limits for one GPU (CUDA ordinal, -1 if unknown), from its environment; 0 = none. */
void fcsp_env_limits(const struct fcsp_config *c, int ordinal, uint64_t total_bytes, uint64_t *mem_limit,
                     uint32_t *sm_limit);
/* A policy entry's limits for one GPU (its per-GPU entry, else its default); 0 = none. */
void fcsp_policy_limits(const struct fcsp_policy_entry *e, const char *uuid, uint64_t *mem_limit, uint32_t *sm_limit);
/* The smaller of two caps where 0 means none. */
uint64_t fcsp_min_cap(uint64_t a, uint64_t b);

#endif
