/* Loading libcuda.so.1 and finding its entry points like an application or the CUDA runtime would. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "probe.h"

typedef CUresult (*get_proc_v2_fn)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
typedef CUresult (*get_proc_v1_fn)(const char *, void **, int, cuuint64_t);

struct probe_driver g_cu;
void *g_libcuda;
static struct probe_options g_opt;
static get_proc_v2_fn g_get_proc_v2;
static get_proc_v1_fn g_get_proc_v1;

struct name_entry {
    const char *base, *sym, *ptsym;
};

#define PROBE_NAME(field, base, sym, ptsym, ret, params) {base, sym, ptsym},
static const struct name_entry g_names[] = {PROBE_FUNCS(PROBE_NAME)};
#undef PROBE_NAME

CUresult probe_resolve(const char *base, void **fn, CUdriverProcAddressQueryResult *status)
{
    *fn = NULL;
    if (status)
        *status = CU_GET_PROC_ADDRESS_SUCCESS;
    if (g_opt.use_dlsym) {
        const char *sym = base;
        for (size_t i = 0; i < sizeof g_names / sizeof g_names[0]; i++)
            if (strcmp(g_names[i].base, base) == 0)
                sym = (g_opt.per_thread && g_names[i].ptsym) ? g_names[i].ptsym : g_names[i].sym;
        *fn = dlsym(g_libcuda, sym);
        if (*fn == NULL && status)
            *status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
        return *fn ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
    }
    cuuint64_t flags = g_opt.per_thread ? CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM : CU_GET_PROC_ADDRESS_DEFAULT;
    if (g_get_proc_v2)
        return g_get_proc_v2(base, fn, g_opt.cuda_version, flags, status);
    if (status)
        *status = (CUdriverProcAddressQueryResult)99; /* the first form reports no query result */
    return g_get_proc_v1(base, fn, g_opt.cuda_version, flags);
}

int probe_load(const struct probe_options *opt)
{
    g_opt = *opt;
    g_libcuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (g_libcuda == NULL) {
        fprintf(stderr, "fcsp-probe: cannot load libcuda.so.1: %s\n", dlerror());
        return -1;
    }
    if (!opt->use_dlsym) {
        /* the CUDA runtime of 12.0 and later uses cuGetProcAddress_v2; 11.3 to 11.8 the first form */
        if (opt->cuda_version >= 12000)
            g_get_proc_v2 = (get_proc_v2_fn)dlsym(g_libcuda, "cuGetProcAddress_v2");
        else
            g_get_proc_v1 = (get_proc_v1_fn)dlsym(g_libcuda, "cuGetProcAddress");
        if (g_get_proc_v2 == NULL && g_get_proc_v1 == NULL) {
            fprintf(stderr, "fcsp-probe: libcuda.so.1 has no cuGetProcAddress%s\n",
                    opt->cuda_version >= 12000 ? "_v2" : "");
            return -1;
        }
    }
    void *fn;
    /* entry points that do not resolve stay NULL; commands that need them report CUDA_ERROR_NOT_FOUND */
#define PROBE_LOAD(field, base, sym, ptsym, ret, params)                                                           \
    if (probe_resolve(base, &fn, NULL) == CUDA_SUCCESS)                                                             \
        memcpy(&g_cu.field, &fn, sizeof fn);
    PROBE_FUNCS(PROBE_LOAD)
#undef PROBE_LOAD
    return 0;
}

const char *probe_err(CUresult rc)
{
    static _Thread_local char buf[32];
    const char *name = NULL;
    if (g_cu.GetErrorName && g_cu.GetErrorName(rc, &name) == CUDA_SUCCESS && name)
        return name;
    snprintf(buf, sizeof buf, "CUDA_ERROR_%d", (int)rc);
    return buf;
}
