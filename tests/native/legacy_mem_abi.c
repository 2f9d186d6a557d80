/* Both ABIs of the memory queries an application may reach by name: cuDeviceTotalMem / cuDeviceTotalMem_v2 and
 * cuMemGetInfo / cuMemGetInfo_v2 (the unsuffixed ones take 32-bit sizes, as CUDA before 3.2 did). Prints
 * "<name> <bytes...>" per call, or "<name> rc=<n>" on failure; tests/test_resolve.py runs it under a cap. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

#include "fcsp/cuda_abi.h"

typedef CUresult (*total32_t)(unsigned int *, CUdevice);
typedef CUresult (*total_t)(size_t *, CUdevice);
typedef CUresult (*info32_t)(unsigned int *, unsigned int *);
typedef CUresult (*info_t)(size_t *, size_t *);

int main(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    CUdevice dev = 0;
    CUcontext ctx = NULL;
    if (((CUresult(*)(unsigned int))dlsym(h, "cuInit"))(0) != CUDA_SUCCESS ||
        ((CUresult(*)(CUdevice *, int))dlsym(h, "cuDeviceGet"))(&dev, 0) != CUDA_SUCCESS ||
        ((CUresult(*)(CUcontext *, CUdevice))dlsym(h, "cuDevicePrimaryCtxRetain"))(&ctx, dev) != CUDA_SUCCESS ||
        ((CUresult(*)(CUcontext))dlsym(h, "cuCtxSetCurrent"))(ctx) != CUDA_SUCCESS) {
        fprintf(stderr, "setup failed\n");
        return 2;
    }
    unsigned int t32 = 0, f32 = 0, u32 = 0;
    size_t t = 0, f = 0;
    CUresult rc = ((total32_t)dlsym(h, "cuDeviceTotalMem"))(&t32, dev);
    rc ? printf("cuDeviceTotalMem rc=%d\n", (int)rc) : printf("cuDeviceTotalMem %u\n", t32);
    rc = ((total_t)dlsym(h, "cuDeviceTotalMem_v2"))(&t, dev);
    rc ? printf("cuDeviceTotalMem_v2 rc=%d\n", (int)rc) : printf("cuDeviceTotalMem_v2 %zu\n", t);
    rc = ((info32_t)dlsym(h, "cuMemGetInfo"))(&f32, &u32);
    rc ? printf("cuMemGetInfo rc=%d\n", (int)rc) : printf("cuMemGetInfo %u %u\n", f32, u32);
    rc = ((info_t)dlsym(h, "cuMemGetInfo_v2"))(&f, &t);
    rc ? printf("cuMemGetInfo_v2 rc=%d\n", (int)rc) : printf("cuMemGetInfo_v2 %zu %zu\n", f, t);
    return 0;
}
