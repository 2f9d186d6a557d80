/* Spatial mode (FCSP_SM_MODE=spatial): the tenant's SM share is its MPS active thread percentage, run by the node
 * daemon's MPS control daemon (fcsp_core/node/mps.py), instead of time slices.
 *
 * The share is enforced by the MPS server's limit, which `fcsp node` (root) sets per server from the policy; a
 * client's CUDA_MPS_ACTIVE_THREAD_PERCENTAGE can only lower it (measured on an H200: server 25%, client asking
 * 100% got 32 of 132 SMs). So time slices stand aside only while this process really is an MPS client of the GPU
 * (NVML lists it among the MPS server's clients); a job that asked for spatial mode but is not one (no MPS on the
 * node, another uid's server running, the pipe directory out of its reach) keeps its share as time slices. */
#ifndef FCSP_SM_SPATIAL_H
#define FCSP_SM_SPATIAL_H

#include "interposer/gpu_map.h"

/* Library load: with FCSP_SM_MODE=spatial, point the driver at the node's MPS pipe directory
 * ($FCSP_REGION_DIR/mps, default /run/fcsp/mps) and ask for the share (FCSP_SM_LIMIT) as the active thread
 * percentage, where the job did not set them itself. */
void fcsp_spatial_env(void);

/* Whether launches on d are left to MPS (spatial mode, and this process an MPS client of d). Decided once per GPU
 * on the first launch, then one load. */
int fcsp_spatial_on(struct fcsp_dev *d);

#endif
