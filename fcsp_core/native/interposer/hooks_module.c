/* Module and library loads: the driver allocates a module's globals (`__device__` variables) when it loads the
 * module (measured on the H200: a PTX module with a 1 GiB array took 1 GiB at cuModuleLoadData, under a 1 GiB cap).
 * So a load is admitted like an allocation: the image is read (common/module_image.c: PTX .global declarations,
 * a cubin's .nv.global sections, the largest readable entry of a fatbin), its globals are admitted on the current
 * context's device before the driver is asked (past the cap: CUDA_ERROR_OUT_OF_MEMORY, nothing loaded), given back
 * if the load fails, and given back at cuModuleUnload / cuLibraryUnload.
 *
 * An image that cannot be read (a fatbin with compressed entries, a file that cannot be mapped) is charged what the
 * load took: the driver's free memory before and after it (cuMemGetInfo); if that does not fit under the cap the
 * module is unloaded again and the load fails with CUDA_ERROR_OUT_OF_MEMORY. Allocations racing the load on other
 * threads of the process can move that figure either way, by at most what they allocate or free meanwhile.
 *
 * Libraries (cuLibraryLoad*) are context-independent: with CUDA_MODULE_LOADING=LAZY (the default) the driver loads
 * them into a context at first use, with EAGER into every context. fcsp charges a library once, on the device of the
 * context current at the load; a library loaded with no context current is not charged (see README).
 *
 * Loads and unloads are cold paths: a mutex over the table of charged modules. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/module_image.h"
#include "../common/ptr_map.h"
#include "interposer/acct.h"
#include "interposer/admission.h"
#include "interposer/hook_lookup.h"
#include "interposer/state.h"

struct mod_rec {
    uint64_t bytes;
    int ordinal;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ptr_map g_modules = PTR_MAP_INIT; /* CUmodule -> mod_rec, modules whose globals are charged */
static struct ptr_map g_libraries = PTR_MAP_INIT; /* CUlibrary -> mod_rec */

/* One load in flight. */
struct load {
    int track; /* 0: the call passes through uncharged */
    struct fcsp_dev *d;
    uint64_t admitted; /* admitted before the call */
    int measure; /* the image could not be read: charge what the driver's free memory says the load took */
    size_t free_before;
};

static size_t driver_free(void)
{
    fcsp_pfn_cuMemGetInfo_v2 info = FCSP_REAL(cuMemGetInfo_v2);
    size_t free_b = 0, total_b = 0;
    return info && info(&free_b, &total_b) == CUDA_SUCCESS ? free_b : 0;
}

/* The globals of image, or of the file fname (mapped read-only). 0 and *bytes, or -1: not readable. */
static int image_globals(const void *image, const char *fname, uint64_t *bytes)
{
    struct fcsp_image_info info;
    if (image)
        return fcsp_image_inspect(image, 0, &info) == 0 && info.sized ? (*bytes = info.globals, 0) : -1;
    int fd = fname ? open(fname, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return -1;
    struct stat st;
    void *p = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && (uint64_t)st.st_size < FCSP_IMAGE_MAX)
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return -1;
    int rc = fcsp_image_inspect(p, (size_t)st.st_size, &info) == 0 && info.sized ? (*bytes = info.globals, 0) : -1;
    munmap(p, (size_t)st.st_size);
    return rc;
}

/* Before the driver call: CUDA_SUCCESS to go ahead (l says what to account), else the result to return. */
static CUresult load_begin(struct load *l, const void *image, const char *fname)
{
    *l = (struct load){0};
    int m = fcsp_mode();
    if (m == FCSP_MODE_PASSTHROUGH || m == FCSP_MODE_UNINIT)
        return CUDA_SUCCESS;
    uint64_t bytes = 0;
    int sized = image_globals(image, fname, &bytes) == 0;
    if (m == FCSP_MODE_CLOSED)
        return sized && bytes == 0 ? CUDA_SUCCESS : CUDA_ERROR_NOT_PERMITTED;
    int refuse = 0;
    l->d = fcsp_dev_current_to_charge(&refuse);
    if (l->d == NULL)
        return refuse ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS; /* no context: the driver answers */
    if (sized && bytes == 0)
        return CUDA_SUCCESS;
    l->track = 1;
    if (!sized) {
        l->measure = 1;
        l->free_before = driver_free();
        return CUDA_SUCCESS;
    }
    if (fcsp_admit(l->d, bytes) != 0)
        return CUDA_ERROR_OUT_OF_MEMORY;
    l->admitted = bytes;
    return CUDA_SUCCESS;
}

