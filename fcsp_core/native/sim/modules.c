/* Modules from PTX text, cubin ELF or fatbin (common/module_image.c reads them): the kernels are PTX's
 * `.entry NAME` lines or a cubin's .text.NAME sections. Kernels never execute; each function carries the wave time
 * FCSP_SIM_KERNEL_US gives its name.
 *
 * Like the real driver (measured on the H200: a PTX module with a 1 GiB __device__ array took 1 GiB at
 * cuModuleLoadData), loading a module allocates its globals on the current context's device, and unloading frees
 * them. A fatbin whose entries are all compressed cannot be read here: it is charged the largest uncompressed size
 * its entries declare (a stand-in for what the real driver would allocate) and has no kernels.
 * Libraries (cuLibraryLoadData/FromFile) are loaded eagerly into the current context, as with
 * CUDA_MODULE_LOADING=EAGER. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_cuda.h"
#include "../common/module_image.h"

#define MAX_IMAGE (64u << 20)

struct CUmod_st {
    uint32_t magic;
    int nfuncs;
    struct CUfunc_st *funcs;
    int dev;
    uint64_t globals; /* device memory its globals take, charged on dev */
};

struct CUlib_st {
    uint32_t magic;
    struct CUmod_st *mod;
};

static struct ptr_map g_modules = PTR_MAP_INIT;
static struct ptr_map g_functions = PTR_MAP_INIT;
static struct ptr_map g_libraries = PTR_MAP_INIT;

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
    if (len >= SIM_KERNEL_NAME_MAX)
        return;
    struct CUfunc_st *f = &m->funcs[m->nfuncs++];
    f->magic = SIM_MAGIC_FUNC;
    f->mod = m;
    memcpy(f->name, name, len);
    f->name[len] = '\0';
    f->wave_us = sim_config_wave_us(&g_sim_cfg, f->name);
}

