/* Modules from PTX text: the kernels are the `.entry NAME` lines. Kernels never execute; each function carries
 * the wave time FCSP_SIM_KERNEL_US gives its name. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_cuda.h"

#define MAX_IMAGE (64u << 20)

struct CUmod_st {
    uint32_t magic;
    int nfuncs;
    struct CUfunc_st *funcs;
};

static struct sim_map g_modules = SIM_MAP_INIT;
static struct sim_map g_functions = SIM_MAP_INIT;

static int is_ident(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '$' || c == '.';
}

/* Calls fn for each `.entry NAME` of the PTX text; returns the number of entries. */
static int scan_entries(const char *ptx, void (*fn)(const char *name, size_t len, void *arg), void *arg)
{
    int n = 0;
    for (const char *p = strstr(ptx, ".entry"); p; p = strstr(p + 6, ".entry")) {
        if (p != ptx && !isspace((unsigned char)p[-1]))
            continue;
        const char *q = p + 6;
        if (!isspace((unsigned char)*q))
            continue;
        while (*q == ' ' || *q == '\t')
            q++;
        const char *name = q;
        while (is_ident(*q))
            q++;
        if (q == name || (size_t)(q - name) >= SIM_KERNEL_NAME_MAX)
            continue;
        if (fn)
            fn(name, (size_t)(q - name), arg);
        n++;
    }
    return n;
}

static void add_entry(const char *name, size_t len, void *arg)
{
    struct CUmod_st *m = arg;
    struct CUfunc_st *f = &m->funcs[m->nfuncs++];
    f->magic = SIM_MAGIC_FUNC;
    f->mod = m;
    memcpy(f->name, name, len);
    f->name[len] = '\0';
    f->wave_us = sim_config_wave_us(&g_sim_cfg, f->name);
}

static int looks_like_ptx(const unsigned char *img)
{
    /* ELF cubins and fatbins are binary; only PTX text is understood here */
    if (img[0] == 0x7f && img[1] == 'E' && img[2] == 'L' && img[3] == 'F')
        return 0;
    const char *s = (const char *)img;
    return strstr(s, ".entry") != NULL || strstr(s, ".version") != NULL;
}

static CUresult load_ptx(CUmodule *module, const char *ptx)
{
    CUresult rc = sim_current(NULL, NULL);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (module == NULL || ptx == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (!looks_like_ptx((const unsigned char *)ptx))
        return CUDA_ERROR_INVALID_IMAGE;
    int n = scan_entries(ptx, NULL, NULL);
    struct CUmod_st *m = calloc(1, sizeof *m);
    struct CUfunc_st *funcs = calloc(n > 0 ? (size_t)n : 1, sizeof *funcs);
    if (m == NULL || funcs == NULL) {
        free(m);
        free(funcs);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    m->magic = SIM_MAGIC_MODULE;
    m->funcs = funcs;
    scan_entries(ptx, add_entry, m);
    for (int i = 0; i < m->nfuncs; i++)
        sim_map_put(&g_functions, (uint64_t)(uintptr_t)&m->funcs[i], &m->funcs[i]);
    sim_map_put(&g_modules, (uint64_t)(uintptr_t)m, m);
    *module = m;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
    return load_ptx(module, image);
}

SIM_EXPORT CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions,
                                       CUjit_option *options, void **optionValues)
{
    if (numOptions > 0 && (options == NULL || optionValues == NULL))
        return CUDA_ERROR_INVALID_VALUE;
    return load_ptx(module, image); /* JIT options change nothing here */
}

SIM_EXPORT CUresult cuModuleLoad(CUmodule *module, const char *fname)
{
    CUresult rc = sim_current(NULL, NULL);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (module == NULL || fname == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    FILE *f = fopen(fname, "rbe");
    if (f == NULL)
        return CUDA_ERROR_FILE_NOT_FOUND;
    char *buf = malloc(MAX_IMAGE + 1);
    if (buf == NULL) {
        fclose(f);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    size_t n = fread(buf, 1, MAX_IMAGE + 1, f);
    fclose(f);
    if (n == 0 || n > MAX_IMAGE || memchr(buf, '\0', n) != NULL) {
        free(buf);
        return CUDA_ERROR_INVALID_IMAGE;
    }
    buf[n] = '\0';
    rc = load_ptx(module, buf);
    free(buf);
    return rc;
}

SIM_EXPORT CUresult cuModuleUnload(CUmodule hmod)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUmod_st *m = sim_map_take(&g_modules, (uint64_t)(uintptr_t)hmod);
    if (m == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    for (int i = 0; i < m->nfuncs; i++)
        sim_map_take(&g_functions, (uint64_t)(uintptr_t)&m->funcs[i]);
    /* Queued launches copied what they need, so the module can go now. A launch racing with the unload on
     * another thread is an application bug with the real driver too. */
    free(m->funcs);
    free(m);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (hfunc == NULL || name == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct CUmod_st *m = sim_map_get(&g_modules, (uint64_t)(uintptr_t)hmod);
    if (m == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    for (int i = 0; i < m->nfuncs; i++) {
        if (strcmp(m->funcs[i].name, name) == 0) {
            *hfunc = &m->funcs[i];
            return CUDA_SUCCESS;
        }
    }
    return CUDA_ERROR_NOT_FOUND;
}

CUresult sim_function_check(CUfunction f)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    return (f != NULL && sim_map_get(&g_functions, (uint64_t)(uintptr_t)f) == f) ? CUDA_SUCCESS
                                                                                  : CUDA_ERROR_INVALID_HANDLE;
}

SIM_EXPORT CUresult cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc)
{
    CUresult rc = sim_function_check(hfunc);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (pi == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    switch ((int)attrib) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *pi = 1024; break;
    case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: *pi = 0; break;
    case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES: *pi = 0; break;
    case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: *pi = 0; break;
    case CU_FUNC_ATTRIBUTE_NUM_REGS: *pi = 32; break;
    case 5: *pi = 90; break; /* PTX_VERSION */
    case 6: *pi = 90; break; /* BINARY_VERSION */
    case 7: *pi = 0; break; /* CACHE_MODE_CA */
    case 8: *pi = 49152; break; /* MAX_DYNAMIC_SHARED_SIZE_BYTES */
    case 9: *pi = -1; break; /* PREFERRED_SHARED_MEMORY_CARVEOUT: no preference */
    case 10: /* CLUSTER_SIZE_MUST_BE_SET */
    case 11: /* REQUIRED_CLUSTER_WIDTH */
    case 12: /* REQUIRED_CLUSTER_HEIGHT */
    case 13: /* REQUIRED_CLUSTER_DEPTH */
    case 14: /* NON_PORTABLE_CLUSTER_SIZE_ALLOWED */
    case 15: /* CLUSTER_SCHEDULING_POLICY_PREFERENCE */
        *pi = 0;
        break;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuFuncGetName(const char **name, CUfunction hfunc)
{
    CUresult rc = sim_function_check(hfunc);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (name == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *name = hfunc->name;
    return CUDA_SUCCESS;
}
