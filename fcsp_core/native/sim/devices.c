/* Device enumeration and identity. */
#include <limits.h>
#include <string.h>

#include "sim_cuda.h"

#define SIM_DEVICE_NAME "fcsp simulated GPU"

SIM_EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (device == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (ordinal < 0 || ordinal >= g_sim_ngpus)
        return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGetCount(int *count)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (count == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *count = g_sim_ngpus;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (name == NULL || len <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    size_t n = strlen(SIM_DEVICE_NAME);
    if (n >= (size_t)len)
        n = (size_t)len - 1;
    memcpy(name, SIM_DEVICE_NAME, n);
    name[n] = '\0';
    return CUDA_SUCCESS;
}

/* The device's UUID; on MIG instances (FCSP_SIM_MIG=1) the v1 call gives the physical GPU's (device 0's), the v2
 * call the instance's own. */
static CUresult device_uuid(CUuuid *uuid, CUdevice dev, int instance)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (uuid == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    int which = g_sim_cfg.mig && !instance ? 0 : dev;
    memcpy(uuid->bytes, g_sim_sh->gpu[which].uuid, sizeof uuid->bytes);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
    return device_uuid(uuid, dev, 0);
}

SIM_EXPORT CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
    return device_uuid(uuid, dev, 1);
}

SIM_EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (bytes == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *bytes = (size_t)g_sim_sh->gpu[dev].total_bytes;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceTotalMem(unsigned int *bytes, CUdevice dev)
{
    size_t b;
    if (bytes == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = cuDeviceTotalMem_v2(&b, dev);
    if (rc == CUDA_SUCCESS)
        *bytes = b > UINT_MAX ? UINT_MAX : (unsigned int)b; /* the 32-bit ABI cannot say more */
    return rc;
}
