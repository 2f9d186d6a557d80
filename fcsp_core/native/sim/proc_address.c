/* cuGetProcAddress: like the driver, picks for a base name the variant with the highest version not above the
 * caller's CUDA version, preferring the per-thread-default-stream form when asked, and returns the address of the
 * exported symbol itself (so dlsym and cuGetProcAddress agree, which interposers rely on). The table comes from the
 * same list as the exports (sim_exports.h). */
#include <string.h>

#include "sim_cuda.h"

struct proc_entry {
    const char *base;
    const char *symbol;
    int since;
    int per_thread;
    void *fn;
};

#define SIM_PROC_ENTRY(symbol, base, since, per_thread, ret, params) {#base, #symbol, since, per_thread, (void *)&symbol},
static const struct proc_entry g_table[] = {SIM_CUDA_EXPORTS(SIM_PROC_ENTRY)};
#undef SIM_PROC_ENTRY

static CUresult resolve(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                        CUdriverProcAddressQueryResult *status)
{
    if (symbol == NULL || pfn == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    const cuuint64_t known = CU_GET_PROC_ADDRESS_LEGACY_STREAM | CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
    if ((flags & ~known) != 0) {
        *pfn = NULL;
        return CUDA_ERROR_INVALID_VALUE;
    }
    int want_pt = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
    const struct proc_entry *best = NULL, *best_pt = NULL;
    int named = 0;
    for (size_t i = 0; i < sizeof g_table / sizeof g_table[0]; i++) {
        const struct proc_entry *e = &g_table[i];
        if (strcmp(e->base, symbol) != 0)
            continue;
        named = 1;
        if (e->since > cudaVersion)
            continue;
        const struct proc_entry **slot = e->per_thread ? &best_pt : &best;
        if (*slot == NULL || e->since > (*slot)->since)
            *slot = e;
    }
    const struct proc_entry *pick = (want_pt && best_pt) ? best_pt : best;
    if (pick == NULL) {
        *pfn = NULL;
        if (status)
            *status = named ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
        return CUDA_ERROR_NOT_FOUND;
    }
    *pfn = pick->fn;
    if (status)
        *status = CU_GET_PROC_ADDRESS_SUCCESS;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                                        CUdriverProcAddressQueryResult *status)
{
    return resolve(symbol, pfn, cudaVersion, flags, status);
}

SIM_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags)
{
    return resolve(symbol, pfn, cudaVersion, flags, NULL);
}
