/* Spatial mode (FCSP_SM_MODE=spatial): the tenant's SM share is its MPS active thread percentage, run by the node
 * daemon's MPS control daemon (fcsp_core/node/mps.py), instead of time slices.
 *
 * The share is enforced by the MPS server's limit, which `fcsp node` (root) sets per server from the policy; a
 * client's CUDA_MPS_ACTIVE_THREAD_PERCENTAGE can only lower it (measured on an H200: server 25%, client asking
 * 100% got 32 of 132 SMs). So time slices stand aside only for a client of a server of the node's own control
 * daemon: `fcsp node` lists those clients (pid and start time) in <region dir>/mps-clients, a root-owned file no
 * job can write. A job that asked for spatial mode but is not listed (no MPS on the node, another uid's server
 * running, its own MPS daemon, or not yet seen: the list is refreshed every second) keeps its share as time
 * slices. */
#ifndef FCSP_SM_SPATIAL_H
#define FCSP_SM_SPATIAL_H

#include "interposer/gpu_map.h"

/* Library load: with FCSP_SM_MODE=spatial, point the driver at the node's MPS pipe directory
 * ($FCSP_REGION_DIR/mps, default /run/fcsp/mps) and ask for the share (FCSP_SM_LIMIT) as the active thread
 * percentage, where the job did not set them itself. */
void fcsp_spatial_env(void);

/* Whether launches are left to MPS: spatial mode, and this process listed as a client of the node's MPS. Once
 * listed, one load; until then the list is read at most every 100 ms. */
int fcsp_spatial_on(void);

#endif
