/* Driver API corner cases of the simulated libcuda.so.1 that fcsp-probe does not reach. Prints one line per
 * check, "ok NAME" or "FAIL NAME: got X, want Y"; exits 1 if any failed. Built and run by tests/test_sim.py. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fcsp/cuda_abi.h"

static void *lib;
static int failed;

#define FN(name, ret, params) static ret(*name) params
FN(cuInit, CUresult, (unsigned int));
FN(cuGetErrorName, CUresult, (CUresult, const char **));
FN(cuGetErrorString, CUresult, (CUresult, const char **));
FN(cuMemAlloc_v2, CUresult, (CUdeviceptr *, size_t));
FN(cuMemFree_v2, CUresult, (CUdeviceptr));
FN(cuDevicePrimaryCtxRetain, CUresult, (CUcontext *, CUdevice));
FN(cuCtxSetCurrent, CUresult, (CUcontext));
FN(cuCtxCreate_v2, CUresult, (CUcontext *, unsigned int, CUdevice));
FN(cuCtxDestroy_v2, CUresult, (CUcontext));
FN(cuCtxGetDevice, CUresult, (CUdevice *));
FN(cuCtxPopCurrent_v2, CUresult, (CUcontext *));
FN(cuModuleLoadData, CUresult, (CUmodule *, const void *));
FN(cuModuleGetFunction, CUresult, (CUfunction *, CUmodule, const char *));
FN(cuFuncGetName, CUresult, (const char **, CUfunction));
FN(cuLaunchKernel, CUresult, (CUfunction, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int,
                              unsigned int, unsigned int, CUstream, void **, void **));
FN(cuLaunchCooperativeKernel, CUresult, (CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
                                         unsigned int, unsigned int, unsigned int, CUstream, void **));
FN(cuEventCreate, CUresult, (CUevent *, unsigned int));
FN(cuEventRecord, CUresult, (CUevent, CUstream));
FN(cuEventQuery, CUresult, (CUevent));
FN(cuEventSynchronize, CUresult, (CUevent));
FN(cuEventElapsedTime_v2, CUresult, (float *, CUevent, CUevent));
FN(cuStreamQuery, CUresult, (CUstream));
FN(cuCtxSynchronize, CUresult, (void));
FN(cuMemCreate, CUresult, (CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long));
FN(cuGetExportTable, CUresult, (const void **, const CUuuid *));
FN(cuDeviceGetAttribute, CUresult, (int *, CUdevice_attribute, CUdevice));
FN(fcspSimStats, int, (int, unsigned long long *, unsigned long long *));
FN(fcspSimResetPeak, int, (int));

#define LOAD(name) *(void **)&name = dlsym(lib, #name)

static void expect(const char *what, long got, long want)
{
    if (got == want) {
        printf("ok %s\n", what);
    } else {
        printf("FAIL %s: got %ld, want %ld\n", what, got, want);
        failed = 1;
    }
}

static const char ptx[] = ".version 8.0\n.target sm_90\n.visible .entry spin()\n{\n ret;\n}\n";

int main(int argc, char **argv)
{
    lib = dlopen(argc > 1 ? argv[1] : "libcuda.so.1", RTLD_NOW);
    if (lib == NULL)
        return 2;
    LOAD(cuInit); LOAD(cuGetErrorName); LOAD(cuGetErrorString); LOAD(cuMemAlloc_v2); LOAD(cuMemFree_v2);
    LOAD(cuDevicePrimaryCtxRetain); LOAD(cuCtxSetCurrent); LOAD(cuCtxCreate_v2); LOAD(cuCtxDestroy_v2);
    LOAD(cuCtxGetDevice); LOAD(cuCtxPopCurrent_v2); LOAD(cuModuleLoadData); LOAD(cuModuleGetFunction);
    LOAD(cuFuncGetName); LOAD(cuLaunchKernel); LOAD(cuLaunchCooperativeKernel); LOAD(cuEventCreate);
    LOAD(cuEventRecord); LOAD(cuEventQuery); LOAD(cuEventSynchronize); LOAD(cuEventElapsedTime_v2);
    LOAD(cuStreamQuery); LOAD(cuCtxSynchronize); LOAD(cuMemCreate); LOAD(cuGetExportTable);
    LOAD(cuDeviceGetAttribute); LOAD(fcspSimStats); LOAD(fcspSimResetPeak);

    CUdeviceptr p = 0;
    const char *s = NULL;
    expect("alloc before cuInit", cuMemAlloc_v2(&p, 16), CUDA_ERROR_NOT_INITIALIZED);
    expect("cuInit", cuInit(0), CUDA_SUCCESS);
    expect("alloc without context", cuMemAlloc_v2(&p, 16), CUDA_ERROR_INVALID_CONTEXT);
    expect("error name", cuGetErrorName(CUDA_ERROR_OUT_OF_MEMORY, &s) == CUDA_SUCCESS && strcmp(s, "CUDA_ERROR_OUT_OF_MEMORY") == 0, 1);
    expect("error string", cuGetErrorString(CUDA_ERROR_INVALID_VALUE, &s) == CUDA_SUCCESS && strcmp(s, "invalid argument") == 0, 1);
    expect("unknown error name", cuGetErrorName((CUresult)12345, &s), CUDA_ERROR_INVALID_VALUE);
    const void *table = NULL;
    CUuuid id = {{0}};
    expect("export table", cuGetExportTable(&table, &id), CUDA_ERROR_NOT_SUPPORTED);

    CUcontext primary, created, popped;
    CUdevice dev = -1;
    expect("retain", cuDevicePrimaryCtxRetain(&primary, 1), CUDA_SUCCESS);
    expect("set current", cuCtxSetCurrent(primary), CUDA_SUCCESS);
    expect("ctx device", cuCtxGetDevice(&dev) == CUDA_SUCCESS && dev == 1, 1);
    expect("create", cuCtxCreate_v2(&created, 0, 0), CUDA_SUCCESS);
    expect("created is current", cuCtxGetDevice(&dev) == CUDA_SUCCESS && dev == 0, 1);
    expect("alloc in created", cuMemAlloc_v2(&p, 1 << 20), CUDA_SUCCESS);
    unsigned long long live = 0, peak = 0;
    expect("stats", fcspSimStats(0, &live, &peak) == 0 && live == (1 << 20), 1);
    expect("destroy frees its memory", cuCtxDestroy_v2(created) == CUDA_SUCCESS && fcspSimStats(0, &live, &peak) == 0 && live == 0, 1);
    expect("destroyed twice", cuCtxDestroy_v2(created), CUDA_ERROR_INVALID_CONTEXT);
    expect("reset peak", fcspSimResetPeak(0) == 0 && fcspSimStats(0, &live, &peak) == 0 && peak == 0, 1);
    expect("back on primary", cuCtxGetDevice(&dev) == CUDA_SUCCESS && dev == 1, 1);
    expect("alloc", cuMemAlloc_v2(&p, 4096), CUDA_SUCCESS);
    expect("free", cuMemFree_v2(p), CUDA_SUCCESS);
    expect("double free", cuMemFree_v2(p), CUDA_ERROR_INVALID_VALUE);
    expect("zero size", cuMemAlloc_v2(&p, 0), CUDA_ERROR_INVALID_VALUE);

    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 1;
    CUmemGenericAllocationHandle h;
    expect("vmm unaligned size", cuMemCreate(&h, 3 << 20, &prop, 0), CUDA_ERROR_INVALID_VALUE);
    prop.location.id = 7;
    expect("vmm bad device", cuMemCreate(&h, 2 << 20, &prop, 0), CUDA_ERROR_INVALID_DEVICE);

    CUmodule mod;
    CUfunction f;
    expect("binary image", cuModuleLoadData(&mod, "\x7f" "ELF\x02\x01"), CUDA_ERROR_INVALID_IMAGE);
    expect("ptx", cuModuleLoadData(&mod, ptx), CUDA_SUCCESS);
    expect("no such kernel", cuModuleGetFunction(&f, mod, "nope"), CUDA_ERROR_NOT_FOUND);
    expect("kernel", cuModuleGetFunction(&f, mod, "spin"), CUDA_SUCCESS);
    expect("name", cuFuncGetName(&s, f) == CUDA_SUCCESS && strcmp(s, "spin") == 0, 1);
    int sms = 0;
    cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 1);
    expect("1025 threads", cuLaunchKernel(f, 1, 1, 1, 1025, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
    expect("cooperative fits", cuLaunchCooperativeKernel(f, (unsigned)sms * 2, 1, 1, 1024, 1, 1, 0, NULL, NULL), CUDA_SUCCESS);
    expect("cooperative too large", cuLaunchCooperativeKernel(f, (unsigned)sms * 2 + 1, 1, 1, 1024, 1, 1, 0, NULL, NULL),
           CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE);
    CUevent a, b;
    float ms = -1;
    cuEventCreate(&a, 0);
    cuEventCreate(&b, 0);
    expect("elapsed unrecorded", cuEventElapsedTime_v2(&ms, a, b), CUDA_ERROR_INVALID_HANDLE);
    cuEventRecord(a, NULL);
    for (int i = 0; i < 10; i++) /* 10 x 1 wave x FCSP_SIM_KERNEL_US (spin=20000: 200 ms) */
        cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL);
    cuEventRecord(b, NULL);
    expect("event not ready", cuEventQuery(b), CUDA_ERROR_NOT_READY);
    expect("stream not ready", cuStreamQuery(NULL), CUDA_ERROR_NOT_READY);
    expect("elapsed not ready", cuEventElapsedTime_v2(&ms, a, b), CUDA_ERROR_NOT_READY);
    expect("ctx sync", cuCtxSynchronize(), CUDA_SUCCESS);
    expect("event ready", cuEventQuery(b), CUDA_SUCCESS);
    expect("elapsed", cuEventElapsedTime_v2(&ms, a, b), CUDA_SUCCESS);
    expect("elapsed about 200 ms", ms >= 199.0f && ms < 260.0f, 1);
    expect("pop", cuCtxPopCurrent_v2(&popped) == CUDA_SUCCESS && popped == primary, 1);
    return failed;
}
