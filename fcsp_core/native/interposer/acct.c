/* What every reservation-following account shares: settling a charge on what the driver reports it holds. */
#include "interposer/acct.h"

#include "interposer/admission.h"

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
}
