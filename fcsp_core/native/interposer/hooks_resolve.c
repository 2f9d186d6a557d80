/* How applications reach the driver: dlsym (handles, RTLD_DEFAULT, RTLD_NEXT) and cuGetProcAddress(_v2). Both hand
 * out our wrappers for hooked names and forward everything else untouched (cuGetExportTable included). */
#include <dlfcn.h>

#include "interposer/hook_lookup.h"
#include "interposer/real_driver.h"

/* No libc string calls on this path: sanitizer runtimes call dlsym while they initialise, before their own string
 * interceptors can run. */
FCSP_NO_SANITIZE static int maybe_hooked(const char *name)
{
    return name && ((name[0] == 'c' && name[1] == 'u') ||
                    (name[0] == 'n' && name[1] == 'v' && name[2] == 'm' && name[3] == 'l'));
}

FCSP_EXPORT FCSP_NO_SANITIZE void *dlsym(void *handle, const char *name)
{
    fcsp_dlsym_fn real = fcsp_real_dlsym();
    if (maybe_hooked(name)) {
        const struct fcsp_hook *h = fcsp_hook_by_name(name);
        if (h) {
            if (handle == RTLD_DEFAULT || handle == RTLD_NEXT)
                return h->wrapper;
            /* A real handle: hand out the wrapper only where the library really has the symbol. */
            return real(handle, name) ? h->wrapper : NULL;
        }
    }
    /* Tail call (compiled as a jump, checked by tests/test_resolve.py): glibc then sees the application's return
     * address, so RTLD_NEXT stays relative to the caller, not to us. */
    return real(handle, name);
}

FCSP_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags)
{
    fcsp_pfn_cuGetProcAddress real = FCSP_REAL(cuGetProcAddress);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    CUresult rc = real(symbol, pfn, cudaVersion, flags);
    if (rc == CUDA_SUCCESS && pfn && *pfn && symbol)
        *pfn = fcsp_hook_swap_proc(symbol, *pfn, cudaVersion, flags);
    return rc;
}

FCSP_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                                         CUdriverProcAddressQueryResult *status)
{
    fcsp_pfn_cuGetProcAddress_v2 real = FCSP_REAL(cuGetProcAddress_v2);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    CUresult rc = real(symbol, pfn, cudaVersion, flags, status);
    if (rc == CUDA_SUCCESS && pfn && *pfn && symbol)
        *pfn = fcsp_hook_swap_proc(symbol, *pfn, cudaVersion, flags);
    return rc;
}
