#include "interposer/real_driver.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common/log.h"

struct fcsp_real_cuda fcsp_real;
struct fcsp_real_nvml fcsp_real_nvml;
_Atomic int fcsp_real_cuda_ready, fcsp_real_nvml_ready;

static _Atomic(fcsp_dlsym_fn) real_dlsym_fn;
static int cuda_status = -1, nvml_status = -1;
static pthread_once_t cuda_once = PTHREAD_ONCE_INIT, nvml_once = PTHREAD_ONCE_INIT;

__attribute__((no_sanitize("address", "thread", "undefined"))) fcsp_dlsym_fn fcsp_real_dlsym(void)
{
    /* acquire/release: the pointer is the only thing published; any thread may compute it, all get the same */
    fcsp_dlsym_fn fn = atomic_load_explicit(&real_dlsym_fn, memory_order_acquire);
    if (__builtin_expect(fn != NULL, 1))
        return fn;
    fn = (fcsp_dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
    if (!fn)
        fn = (fcsp_dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
    atomic_store_explicit(&real_dlsym_fn, fn, memory_order_release);
    return fn;
}

static void *open_lib(const char *env, const char *dflt)
{
    const char *name = getenv(env);
    if (!name || !*name)
        name = dflt;
    /* RTLD_LOCAL: never change what the application's own global lookups find */
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        fcsp_log(FCSP_LOG_DEBUG, "cannot load %s: %s", name, dlerror());
    return h;
}

/* The tables are written once, inside pthread_once, then published by the ready flags. */
static void resolve_cuda(void)
{
    fcsp_dlsym_fn sym = fcsp_real_dlsym();
    void *h = open_lib("FCSP_REAL_LIBCUDA", "libcuda.so.1");
    if (!h || !sym)
        return;
#define FCSP_RESOLVE(s, ...) fcsp_real.s = (fcsp_pfn_##s)sym(h, #s);
    FCSP_CUDA_HOOKS(FCSP_RESOLVE)
    FCSP_CUDA_USED(FCSP_RESOLVE)
#undef FCSP_RESOLVE
    cuda_status = 0;
    /* release: a reader that sees the flag (acquire) sees every pointer written above */
    atomic_store_explicit(&fcsp_real_cuda_ready, 1, memory_order_release);
}

static void resolve_nvml(void)
{
    fcsp_dlsym_fn sym = fcsp_real_dlsym();
    void *h = open_lib("FCSP_REAL_LIBNVML", "libnvidia-ml.so.1");
    if (!h || !sym)
        return;
#define FCSP_RESOLVE(s, ...) fcsp_real_nvml.s = (fcsp_pfn_##s)sym(h, #s);
    FCSP_NVML_HOOKS(FCSP_RESOLVE)
    FCSP_NVML_USED(FCSP_RESOLVE)
#undef FCSP_RESOLVE
    nvml_status = 0;
    /* release: as for the CUDA table */
    atomic_store_explicit(&fcsp_real_nvml_ready, 1, memory_order_release);
}

int fcsp_real_cuda_resolve(void)
{
    pthread_once(&cuda_once, resolve_cuda);
    return cuda_status;
}

int fcsp_real_nvml_resolve(void)
{
    pthread_once(&nvml_once, resolve_nvml);
    return nvml_status;
}
