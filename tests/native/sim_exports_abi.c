/* Prototype check of the simulated driver's export list (fcsp_core/native/sim/sim_exports.h) against NVIDIA's own
 * headers; tests/test_sim.py compiles this file, and compiling is the test.
 *
 * cuda.h and cudaTypedefs.h stand in for fcsp/cuda_abi.h (its include guard is defined first), so that
 * - sim_exports.h's declaration of every exported symbol meets cuda.h's declaration of the same symbol (with
 *   __CUDA_API_VERSION_INTERNAL, every ABI symbol under its own name: cuMemAlloc with the pre-3.2 types,
 *   cuMemAlloc_v2, cuLaunchKernel_ptsz, ...): a different prototype does not compile;
 * - for the entries of the default stream, the prototype is cudaTypedefs.h's PFN_<base>_v<since>, which checks the
 *   base name and since-version that cuGetProcAddress answers with. (A per-thread entry's PFN ends in _ptsz or
 *   _ptds, which the list does not say; its symbol's declaration is checked.)
 */
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>
#include <cudaTypedefs.h>

#define FCSP_CUDA_ABI_H /* NVIDIA's declarations instead of ours */
#include "sim_exports.h"

#define SIM_ABI_PASTE(a, b) a##b
#define SIM_ABI_PFN(base, since, per_thread) SIM_ABI_PASTE(SIM_ABI_PFN_, per_thread)(base, since)
#define SIM_ABI_PFN_0(base, since) PFN_##base##_v##since
#define SIM_ABI_PFN_1(base, since) __typeof__(&SIM_ABI_NO_PFN)

int SIM_ABI_NO_PFN(void); /* a stand-in type; never defined */

#define SIM_ABI_CHECK(symbol, base, since, per_thread, ret, params)                                                \
    _Static_assert(__builtin_types_compatible_p(ret(*) params, __typeof__(&symbol)),                              \
                   "sim_exports.h " #symbol ": prototype differs from cuda.h's declaration of " #symbol);          \
    _Static_assert(per_thread || __builtin_types_compatible_p(ret(*) params, SIM_ABI_PFN(base, since, per_thread)), \
                   "sim_exports.h " #symbol ": prototype differs from cudaTypedefs.h's PFN_" #base "_v" #since);

SIM_CUDA_EXPORTS(SIM_ABI_CHECK)

#define SIM_ABI_COUNT(...) +1
enum { sim_abi_exports = 0 SIM_CUDA_EXPORTS(SIM_ABI_COUNT) };
_Static_assert(sim_abi_exports > 100, "SIM_CUDA_EXPORTS expanded to too little");

int sim_exports_checked(void);
int sim_exports_checked(void) { return sim_abi_exports; }
