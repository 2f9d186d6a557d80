/* Pointers to the real driver's functions (libcuda.so.1 and libnvidia-ml.so.1), one per entry of hook_table.h.
 * Resolved once, on first use, with the real dlsym on the real libraries' handles. */
#ifndef FCSP_REAL_DRIVER_H
#define FCSP_REAL_DRIVER_H

#include <stdatomic.h>

#include "fcsp/cuda_abi.h"
#include "fcsp/nvml_abi.h"
#include "interposer/hook_table.h"

#define FCSP_PFN_TYPEDEF(sym, base, since, variant, ret, params, args) typedef ret(*fcsp_pfn_##sym) params;
#define FCSP_PFN_TYPEDEF_USED(sym, ret, params) typedef ret(*fcsp_pfn_##sym) params;
#define FCSP_PFN_TYPEDEF_NVML(sym, ret, params, args) typedef ret(*fcsp_pfn_##sym) params;
FCSP_CUDA_HOOKS(FCSP_PFN_TYPEDEF)
FCSP_CUDA_USED(FCSP_PFN_TYPEDEF_USED)
FCSP_NVML_HOOKS(FCSP_PFN_TYPEDEF_NVML)
FCSP_NVML_USED(FCSP_PFN_TYPEDEF_USED)

#define FCSP_REAL_FIELD(sym, ...) fcsp_pfn_##sym sym;
struct fcsp_real_cuda {
    FCSP_CUDA_HOOKS(FCSP_REAL_FIELD)
    FCSP_CUDA_USED(FCSP_REAL_FIELD)
};
struct fcsp_real_nvml {
    FCSP_NVML_HOOKS(FCSP_REAL_FIELD)
    FCSP_NVML_USED(FCSP_REAL_FIELD)
};

extern struct fcsp_real_cuda fcsp_real;
extern struct fcsp_real_nvml fcsp_real_nvml;

typedef void *(*fcsp_dlsym_fn)(void *, const char *);
/* glibc's dlsym, found with dlvsym so our own exported dlsym is never in the way. */
fcsp_dlsym_fn fcsp_real_dlsym(void);

/* Resolve every pointer once (idempotent, thread-safe); 0 if the library was found. */
int fcsp_real_cuda_resolve(void);
int fcsp_real_nvml_resolve(void);

/* Set (release) once the pointer tables are final: fast paths read them after one acquire load of this flag. */
extern _Atomic int fcsp_real_cuda_ready, fcsp_real_nvml_ready;

/* The real function for a wrapper, resolving on first use; NULL if the real library lacks it. */
#define FCSP_REAL(sym)                                                                                              \
    ((__builtin_expect(atomic_load_explicit(&fcsp_real_cuda_ready, memory_order_acquire), 1) ||                    \
      fcsp_real_cuda_resolve() == 0)                                                                               \
         ? fcsp_real.sym                                                                                            \
         : NULL)
#define FCSP_REAL_NVML(sym)                                                                                         \
    ((__builtin_expect(atomic_load_explicit(&fcsp_real_nvml_ready, memory_order_acquire), 1) ||                    \
      fcsp_real_nvml_resolve() == 0)                                                                               \
         ? fcsp_real_nvml.sym                                                                                       \
         : NULL)

#endif
