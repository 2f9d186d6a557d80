/* fcsp-probe: an unmodified-style CUDA driver API program for tests and demos. It loads libcuda.so.1 with dlopen
 * and gets every entry point the way the CUDA runtime does (cuGetProcAddress), or with dlsym. */
#ifndef FCSP_PROBE_H
#define FCSP_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "fcsp/cuda_abi.h"

/* X(field, base name, dlsym symbol, per-thread dlsym symbol or NULL, ret, params) */
#define PROBE_FUNCS(X)                                                                                             \
    X(Init, "cuInit", "cuInit", NULL, CUresult, (unsigned int))                                                    \
    X(GetErrorName, "cuGetErrorName", "cuGetErrorName", NULL, CUresult, (CUresult, const char **))                \
    X(DeviceGet, "cuDeviceGet", "cuDeviceGet", NULL, CUresult, (CUdevice *, int))                                  \
    X(DeviceGetCount, "cuDeviceGetCount", "cuDeviceGetCount", NULL, CUresult, (int *))                             \
    X(DeviceGetName, "cuDeviceGetName", "cuDeviceGetName", NULL, CUresult, (char *, int, CUdevice))                \
    X(DeviceGetUuid, "cuDeviceGetUuid", "cuDeviceGetUuid_v2", NULL, CUresult, (CUuuid *, CUdevice))                \
    X(DeviceGetAttribute, "cuDeviceGetAttribute", "cuDeviceGetAttribute", NULL, CUresult,                          \
      (int *, CUdevice_attribute, CUdevice))                                                                       \
    X(DeviceTotalMem, "cuDeviceTotalMem", "cuDeviceTotalMem_v2", NULL, CUresult, (size_t *, CUdevice))             \
    X(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRetain", NULL, CUresult,                    \
      (CUcontext *, CUdevice))                                                                                     \
    X(CtxSetCurrent, "cuCtxSetCurrent", "cuCtxSetCurrent", NULL, CUresult, (CUcontext))                            \
    X(MemGetInfo, "cuMemGetInfo", "cuMemGetInfo_v2", NULL, CUresult, (size_t *, size_t *))                         \
    X(MemAlloc, "cuMemAlloc", "cuMemAlloc_v2", NULL, CUresult, (CUdeviceptr *, size_t))                            \
    X(MemAllocPitch, "cuMemAllocPitch", "cuMemAllocPitch_v2", NULL, CUresult,                                      \
      (CUdeviceptr *, size_t *, size_t, size_t, unsigned int))                                                     \
    X(MemAllocManaged, "cuMemAllocManaged", "cuMemAllocManaged", NULL, CUresult,                                   \
      (CUdeviceptr *, size_t, unsigned int))                                                                       \
    X(MemFree, "cuMemFree", "cuMemFree_v2", NULL, CUresult, (CUdeviceptr))                                         \
    X(MemAllocAsync, "cuMemAllocAsync", "cuMemAllocAsync", "cuMemAllocAsync_ptsz", CUresult,                       \
      (CUdeviceptr *, size_t, CUstream))                                                                           \
    X(MemAllocFromPoolAsync, "cuMemAllocFromPoolAsync", "cuMemAllocFromPoolAsync",                                 \
      "cuMemAllocFromPoolAsync_ptsz", CUresult, (CUdeviceptr *, size_t, CUmemoryPool, CUstream))                   \
    X(MemFreeAsync, "cuMemFreeAsync", "cuMemFreeAsync", "cuMemFreeAsync_ptsz", CUresult, (CUdeviceptr, CUstream))  \
    X(MemPoolCreate, "cuMemPoolCreate", "cuMemPoolCreate", NULL, CUresult, (CUmemoryPool *, const CUmemPoolProps *)) \
    X(MemPoolDestroy, "cuMemPoolDestroy", "cuMemPoolDestroy", NULL, CUresult, (CUmemoryPool))                      \
    X(MemPoolTrimTo, "cuMemPoolTrimTo", "cuMemPoolTrimTo", NULL, CUresult, (CUmemoryPool, size_t))                 \
    X(MemPoolSetAttribute, "cuMemPoolSetAttribute", "cuMemPoolSetAttribute", NULL, CUresult,                       \
      (CUmemoryPool, CUmemPool_attribute, void *))                                                                 \
    X(MemPoolGetAttribute, "cuMemPoolGetAttribute", "cuMemPoolGetAttribute", NULL, CUresult,                       \
      (CUmemoryPool, CUmemPool_attribute, void *))                                                                 \
    X(MemGetAllocationGranularity, "cuMemGetAllocationGranularity", "cuMemGetAllocationGranularity", NULL,         \
      CUresult, (size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags))                         \
    X(MemCreate, "cuMemCreate", "cuMemCreate", NULL, CUresult,                                                     \
      (CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long))                   \
    X(MemRelease, "cuMemRelease", "cuMemRelease", NULL, CUresult, (CUmemGenericAllocationHandle))                  \
    X(MemAddressReserve, "cuMemAddressReserve", "cuMemAddressReserve", NULL, CUresult,                             \
      (CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long))                                            \
    X(MemAddressFree, "cuMemAddressFree", "cuMemAddressFree", NULL, CUresult, (CUdeviceptr, size_t))               \
    X(MemMap, "cuMemMap", "cuMemMap", NULL, CUresult,                                                              \
      (CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long))                             \
    X(MemUnmap, "cuMemUnmap", "cuMemUnmap", NULL, CUresult, (CUdeviceptr, size_t))                                 \
    X(MemSetAccess, "cuMemSetAccess", "cuMemSetAccess", NULL, CUresult,                                            \
      (CUdeviceptr, size_t, const CUmemAccessDesc *, size_t))                                                      \
    X(ArrayCreate, "cuArrayCreate", "cuArrayCreate_v2", NULL, CUresult, (CUarray *, const CUDA_ARRAY_DESCRIPTOR *)) \
    X(Array3DCreate, "cuArray3DCreate", "cuArray3DCreate_v2", NULL, CUresult,                                      \
      (CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *))                                                                \
    X(ArrayDestroy, "cuArrayDestroy", "cuArrayDestroy", NULL, CUresult, (CUarray))                                 \
    X(MipmappedArrayCreate, "cuMipmappedArrayCreate", "cuMipmappedArrayCreate", NULL, CUresult,                    \
      (CUmipmappedArray *, const CUDA_ARRAY3D_DESCRIPTOR *, unsigned int))                                         \
    X(MipmappedArrayDestroy, "cuMipmappedArrayDestroy", "cuMipmappedArrayDestroy", NULL, CUresult,                 \
      (CUmipmappedArray))                                                                                          \
    X(ModuleLoadData, "cuModuleLoadData", "cuModuleLoadData", NULL, CUresult, (CUmodule *, const void *))          \
    X(ModuleGetFunction, "cuModuleGetFunction", "cuModuleGetFunction", NULL, CUresult,                             \
      (CUfunction *, CUmodule, const char *))                                                                      \
    X(LaunchKernel, "cuLaunchKernel", "cuLaunchKernel", "cuLaunchKernel_ptsz", CUresult,                           \
      (CUfunction, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int,              \
       unsigned int, CUstream, void **, void **))                                                                  \
    X(StreamCreate, "cuStreamCreate", "cuStreamCreate", NULL, CUresult, (CUstream *, unsigned int))                \
    X(StreamSynchronize, "cuStreamSynchronize", "cuStreamSynchronize", "cuStreamSynchronize_ptsz", CUresult,       \
      (CUstream))                                                                                                  \
    X(StreamDestroy, "cuStreamDestroy", "cuStreamDestroy_v2", NULL, CUresult, (CUstream))                          \
    X(EventCreate, "cuEventCreate", "cuEventCreate", NULL, CUresult, (CUevent *, unsigned int))                    \
    X(EventRecord, "cuEventRecord", "cuEventRecord", "cuEventRecord_ptsz", CUresult, (CUevent, CUstream))          \
    X(EventSynchronize, "cuEventSynchronize", "cuEventSynchronize", NULL, CUresult, (CUevent))                     \
    X(EventElapsedTime, "cuEventElapsedTime", "cuEventElapsedTime_v2", NULL, CUresult, (float *, CUevent, CUevent)) \
    X(EventDestroy, "cuEventDestroy", "cuEventDestroy_v2", NULL, CUresult, (CUevent))                              \
    X(FuncGetName, "cuFuncGetName", "cuFuncGetName", NULL, CUresult, (const char **, CUfunction))                  \
    X(StreamBeginCapture, "cuStreamBeginCapture", "cuStreamBeginCapture_v2", "cuStreamBeginCapture_v2_ptsz",        \
      CUresult, (CUstream, CUstreamCaptureMode))                                                                   \
    X(StreamEndCapture, "cuStreamEndCapture", "cuStreamEndCapture", "cuStreamEndCapture_ptsz", CUresult,           \
      (CUstream, CUgraph *))                                                                                       \
    X(GraphGetNodes, "cuGraphGetNodes", "cuGraphGetNodes", NULL, CUresult, (CUgraph, CUgraphNode *, size_t *))    \
    X(GraphInstantiateWithFlags, "cuGraphInstantiateWithFlags", "cuGraphInstantiateWithFlags", NULL, CUresult,     \
      (CUgraphExec *, CUgraph, unsigned long long))                                                                \
    X(GraphInstantiate, "cuGraphInstantiate", "cuGraphInstantiate_v2", NULL, CUresult,                             \
      (CUgraphExec *, CUgraph, CUgraphNode *, char *, size_t))                                                     \
    X(GraphLaunch, "cuGraphLaunch", "cuGraphLaunch", "cuGraphLaunch_ptsz", CUresult, (CUgraphExec, CUstream))      \
    X(GraphExecDestroy, "cuGraphExecDestroy", "cuGraphExecDestroy", NULL, CUresult, (CUgraphExec))                 \
    X(GraphCreate, "cuGraphCreate", "cuGraphCreate", NULL, CUresult, (CUgraph *, unsigned int))                    \
    X(StreamBeginCaptureToGraph, "cuStreamBeginCaptureToGraph", "cuStreamBeginCaptureToGraph",                    \
      "cuStreamBeginCaptureToGraph_ptsz", CUresult,                                                                \
      (CUstream, CUgraph, const CUgraphNode *, const CUgraphEdgeData *, size_t, CUstreamCaptureMode))              \
    X(GraphDestroy, "cuGraphDestroy", "cuGraphDestroy", NULL, CUresult, (CUgraph))

#define PROBE_FIELD(field, base, sym, ptsym, ret, params) ret(*field) params;
struct probe_driver {
    PROBE_FUNCS(PROBE_FIELD)
};
#undef PROBE_FIELD

/* How entry points are found: --api=proc[:VERSION] (default proc:12080) or --api=dlsym; --ptsz. */
struct probe_options {
    int use_dlsym;
    int cuda_version;
    int per_thread;
};

extern struct probe_driver g_cu;
extern void *g_libcuda;
extern CUdevice g_dev;
extern CUcontext g_ctx;

/* probe_driver.c */
int probe_load(const struct probe_options *opt); /* 0, or -1 with a message on stderr */
/* Resolves base with the options' method: 0 and *fn, or the CUresult of the failure (status: the query result). */
CUresult probe_resolve(const char *base, void **fn, CUdriverProcAddressQueryResult *status);
const char *probe_err(CUresult rc); /* the name of rc (cuGetErrorName), or a made-up CUDA_ERROR_<n> */
/* A missing entry point is reported as CUDA_ERROR_NOT_FOUND. */
#define PROBE_CALL(fn, ...) ((fn) ? (fn)(__VA_ARGS__) : CUDA_ERROR_NOT_FOUND)

/* probe_util.c */
int probe_parse_size(const char *s, uint64_t *out); /* 123, 64K, 512M, 1.5G, 2GiB */
int probe_parse_uint(const char *s, uint64_t *out);
void probe_out(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* one line to stdout, flushed */
double probe_now_ms(void);

/* probe_alloc.c: allocation kinds and the list of live allocations */
enum probe_kind { K_MEM, K_PITCH, K_MANAGED, K_ASYNC, K_POOL, K_VMM, K_ARRAY, K_ARRAY3D, K_MIPMAP, K_NKINDS };
struct probe_alloc {
    enum probe_kind kind;
    uint64_t handle; /* pointer, array handle or VMM handle */
    uint64_t va; /* VMM: mapped address */
    uint64_t bytes; /* what the allocation costs on the device */
};
int probe_kind_parse(const char *s, enum probe_kind *out);
const char *probe_kind_name(enum probe_kind k);
CUresult probe_alloc_one(enum probe_kind kind, uint64_t size, struct probe_alloc *out);
CUresult probe_free_one(const struct probe_alloc *a);
int cmd_alloc(uint64_t size, enum probe_kind kind);
int cmd_free(int all);
int cmd_fill(enum probe_kind kind, uint64_t chunk);
int cmd_pooltrim(uint64_t keep);
int cmd_free_all_quiet(void);

/* probe_launch.c, probe_stress.c, probe_info.c */
int cmd_launch(const char *name, uint64_t blocks, uint64_t threads, uint64_t count);
int cmd_launchloop(const char *name, uint64_t blocks, uint64_t threads, double seconds);
int cmd_graph(const char *name, uint64_t blocks, uint64_t threads, uint64_t kernels, uint64_t count, int into_graph);
int cmd_funcname(const char *name);
int cmd_stress(uint64_t threads, uint64_t iters, uint64_t maxsize);
int cmd_init(int dev);
int cmd_meminfo(void);
int cmd_totalmem(void);
int cmd_device(void);
int cmd_resolve(const char *name);
int cmd_stats(void);

#endif