/* After the driver call: keep the charge and remember the handle (key), or roll back. */
static CUresult load_end(struct load *l, CUresult rc, struct ptr_map *table, uint64_t key, CUresult (*unload)(uint64_t))
{
    if (!l->track)
        return rc;
    if (rc != CUDA_SUCCESS) {
        if (l->admitted)
            fcsp_release(l->d, l->admitted);
        return rc;
    }
    uint64_t bytes = l->admitted;
    if (l->measure) {
        size_t after = driver_free();
        bytes = l->free_before > after ? l->free_before - after : 0;
        if (bytes == 0)
            return CUDA_SUCCESS;
        if (fcsp_admit(l->d, bytes) != 0) {
            unload(key);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    struct mod_rec *r = malloc(sizeof *r);
    int put = -1;
    if (r) {
        *r = (struct mod_rec){bytes, l->d->ordinal};
        pthread_mutex_lock(&g_mu);
        put = ptr_map_put(table, key, r);
        pthread_mutex_unlock(&g_mu);
    }
    if (put != 0) {
        /* cannot give it back at its unload: refuse rather than leak accounting */
        free(r);
        unload(key);
        fcsp_release(l->d, bytes);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    return CUDA_SUCCESS;
}

/* An unload: give the module's charge back once the driver has unloaded it. */
static CUresult unloaded(struct ptr_map *table, uint64_t key, CUresult (*unload)(uint64_t))
{
    pthread_mutex_lock(&g_mu);
    struct mod_rec *r = ptr_map_take(table, key);
    pthread_mutex_unlock(&g_mu);
    CUresult rc = unload(key);
    if (r == NULL)
        return rc;
    if (rc == CUDA_SUCCESS) {
        struct fcsp_dev *d = fcsp_dev_by_ordinal(r->ordinal);
        if (d)
            fcsp_release(d, r->bytes);
        free(r);
    } else {
        pthread_mutex_lock(&g_mu);
        if (ptr_map_put(table, key, r) != 0)
            free(r); /* the driver kept a module we can no longer follow: its charge stays until exit */
        pthread_mutex_unlock(&g_mu);
    }
    return rc;
}

static CUresult unload_module(uint64_t key)
{
    fcsp_pfn_cuModuleUnload f = FCSP_REAL(cuModuleUnload);
    return f ? f((CUmodule)(uintptr_t)key) : CUDA_ERROR_NOT_FOUND;
}

static CUresult unload_library(uint64_t key)
{
    fcsp_pfn_cuLibraryUnload f = FCSP_REAL(cuLibraryUnload);
    return f ? f((CUlibrary)(uintptr_t)key) : CUDA_ERROR_NOT_FOUND;
}

/* The shape of every load: admit, call, settle. OUT is the new handle's pointer. */
#define LOAD(real, image, fname, CALL, OUT, table, unload)                                                          \
    do {                                                                                                            \
        if (!(real))                                                                                                \
            return CUDA_ERROR_NOT_FOUND;                                                                            \
        struct load l_;                                                                                             \
        CUresult rc_ = load_begin(&l_, (image), (fname));                                                           \
        if (rc_ != CUDA_SUCCESS)                                                                                    \
            return rc_;                                                                                             \
        rc_ = CALL;                                                                                                 \
        return load_end(&l_, rc_, (table), rc_ == CUDA_SUCCESS && (OUT) ? (uint64_t)(uintptr_t) * (OUT) : 0,        \
                        (unload));                                                                                  \
    } while (0)

FCSP_EXPORT CUresult cuModuleLoad(CUmodule *module, const char *fname)
{
    fcsp_pfn_cuModuleLoad real = FCSP_REAL(cuModuleLoad);
    LOAD(real, NULL, fname, real(module, fname), module, &g_modules, unload_module);
}

FCSP_EXPORT CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
    fcsp_pfn_cuModuleLoadData real = FCSP_REAL(cuModuleLoadData);
    LOAD(real, image, NULL, real(module, image), module, &g_modules, unload_module);
}

FCSP_EXPORT CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions,
                                        CUjit_option *options, void **optionValues)
{
    fcsp_pfn_cuModuleLoadDataEx real = FCSP_REAL(cuModuleLoadDataEx);
    LOAD(real, image, NULL, real(module, image, numOptions, options, optionValues), module, &g_modules,
         unload_module);
}

FCSP_EXPORT CUresult cuModuleLoadFatBinary(CUmodule *module, const void *fatCubin)
{
    fcsp_pfn_cuModuleLoadFatBinary real = FCSP_REAL(cuModuleLoadFatBinary);
    LOAD(real, fatCubin, NULL, real(module, fatCubin), module, &g_modules, unload_module);
}

FCSP_EXPORT CUresult cuModuleUnload(CUmodule hmod)
{
    if (!FCSP_REAL(cuModuleUnload))
        return CUDA_ERROR_NOT_FOUND;
    return unloaded(&g_modules, (uint64_t)(uintptr_t)hmod, unload_module);
}

FCSP_EXPORT CUresult cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *jitOptions,
                                       void **jitOptionsValues, unsigned int numJitOptions,
                                       CUlibraryOption *libraryOptions, void **libraryOptionValues,
                                       unsigned int numLibraryOptions)
{
    fcsp_pfn_cuLibraryLoadData real = FCSP_REAL(cuLibraryLoadData);
    LOAD(real, code, NULL,
         real(library, code, jitOptions, jitOptionsValues, numJitOptions, libraryOptions, libraryOptionValues,
              numLibraryOptions),
         library, &g_libraries, unload_library);
}

FCSP_EXPORT CUresult cuLibraryLoadFromFile(CUlibrary *library, const char *fileName, CUjit_option *jitOptions,
                                           void **jitOptionsValues, unsigned int numJitOptions,
                                           CUlibraryOption *libraryOptions, void **libraryOptionValues,
                                           unsigned int numLibraryOptions)
{
    fcsp_pfn_cuLibraryLoadFromFile real = FCSP_REAL(cuLibraryLoadFromFile);
    LOAD(real, NULL, fileName,
         real(library, fileName, jitOptions, jitOptionsValues, numJitOptions, libraryOptions, libraryOptionValues,
              numLibraryOptions),
         library, &g_libraries, unload_library);
}

FCSP_EXPORT CUresult cuLibraryUnload(CUlibrary library)
{
    if (!FCSP_REAL(cuLibraryUnload))
        return CUDA_ERROR_NOT_FOUND;
    return unloaded(&g_libraries, (uint64_t)(uintptr_t)library, unload_library);
}

void fcsp_module_reset(void)
{
    /* the child has no thread but this one: start over with empty tables (the parent's stay allocated) */
    pthread_mutex_init(&g_mu, NULL);
    g_modules = (struct ptr_map)PTR_MAP_INIT;
    g_libraries = (struct ptr_map)PTR_MAP_INIT;
}
