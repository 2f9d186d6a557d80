/* nvmlInit / nvmlShutdown, versions and error strings of the simulated NVML. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "nvml_sim.h"

#define NVML_SIM_DRIVER_VERSION "580.0-fcsp-sim"
#define NVML_SIM_NVML_VERSION "13.580.0-fcsp-sim"
#define NVML_SIM_CUDA_VERSION 13000

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_refs;
static struct sim_shared *g_node;

struct sim_shared *nvml_sim_node(void)
{
    pthread_mutex_lock(&g_mu);
    struct sim_shared *sh = g_node;
    pthread_mutex_unlock(&g_mu);
    return sh;
}

NVML_EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    nvmlReturn_t rc = NVML_SUCCESS;
    pthread_mutex_lock(&g_mu);
    if (g_refs == 0) {
        struct sim_config cfg;
        int mrc;
        if (sim_config_load(&cfg) != 0)
            rc = NVML_ERROR_INVALID_ARGUMENT;
        else if ((mrc = sim_state_map(&cfg, &g_node)) != 0)
            rc = mrc == -2 ? NVML_ERROR_INVALID_ARGUMENT : NVML_ERROR_DRIVER_NOT_LOADED;
    }
    if (rc == NVML_SUCCESS)
        g_refs++;
    pthread_mutex_unlock(&g_mu);
    return rc;
}

NVML_EXPORT nvmlReturn_t nvmlInit_v2(void)
{
    return nvmlInitWithFlags(0);
}

NVML_EXPORT nvmlReturn_t nvmlInit(void)
{
    return nvmlInitWithFlags(0);
}

NVML_EXPORT nvmlReturn_t nvmlShutdown(void)
{
    nvmlReturn_t rc = NVML_SUCCESS;
    pthread_mutex_lock(&g_mu);
    if (g_refs == 0) {
        rc = NVML_ERROR_UNINITIALIZED;
    } else if (--g_refs == 0) {
        sim_state_unmap(g_node); /* the next nvmlInit reads the environment again */
        g_node = NULL;
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

static nvmlReturn_t copy_string(char *dst, unsigned int length, const char *src)
{
    if (dst == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

NVML_EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    if (nvml_sim_node() == NULL)
        return NVML_ERROR_UNINITIALIZED;
    return copy_string(version, length, NVML_SIM_DRIVER_VERSION);
}

NVML_EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    return copy_string(version, length, NVML_SIM_NVML_VERSION);
}

NVML_EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion)
{
    if (cudaDriverVersion == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *cudaDriverVersion = NVML_SIM_CUDA_VERSION;
    return NVML_SUCCESS;
}

NVML_EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion)
{
    return nvmlSystemGetCudaDriverVersion(cudaDriverVersion);
}

NVML_EXPORT const char *nvmlErrorString(nvmlReturn_t result)
{
    switch ((int)result) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 5: return "Already Initialized";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 8: return "Insufficient External Power";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 11: return "Interrupt Request Issue";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 14: return "Corrupted infoROM";
    case 15: return "GPU is lost";
    case 16: return "GPU requires restart";
    case 17: return "The operating system has blocked the request.";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    case 19: return "In use by another client";
    case 20: return "Insufficient Memory";
    case 21: return "No data";
    case 22: return "Requested vGPU operation is not available on target device";
    case 23: return "Insufficient Resources";
    case 24: return "Frequency not supported";
    case 25: return "Argument version mismatch";
    case 26: return "Deprecated";
    case 27: return "Not ready";
    case 28: return "GPU not found";
    case 29: return "Invalid state";
    default: return "Unknown Error";
    }
}
