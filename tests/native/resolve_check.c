/* For every hooked function, at several CUDA versions and both stream flavours: ask cuGetProcAddress_v2 (and the
 * legacy cuGetProcAddress) and print which object and symbol the returned pointer belongs to. Run once without and
 * once with libfcsp.so preloaded: the symbols must agree (we resolve exactly as the driver does) and with the
 * preload every answer must be one of our wrappers. Also prints what dlsym gives for each name, by handle and by
 * RTLD_DEFAULT, and for a few unhooked names. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "fcsp/cuda_abi.h"
#include "fcsp/nvml_abi.h"
#include "interposer/hook_table.h"

typedef CUresult (*gpa2_t)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
typedef CUresult (*gpa1_t)(const char *, void **, int, cuuint64_t);
typedef CUresult (*init_t)(unsigned int);

static const char *describe(void *p, char *buf, size_t len)
{
    Dl_info info;
    if (!p)
        return "null";
    if (!dladdr(p, &info) || !info.dli_sname) {
        snprintf(buf, len, "?");
        return buf;
    }
    const char *obj = strrchr(info.dli_fname, '/');
    snprintf(buf, len, "%s:%s", obj ? obj + 1 : info.dli_fname, info.dli_sname);
    return buf;
}

#define BASE_NAME(sym, base, since, variant, ret, params, args) #base,
#define SYM_NAME(sym, base, since, variant, ret, params, args) #sym,
static const char *bases[] = {FCSP_CUDA_HOOKS(BASE_NAME) "cuModuleGetFunction", "cuCtxGetDevice", "cuNoSuchFunction"};
static const char *syms[] = {FCSP_CUDA_HOOKS(SYM_NAME) "cuModuleGetFunction", "cuGetExportTable"};

int main(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    ((init_t)dlsym(h, "cuInit"))(0);
    gpa2_t gpa2 = (gpa2_t)dlsym(h, "cuGetProcAddress_v2");
    gpa1_t gpa1 = (gpa1_t)dlsym(h, "cuGetProcAddress");
    const int versions[] = {11030, 11080, 12000, 12080, 13000};
    char buf[512];
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        if (i > 0 && !strcmp(bases[i], bases[i - 1]))
            continue;
        for (size_t v = 0; v < sizeof versions / sizeof versions[0]; v++) {
            for (int pt = 0; pt < 2; pt++) {
                void *pfn = NULL;
                CUdriverProcAddressQueryResult st = 0;
                cuuint64_t flags = pt ? CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM : CU_GET_PROC_ADDRESS_DEFAULT;
                CUresult rc = gpa2(bases[i], &pfn, versions[v], flags, &st);
                printf("proc2 %s %d %d rc=%d status=%d %s\n", bases[i], versions[v], pt, (int)rc, (int)st,
                       describe(pfn, buf, sizeof buf));
                pfn = NULL;
                rc = gpa1(bases[i], &pfn, versions[v], flags);
                printf("proc1 %s %d %d rc=%d %s\n", bases[i], versions[v], pt, (int)rc, describe(pfn, buf, sizeof buf));
            }
        }
    }
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        printf("dlsym-handle %s %s\n", syms[i], describe(dlsym(h, syms[i]), buf, sizeof buf));
        printf("dlsym-default %s %s\n", syms[i], describe(dlsym(RTLD_DEFAULT, syms[i]), buf, sizeof buf));
    }
    printf("dlsym-handle nosuch %s\n", describe(dlsym(h, "cuNoSuchFunction"), buf, sizeof buf));
    return 0;
}
