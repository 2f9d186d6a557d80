/* Compute caps: a tenant gets at most its SM share of each GPU's time. Two levels of token bucket, both in the
 * GCRA form (one theoretical-arrival-time word, advanced by compare-and-swap): the tenant's, in the node region,
 * shared by all its processes; and one per stream inside the process, so a busy stream cannot book the tenant's
 * whole burst ahead of its other streams. Costs are nanoseconds of GPU time (kernel_cost.c). */
#ifndef FCSP_SM_LIMITER_H
#define FCSP_SM_LIMITER_H

#include <stdint.h>

#include "fcsp/cuda_abi.h"
#include "interposer/gpu_map.h"

/* Block until this tenant may submit cost_ns of GPU time on d (no wait when under its cap). Returns the time it
 * waited, in ns. */
uint64_t fcsp_sm_acquire(struct fcsp_dev *d, CUstream stream, uint64_t cost_ns);

/* Process-local counters, added to the tenant's by fcsp_sm_flush (heartbeat, exit). */
void fcsp_sm_count(int gpu, uint64_t granted_ns, uint64_t waited_ns);
void fcsp_sm_flush(void);

/* CLOCK_MONOTONIC_COARSE in ns: a few ns to read, a few ms behind; fast-path decisions only. */
uint64_t fcsp_coarse_ns(void);

#endif
