#include "interposer/sm_spatial.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "interposer/real_driver.h"
#include "interposer/state.h"

#define MAX_CLIENTS 256

/* Per region GPU: 0 not decided, 1 an MPS client (no time slices), -1 not one (time slices). */
static _Atomic int decided[FCSP_MAX_GPUS];

__attribute__((constructor)) static void spatial_env_at_load(void)
{
    fcsp_spatial_env();
}

void fcsp_spatial_env(void)
{
    const char *mode = getenv("FCSP_SM_MODE");
    if (!mode || strcmp(mode, "spatial") != 0)
        return;
    if (!getenv("CUDA_MPS_PIPE_DIRECTORY")) {
        const char *dir = getenv("FCSP_REGION_DIR");
        char pipe[512];
        snprintf(pipe, sizeof pipe, "%s/mps", dir && *dir ? dir : "/run/fcsp");
        setenv("CUDA_MPS_PIPE_DIRECTORY", pipe, 0);
    }
    const char *share = getenv("FCSP_SM_LIMIT");
    if (share && *share && !getenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"))
        setenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", share, 0);
}

static int is_mps_client(const struct fcsp_dev *d)
{
    fcsp_pfn_nvmlInit_v2 init = FCSP_REAL_NVML(nvmlInit_v2);
    fcsp_pfn_nvmlDeviceGetHandleByUUID by_uuid = FCSP_REAL_NVML(nvmlDeviceGetHandleByUUID);
    fcsp_pfn_nvmlDeviceGetMPSComputeRunningProcesses_v3 clients =
        FCSP_REAL_NVML(nvmlDeviceGetMPSComputeRunningProcesses_v3);
    nvmlDevice_t h;
    static nvmlProcessInfo_t procs[MAX_CLIENTS];
    unsigned int n = MAX_CLIENTS;
    if (!init || !by_uuid || !clients || init() != NVML_SUCCESS || by_uuid(d->uuid, &h) != NVML_SUCCESS ||
        clients(h, &n, procs) != NVML_SUCCESS)
        return 0;
    unsigned int self = (unsigned int)getpid();
    for (unsigned int i = 0; i < n && i < MAX_CLIENTS; i++)
        if (procs[i].pid == self)
            return 1;
    return 0;
}

int fcsp_spatial_on(struct fcsp_dev *d)
{
    if (!fcsp_g.cfg.sm_spatial)
        return 0;
    /* relaxed: the answer is a value of its own; deciding twice (two first launches) gives the same answer */
    int v = atomic_load_explicit(&decided[d->gpu], memory_order_relaxed);
    if (v)
        return v > 0;
    v = is_mps_client(d) ? 1 : -1;
    atomic_store_explicit(&decided[d->gpu], v, memory_order_relaxed);
    if (v > 0)
        fcsp_log(FCSP_LOG_INFO, "spatial mode: an MPS client of GPU %s: its SM share is the MPS partition",
                 d->uuid);
    else
        fcsp_log(FCSP_LOG_WARN, "FCSP_SM_MODE=spatial, but this process is not an MPS client of GPU %s (no MPS "
                                "server of its user there): its SM share is kept by time slices", d->uuid);
    return v > 0;
}
