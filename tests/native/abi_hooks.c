/* Prototype check of interposer/hook_table.h against NVIDIA's own headers (tests/test_abi.py compiles this file;
 * compiling is the test: every mismatch is a static assertion that names the symbol).
 *
 * - FCSP_CUDA_HOOKS: our prototype must be NVIDIA's PFN_<base>_v<since><variant> from cudaTypedefs.h (so the
 *   since-version and the variant are checked too) and the type of the exported symbol as cuda.h declares it.
 * - FCSP_CUDA_USED: our prototype must be the type of the function cuda.h declares under that name.
 * - FCSP_NVML_HOOKS, FCSP_NVML_USED (when compiled with FCSP_ABI_HAVE_NVML and nvml.h on the include path):
 *   our prototype must be the type of the function nvml.h declares under that name.
 *
 * __CUDA_API_VERSION_INTERNAL makes cuda.h declare every ABI symbol under its own name (cuMemAlloc with the
 * pre-3.2 types, cuMemAlloc_v2, cuLaunchKernel_ptsz, ...) and cudaTypedefs.h the legacy PFN_*_v2000 types, as
 * NVIDIA's driver itself sees them.
 */
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>
#include <cudaTypedefs.h>
#ifdef FCSP_ABI_HAVE_NVML
#include <nvml.h>
#endif

#include "hook_table.h"

/* variant is expanded (FCSP_NO_VARIANT becomes nothing) before the second paste; base is pasted at once, never
 * expanded, so a cuda.h macro of the same name cannot rename it. */
#define FCSP_ABI_PASTE(a, b) a##b
#define FCSP_ABI_PASTE_VARIANT(a, b) FCSP_ABI_PASTE(a, b)

#define FCSP_ABI_CHECK_CUDA_HOOK(symbol, base, since, variant, ret, params, args)                                 \
    _Static_assert(__builtin_types_compatible_p(ret(*) params, FCSP_ABI_PASTE_VARIANT(PFN_##base##_v##since, variant)), \
                   "FCSP_CUDA_HOOKS " #symbol ": prototype differs from cudaTypedefs.h's PFN_" #base "_v" #since  \
                   " (" #variant ")");                                                                            \
    _Static_assert(__builtin_types_compatible_p(ret(*) params, __typeof__(&symbol)),                              \
                   "FCSP_CUDA_HOOKS " #symbol ": prototype differs from cuda.h's declaration of " #symbol);

#define FCSP_ABI_CHECK_USED(symbol, ret, params)                                                                  \
    _Static_assert(__builtin_types_compatible_p(ret(*) params, __typeof__(&symbol)),                              \
                   "used function " #symbol ": prototype differs from NVIDIA's declaration of " #symbol);

#define FCSP_ABI_CHECK_NVML_HOOK(symbol, ret, params, args)                                                       \
    _Static_assert(__builtin_types_compatible_p(ret(*) params, __typeof__(&symbol)),                              \
                   "FCSP_NVML_HOOKS " #symbol ": prototype differs from nvml.h's declaration of " #symbol);

FCSP_CUDA_HOOKS(FCSP_ABI_CHECK_CUDA_HOOK)
FCSP_CUDA_USED(FCSP_ABI_CHECK_USED)

#ifdef FCSP_ABI_HAVE_NVML
FCSP_NVML_HOOKS(FCSP_ABI_CHECK_NVML_HOOK)
FCSP_NVML_USED(FCSP_ABI_CHECK_USED)
#endif

/* An empty expansion (a broken macro) must not pass silently. */
#define FCSP_ABI_COUNT(...) +1
enum { fcsp_abi_cuda_hooks = 0 FCSP_CUDA_HOOKS(FCSP_ABI_COUNT) };
_Static_assert(fcsp_abi_cuda_hooks > 0, "FCSP_CUDA_HOOKS expanded to nothing");

int fcsp_abi_hooks_checked(void);
int fcsp_abi_hooks_checked(void) { return fcsp_abi_cuda_hooks; }
