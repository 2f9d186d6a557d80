/* What every reservation-following account shares: settling a charge on what the driver reports it holds. */
#include "interposer/acct.h"

#include "interposer/admission.h"

struct fcsp_dev *fcsp_dev_to_charge(CUdevice ordinal, int *refuse)
{
    struct fcsp_dev *d = fcsp_dev_by_ordinal(ordinal);
    *refuse = 0;
    if (__builtin_expect(d != NULL, 1))
        return d;
    fcsp_pfn_cuDeviceGet get = FCSP_REAL(cuDeviceGet);
    CUdevice dev;
    *refuse = get && get(&dev, ordinal) == CUDA_SUCCESS;
    return NULL;
}

struct fcsp_dev *fcsp_dev_current_to_charge(int *refuse)
{
    fcsp_pfn_cuCtxGetDevice get = FCSP_REAL(cuCtxGetDevice);
    CUdevice dev;
    *refuse = 0;
    return get && get(&dev) == CUDA_SUCCESS ? fcsp_dev_to_charge(dev, refuse) : NULL;
}

void fcsp_settle(struct fcsp_dev *d, uint64_t *charged, uint64_t reserved)
{
    if (reserved < *charged)
        fcsp_release(d, *charged - reserved);
    else if (reserved > *charged)
        fcsp_charge(d, reserved - *charged);
    *charged = reserved;
}

void fcsp_acct_reset(void)
{
    fcsp_vmm_reset();
    fcsp_pool_reset();
    fcsp_gmem_reset();
    fcsp_module_reset();
}
