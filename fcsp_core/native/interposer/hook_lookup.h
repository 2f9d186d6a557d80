/* The hook descriptors derived from hook_table.h, and the lookups dlsym and cuGetProcAddress use. */
#ifndef FCSP_HOOK_LOOKUP_H
#define FCSP_HOOK_LOOKUP_H

#include "fcsp/cuda_abi.h"
#include "fcsp/nvml_abi.h"
#include "interposer/hook_table.h"

#define FCSP_EXPORT __attribute__((visibility("default")))
/* For code that dlsym runs: sanitizer runtimes call dlsym while they initialise, before their shadow memory and
 * interceptors work, so this code must not be instrumented (and calls no libc string functions). */
#define FCSP_NO_SANITIZE __attribute__((no_sanitize("address", "thread", "undefined")))

/* Prototypes of every wrapper (defined in the hooks_*.c files, exported under the driver's own names). */
#define FCSP_WRAPPER_DECL(sym, base, since, variant, ret, params, args) FCSP_EXPORT ret sym params;
#define FCSP_WRAPPER_DECL_NVML(sym, ret, params, args) FCSP_EXPORT ret sym params;
FCSP_CUDA_HOOKS(FCSP_WRAPPER_DECL)
FCSP_NVML_HOOKS(FCSP_WRAPPER_DECL_NVML)

enum fcsp_hook_lib { FCSP_LIB_CUDA, FCSP_LIB_NVML };

struct fcsp_hook {
    const char *name;  /* exported symbol */
    const char *base;  /* name asked of cuGetProcAddress */
    int since;         /* CUDA version that introduced this ABI */
    int per_thread;    /* a _ptsz/_ptds form */
    enum fcsp_hook_lib lib;
    void *wrapper;
    void *const *real; /* the matching field of fcsp_real / fcsp_real_nvml */
};

/* The hook named exactly name, or NULL. */
FCSP_NO_SANITIZE const struct fcsp_hook *fcsp_hook_by_name(const char *name);

/* Given what the real cuGetProcAddress returned for (base, cudaVersion, flags), the wrapper to hand out instead,
 * or real_pfn itself when the function is not hooked. */
void *fcsp_hook_swap_proc(const char *base, void *real_pfn, int cuda_version, cuuint64_t flags);

#endif
