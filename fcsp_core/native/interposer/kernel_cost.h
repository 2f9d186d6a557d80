/* What a launch costs in GPU time, learned from the GPU itself.
 *
 * Per function (and per graph exec) the process keeps an estimate of the GPU time of one wave; a launch costs
 * waves x that, where waves = ceil(blocks / (SMs x resident blocks per SM)) (cuOccupancyMaxActiveBlocksPerMultiprocessor,
 * cached per block size). The estimate comes from sampled launches timed with a pair of CUDA events around them
 * (the first 8 launches of each function, then one every FCSP_SM_SAMPLE_MS): a sampler thread reads the events when
 * the GPU has run them. The estimate is the smallest of the last 8 samples, since a kernel delayed behind another
 * tenant's kernels reads longer than it ran. Functions whose name starts with ncclDevKernel/ncclKernel (NCCL's
 * collectives) are recognised once, by name. */
#ifndef FCSP_KERNEL_COST_H
#define FCSP_KERNEL_COST_H

#include <stdint.h>

#include "fcsp/cuda_abi.h"
#include "interposer/gpu_map.h"

enum fcsp_fn_class { FCSP_FN_UNKNOWN = 0, FCSP_FN_COMPUTE = 1, FCSP_FN_NCCL = 2 };

struct fcsp_fn; /* opaque: one per CUfunction / CUgraphExec seen */

/* The entry of a function (graph = 0) or graph exec (graph = 1); NULL if the table is full. */
struct fcsp_fn *fcsp_fn_get(const void *handle, int graph);
enum fcsp_fn_class fcsp_fn_class(struct fcsp_fn *fn);
/* Estimated GPU time of a launch of blocks x threads (dynamic shared memory smem) on d; *waves set. */
uint64_t fcsp_fn_cost(struct fcsp_fn *fn, struct fcsp_dev *d, uint64_t blocks, unsigned threads, unsigned smem,
                      uint64_t *waves);

/* While the first timed launch of fn is in flight (its cost unknown), wait for it (at most 2 s): launches queued
 * behind an unmeasured kernel would otherwise all pass at the default cost. Returns 1 if it waited. */
int fcsp_fn_wait_measured(struct fcsp_fn *fn);

/* Sampling: if this launch should be timed, begin returns a token (else NULL); the launch is then made between
 * begin and end. */
struct fcsp_sample;
struct fcsp_sample *fcsp_sample_begin(struct fcsp_fn *fn, CUstream stream, uint64_t waves);
void fcsp_sample_end(struct fcsp_sample *s, CUstream stream, CUresult launch_rc);

/* Fork child: forget everything. */
void fcsp_cost_reset(void);

#endif
