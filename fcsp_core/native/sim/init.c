/* cuInit, the driver version, and the node this process attached to. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "sim_cuda.h"

struct sim_config g_sim_cfg;
struct sim_shared *g_sim_sh;
int g_sim_slot = -1;
int g_sim_ngpus;

static pthread_mutex_t g_init_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int g_init_done;

int sim_is_initialized(void)
{
    /* acquire: pairs with the release in cuInit, so g_sim_cfg and g_sim_sh are seen fully written */
    return atomic_load_explicit(&g_init_done, memory_order_acquire);
}

CUresult sim_require_init(void)
{
    return sim_is_initialized() ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
}

CUresult sim_check_device(CUdevice dev)
{
    if (!sim_is_initialized())
        return CUDA_ERROR_NOT_INITIALIZED;
    return (dev >= 0 && dev < g_sim_ngpus) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

CUresult sim_charge(int dev, uint64_t bytes)
{
    return sim_mem_charge(g_sim_sh, g_sim_slot, dev, bytes) == 0 ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

void sim_uncharge(int dev, uint64_t bytes)
{
    sim_mem_uncharge(g_sim_sh, g_sim_slot, dev, bytes);
}

SIM_EXPORT CUresult cuInit(unsigned int Flags)
{
    if (Flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (sim_is_initialized())
        return CUDA_SUCCESS;
    CUresult rc = CUDA_SUCCESS;
    pthread_mutex_lock(&g_init_mu);
    if (!sim_is_initialized()) {
        struct sim_config cfg;
        struct sim_shared *sh = NULL;
        int mrc;
        if (sim_config_load(&cfg) != 0) {
            rc = CUDA_ERROR_INVALID_VALUE;
        } else if ((mrc = sim_state_map(&cfg, &sh)) != 0) {
            rc = mrc == -2 ? CUDA_ERROR_INVALID_VALUE : CUDA_ERROR_OPERATING_SYSTEM;
        } else {
            int slot = sim_proc_register(sh);
            if (slot < 0) {
                fprintf(stderr, "fcsp-sim: the process table of the simulator state is full\n");
                sim_state_unmap(sh);
                rc = CUDA_ERROR_OPERATING_SYSTEM;
            } else {
                g_sim_cfg = cfg;
                g_sim_sh = sh;
                g_sim_slot = slot;
                g_sim_ngpus = (int)sh->ngpus;
                /* release: publishes the globals above to sim_is_initialized() */
                atomic_store_explicit(&g_init_done, 1, memory_order_release);
            }
        }
    }
    pthread_mutex_unlock(&g_init_mu);
    return rc;
}

SIM_EXPORT CUresult cuDriverGetVersion(int *driverVersion)
{
    if (driverVersion == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *driverVersion = SIM_DRIVER_VERSION;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGetExportTable(const void **ppExportTable, const CUuuid *pExportTableId)
{
    if (ppExportTable)
        *ppExportTable = NULL;
    return CUDA_ERROR_NOT_SUPPORTED; /* the runtime's private tables do not exist here */
}