/* Builds the function table of the entry info points at. */
static CUresult add_functions(struct CUmod_st *m, const struct fcsp_image_info *info)
{
    char *ptx = info->ptx ? strndup(info->ptx, info->ptx_len) : NULL;
    if (info->ptx && ptx == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    int n = ptx ? scan_entries(ptx, NULL, NULL) : info->elf ? fcsp_elf_kernels(info->elf, info->elf_len, NULL, NULL) : 0;
    m->funcs = calloc(n > 0 ? (size_t)n : 1, sizeof *m->funcs);
    if (m->funcs == NULL) {
        free(ptx);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (ptx)
        scan_entries(ptx, add_entry, m);
    else if (info->elf)
        fcsp_elf_kernels(info->elf, info->elf_len, add_entry, m);
    free(ptx);
    return CUDA_SUCCESS;
}

/* Loads image (len: its size if known, else 0) into the current context: allocates its globals there. */
static CUresult load_image(struct CUmod_st **module, const void *image, size_t len)
{
    int dev;
    CUresult rc = sim_current(NULL, &dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (module == NULL || image == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct fcsp_image_info info;
    if (fcsp_image_inspect(image, len, &info) != 0)
        return CUDA_ERROR_INVALID_IMAGE;
    struct CUmod_st *m = calloc(1, sizeof *m);
    if (m == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    rc = add_functions(m, &info);
    if (rc != CUDA_SUCCESS) {
        free(m);
        return rc;
    }
    m->magic = SIM_MAGIC_MODULE;
    m->dev = dev;
    m->globals = info.sized ? info.globals : info.unread_bytes;
    if (m->globals && sim_charge(dev, m->globals) != CUDA_SUCCESS) {
        free(m->funcs);
        free(m);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    for (int i = 0; i < m->nfuncs; i++)
        ptr_map_put(&g_functions, (uint64_t)(uintptr_t)&m->funcs[i], &m->funcs[i]);
    ptr_map_put(&g_modules, (uint64_t)(uintptr_t)m, m);
    *module = m;
    return CUDA_SUCCESS;
}

/* Reads a module file (at most MAX_IMAGE bytes) and loads it. */
static CUresult load_file(struct CUmod_st **module, const char *fname)
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
    if (n == 0 || n > MAX_IMAGE) {
        free(buf);
        return CUDA_ERROR_INVALID_IMAGE;
    }
    buf[n] = '\0';
    rc = load_image(module, buf, n);
    free(buf);
    return rc;
}

SIM_EXPORT CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
    return load_image(module, image, 0);
}

SIM_EXPORT CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions,
                                       CUjit_option *options, void **optionValues)
{
    if (numOptions > 0 && (options == NULL || optionValues == NULL))
        return CUDA_ERROR_INVALID_VALUE;
    return load_image(module, image, 0); /* JIT options change nothing here */
}

SIM_EXPORT CUresult cuModuleLoadFatBinary(CUmodule *module, const void *fatCubin)
{
    return load_image(module, fatCubin, 0);
}

SIM_EXPORT CUresult cuModuleLoad(CUmodule *module, const char *fname)
{
    return load_file(module, fname);
}

static void module_free(struct CUmod_st *m)
{
    for (int i = 0; i < m->nfuncs; i++)
        ptr_map_take(&g_functions, (uint64_t)(uintptr_t)&m->funcs[i]);
    /* Queued launches copied what they need, so the module can go now. A launch racing with the unload on
     * another thread is an application bug with the real driver too. */
    if (m->globals)
        sim_uncharge(m->dev, m->globals);
    free(m->funcs);
    free(m);
}

SIM_EXPORT CUresult cuModuleUnload(CUmodule hmod)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUmod_st *m = ptr_map_take(&g_modules, (uint64_t)(uintptr_t)hmod);
    if (m == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    module_free(m);
    return CUDA_SUCCESS;
}

/* A library: its module, loaded now into the current context. */
static CUresult library_made(CUlibrary *library, CUresult rc, struct CUmod_st *m)
{
    if (rc != CUDA_SUCCESS)
        return rc;
    ptr_map_take(&g_modules, (uint64_t)(uintptr_t)m); /* reached through the library only */
    struct CUlib_st *l = malloc(sizeof *l);
    if (l == NULL || ptr_map_put(&g_libraries, (uint64_t)(uintptr_t)l, l) != 0) {
        free(l);
        module_free(m);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    l->magic = SIM_MAGIC_MODULE;
    l->mod = m;
    *library = l;
    return CUDA_SUCCESS;
}

/* Both library loads: check the arguments, load the image (from memory, or from fileName when from_file) and
 * make it a library. */
static CUresult library_load(CUlibrary *library, int from_file, const void *code, const char *fileName,
                             unsigned int numJitOptions, CUjit_option *jitOptions, void **jitOptionsValues,
                             unsigned int numLibraryOptions, CUlibraryOption *libraryOptions,
                             void **libraryOptionValues)
{
    if (library == NULL || (numJitOptions > 0 && (jitOptions == NULL || jitOptionsValues == NULL)) ||
        (numLibraryOptions > 0 && (libraryOptions == NULL || libraryOptionValues == NULL)))
        return CUDA_ERROR_INVALID_VALUE;
    struct CUmod_st *m = NULL;
    CUresult rc = from_file ? load_file(&m, fileName) : load_image(&m, code, 0);
    return library_made(library, rc, m);
}

SIM_EXPORT CUresult cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *jitOptions,
                                      void **jitOptionsValues, unsigned int numJitOptions,
                                      CUlibraryOption *libraryOptions, void **libraryOptionValues,
                                      unsigned int numLibraryOptions)
{
    return library_load(library, 0, code, NULL, numJitOptions, jitOptions, jitOptionsValues, numLibraryOptions,
                        libraryOptions, libraryOptionValues);
}

SIM_EXPORT CUresult cuLibraryLoadFromFile(CUlibrary *library, const char *fileName, CUjit_option *jitOptions,
                                          void **jitOptionsValues, unsigned int numJitOptions,
                                          CUlibraryOption *libraryOptions, void **libraryOptionValues,
                                          unsigned int numLibraryOptions)
{
    return library_load(library, 1, NULL, fileName, numJitOptions, jitOptions, jitOptionsValues, numLibraryOptions,
                        libraryOptions, libraryOptionValues);
}

SIM_EXPORT CUresult cuLibraryUnload(CUlibrary library)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUlib_st *l = ptr_map_take(&g_libraries, (uint64_t)(uintptr_t)library);
    if (l == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    module_free(l->mod);
    free(l);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (hfunc == NULL || name == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct CUmod_st *m = ptr_map_get(&g_modules, (uint64_t)(uintptr_t)hmod);
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
    return (f != NULL && ptr_map_get(&g_functions, (uint64_t)(uintptr_t)f) == f) ? CUDA_SUCCESS
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
