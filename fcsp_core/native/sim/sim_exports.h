/* The one list of driver functions libcuda.so.1 (simulated) exports. Every entry point is declared from this
 * list (so a definition with another prototype does not compile) and cuGetProcAddress resolves through a table
 * built from it (proc_address.c).
 *
 * SIM_CUDA_EXPORTS(X) expands X(symbol, base, since, per_thread, ret, params):
 *   symbol      the exported symbol (cuMemAlloc_v2)
 *   base        the name cuGetProcAddress is asked for (cuMemAlloc)
 *   since       the CUDA version of that ABI, as in cudaTypedefs.h's PFN_<base>_v<since>
 *   per_thread  1 for the _ptsz/_ptds forms (per-thread default stream), else 0
 * Prototypes are those of cudaTypedefs.h.
 */
#ifndef FCSP_SIM_EXPORTS_H
#define FCSP_SIM_EXPORTS_H

#include "fcsp/cuda_abi.h"

#define SIM_EXPORT __attribute__((visibility("default")))

#define SIM_LAUNCH_PARAMS                                                                                          \
    (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ, unsigned int blockDimX,    \
     unsigned int blockDimY, unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,                \
     void **kernelParams, void **extra)
#define SIM_COOP_PARAMS                                                                                            \
    (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ, unsigned int blockDimX,    \
     unsigned int blockDimY, unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,                \
     void **kernelParams)

#define SIM_CUDA_EXPORTS(X)                                                                                        \
    /* init, version, errors, entry points */                                                                      \
    X(cuInit, cuInit, 2000, 0, CUresult, (unsigned int Flags))                                                     \
    X(cuDriverGetVersion, cuDriverGetVersion, 2020, 0, CUresult, (int *driverVersion))                            \
    X(cuGetErrorName, cuGetErrorName, 6000, 0, CUresult, (CUresult error, const char **pStr))                      \
    X(cuGetErrorString, cuGetErrorString, 6000, 0, CUresult, (CUresult error, const char **pStr))                  \
    X(cuGetExportTable, cuGetExportTable, 3000, 0, CUresult,                                                       \
      (const void **ppExportTable, const CUuuid *pExportTableId))                                                  \
    X(cuGetProcAddress, cuGetProcAddress, 11030, 0, CUresult,                                                      \
      (const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags))                                         \
    X(cuGetProcAddress_v2, cuGetProcAddress, 12000, 0, CUresult,                                                   \
      (const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags, CUdriverProcAddressQueryResult *status)) \
    /* devices */                                                                                                  \
    X(cuDeviceGet, cuDeviceGet, 2000, 0, CUresult, (CUdevice * device, int ordinal))                               \
    X(cuDeviceGetCount, cuDeviceGetCount, 2000, 0, CUresult, (int *count))                                         \
    X(cuDeviceGetName, cuDeviceGetName, 2000, 0, CUresult, (char *name, int len, CUdevice dev))                    \
    X(cuDeviceGetUuid, cuDeviceGetUuid, 9020, 0, CUresult, (CUuuid * uuid, CUdevice dev))                          \
    X(cuDeviceGetUuid_v2, cuDeviceGetUuid, 11040, 0, CUresult, (CUuuid * uuid, CUdevice dev))                      \
    X(cuDeviceGetAttribute, cuDeviceGetAttribute, 2000, 0, CUresult,                                               \
      (int *pi, CUdevice_attribute attrib, CUdevice dev))                                                          \
    X(cuDeviceComputeCapability, cuDeviceComputeCapability, 2000, 0, CUresult,                                     \
      (int *major, int *minor, CUdevice dev))                                                                      \
    X(cuDeviceTotalMem, cuDeviceTotalMem, 2000, 0, CUresult, (unsigned int *bytes, CUdevice dev))                  \
    X(cuDeviceTotalMem_v2, cuDeviceTotalMem, 3020, 0, CUresult, (size_t *bytes, CUdevice dev))                     \
    X(cuDeviceGetDefaultMemPool, cuDeviceGetDefaultMemPool, 11020, 0, CUresult,                                    \
      (CUmemoryPool * pool_out, CUdevice dev))                                                                     \
    X(cuDeviceGetMemPool, cuDeviceGetMemPool, 11020, 0, CUresult, (CUmemoryPool * pool, CUdevice dev))             \
    X(cuDeviceSetMemPool, cuDeviceSetMemPool, 11020, 0, CUresult, (CUdevice dev, CUmemoryPool pool))               \
    /* contexts */                                                                                                 \
    X(cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain, 7000, 0, CUresult, (CUcontext * pctx, CUdevice dev))     \
    X(cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease, 7000, 0, CUresult, (CUdevice dev))                     \
    X(cuDevicePrimaryCtxRelease_v2, cuDevicePrimaryCtxRelease, 11000, 0, CUresult, (CUdevice dev))                 \
    X(cuDevicePrimaryCtxReset, cuDevicePrimaryCtxReset, 7000, 0, CUresult, (CUdevice dev))                         \
    X(cuDevicePrimaryCtxReset_v2, cuDevicePrimaryCtxReset, 11000, 0, CUresult, (CUdevice dev))                     \
    X(cuDevicePrimaryCtxGetState, cuDevicePrimaryCtxGetState, 7000, 0, CUresult,                                   \
      (CUdevice dev, unsigned int *flags, int *active))                                                            \
    X(cuDevicePrimaryCtxSetFlags, cuDevicePrimaryCtxSetFlags, 7000, 0, CUresult, (CUdevice dev, unsigned int flags)) \
    X(cuDevicePrimaryCtxSetFlags_v2, cuDevicePrimaryCtxSetFlags, 11000, 0, CUresult,                               \
      (CUdevice dev, unsigned int flags))                                                                          \
    X(cuCtxCreate, cuCtxCreate, 2000, 0, CUresult, (CUcontext * pctx, unsigned int flags, CUdevice dev))           \
    X(cuCtxCreate_v2, cuCtxCreate, 3020, 0, CUresult, (CUcontext * pctx, unsigned int flags, CUdevice dev))        \
    X(cuCtxCreate_v3, cuCtxCreate, 11040, 0, CUresult,                                                             \
      (CUcontext * pctx, CUexecAffinityParam * paramsArray, int numParams, unsigned int flags, CUdevice dev))      \
    X(cuCtxCreate_v4, cuCtxCreate, 12050, 0, CUresult,                                                             \
      (CUcontext * pctx, CUctxCreateParams * ctxCreateParams, unsigned int flags, CUdevice dev))                   \
    X(cuCtxDestroy, cuCtxDestroy, 2000, 0, CUresult, (CUcontext ctx))                                              \
    X(cuCtxDestroy_v2, cuCtxDestroy, 4000, 0, CUresult, (CUcontext ctx))                                           \
    X(cuCtxPushCurrent, cuCtxPushCurrent, 2000, 0, CUresult, (CUcontext ctx))                                      \
    X(cuCtxPushCurrent_v2, cuCtxPushCurrent, 4000, 0, CUresult, (CUcontext ctx))                                   \
    X(cuCtxPopCurrent, cuCtxPopCurrent, 2000, 0, CUresult, (CUcontext * pctx))                                     \
    X(cuCtxPopCurrent_v2, cuCtxPopCurrent, 4000, 0, CUresult, (CUcontext * pctx))                                  \
    X(cuCtxSetCurrent, cuCtxSetCurrent, 4000, 0, CUresult, (CUcontext ctx))                                        \
    X(cuCtxGetCurrent, cuCtxGetCurrent, 4000, 0, CUresult, (CUcontext * pctx))                                     \
    X(cuCtxGetDevice, cuCtxGetDevice, 2000, 0, CUresult, (CUdevice * device))                                      \
    X(cuCtxGetDevice_v2, cuCtxGetDevice, 13000, 0, CUresult, (CUdevice * device, CUcontext ctx))                   \
    X(cuCtxGetApiVersion, cuCtxGetApiVersion, 3020, 0, CUresult, (CUcontext ctx, unsigned int *version))           \
    X(cuCtxSynchronize, cuCtxSynchronize, 2000, 0, CUresult, (void))                                               \
    X(cuCtxSynchronize_v2, cuCtxSynchronize, 13000, 0, CUresult, (CUcontext ctx))                                  \
    /* linear memory */                                                                                            \
    X(cuMemGetInfo, cuMemGetInfo, 2000, 0, CUresult, (unsigned int *free, unsigned int *total))                    \
    X(cuMemGetInfo_v2, cuMemGetInfo, 3020, 0, CUresult, (size_t * free, size_t * total))                           \
    X(cuMemAlloc, cuMemAlloc, 2000, 0, CUresult, (CUdeviceptr_v1 * dptr, unsigned int bytesize))                   \
    X(cuMemAlloc_v2, cuMemAlloc, 3020, 0, CUresult, (CUdeviceptr * dptr, size_t bytesize))                         \
    X(cuMemAllocPitch, cuMemAllocPitch, 2000, 0, CUresult,                                                         \
      (CUdeviceptr_v1 * dptr, unsigned int *pPitch, unsigned int WidthInBytes, unsigned int Height,                \
       unsigned int ElementSizeBytes))                                                                             \
    X(cuMemAllocPitch_v2, cuMemAllocPitch, 3020, 0, CUresult,                                                      \
      (CUdeviceptr * dptr, size_t * pPitch, size_t WidthInBytes, size_t Height, unsigned int ElementSizeBytes))    \
    X(cuMemAllocManaged, cuMemAllocManaged, 6000, 0, CUresult,                                                     \
      (CUdeviceptr * dptr, size_t bytesize, unsigned int flags))                                                   \
    X(cuMemFree, cuMemFree, 2000, 0, CUresult, (CUdeviceptr_v1 dptr))                                              \
    X(cuMemFree_v2, cuMemFree, 3020, 0, CUresult, (CUdeviceptr dptr))                                              \
    /* copies and sets (no data moves: device memory is not backed) */                                             \
    X(cuMemcpyHtoD, cuMemcpyHtoD, 2000, 0, CUresult,                                                               \
      (CUdeviceptr_v1 dstDevice, const void *srcHost, unsigned int ByteCount))                                     \
    X(cuMemcpyHtoD_v2, cuMemcpyHtoD, 3020, 0, CUresult, (CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)) \
    X(cuMemcpyHtoD_v2_ptds, cuMemcpyHtoD, 7000, 1, CUresult,                                                       \
      (CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount))                                              \
    X(cuMemcpyDtoH, cuMemcpyDtoH, 2000, 0, CUresult, (void *dstHost, CUdeviceptr_v1 srcDevice, unsigned int ByteCount)) \
    X(cuMemcpyDtoH_v2, cuMemcpyDtoH, 3020, 0, CUresult, (void *dstHost, CUdeviceptr srcDevice, size_t ByteCount))  \
    X(cuMemcpyDtoH_v2_ptds, cuMemcpyDtoH, 7000, 1, CUresult, (void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)) \
    X(cuMemcpyDtoD, cuMemcpyDtoD, 2000, 0, CUresult,                                                               \
      (CUdeviceptr_v1 dstDevice, CUdeviceptr_v1 srcDevice, unsigned int ByteCount))                                \
    X(cuMemcpyDtoD_v2, cuMemcpyDtoD, 3020, 0, CUresult,                                                            \
      (CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount))                                            \
    X(cuMemcpyDtoD_v2_ptds, cuMemcpyDtoD, 7000, 1, CUresult,                                                       \
      (CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount))                                            \
    X(cuMemsetD8, cuMemsetD8, 2000, 0, CUresult, (CUdeviceptr_v1 dstDevice, unsigned char uc, unsigned int N))     \
    X(cuMemsetD8_v2, cuMemsetD8, 3020, 0, CUresult, (CUdeviceptr dstDevice, unsigned char uc, size_t N))           \
    X(cuMemsetD8_v2_ptds, cuMemsetD8, 7000, 1, CUresult, (CUdeviceptr dstDevice, unsigned char uc, size_t N))      \
    X(cuMemcpyHtoDAsync, cuMemcpyHtoDAsync, 2000, 0, CUresult,                                                     \
      (CUdeviceptr_v1 dstDevice, const void *srcHost, unsigned int ByteCount, CUstream hStream))                   \
    X(cuMemcpyHtoDAsync_v2, cuMemcpyHtoDAsync, 3020, 0, CUresult,                                                  \
      (CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream))                            \
    X(cuMemcpyHtoDAsync_v2_ptsz, cuMemcpyHtoDAsync, 7000, 1, CUresult,                                             \
      (CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream))                            \
    X(cuMemcpyDtoHAsync, cuMemcpyDtoHAsync, 2000, 0, CUresult,                                                     \
      (void *dstHost, CUdeviceptr_v1 srcDevice, unsigned int ByteCount, CUstream hStream))                         \
    X(cuMemcpyDtoHAsync_v2, cuMemcpyDtoHAsync, 3020, 0, CUresult,                                                  \
      (void *dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream))                                  \
    X(cuMemcpyDtoHAsync_v2_ptsz, cuMemcpyDtoHAsync, 7000, 1, CUresult,                                             \
      (void *dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream))                                  \
    X(cuMemcpyDtoDAsync, cuMemcpyDtoDAsync, 3000, 0, CUresult,                                                     \
      (CUdeviceptr_v1 dstDevice, CUdeviceptr_v1 srcDevice, unsigned int ByteCount, CUstream hStream))              \
    X(cuMemcpyDtoDAsync_v2, cuMemcpyDtoDAsync, 3020, 0, CUresult,                                                  \
      (CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream))                          \
    X(cuMemcpyDtoDAsync_v2_ptsz, cuMemcpyDtoDAsync, 7000, 1, CUresult,                                             \
      (CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream))                          \
    X(cuMemsetD8Async, cuMemsetD8Async, 3020, 0, CUresult,                                                         \
      (CUdeviceptr dstDevice, unsigned char uc, size_t N, CUstream hStream))                                       \
    X(cuMemsetD8Async_ptsz, cuMemsetD8Async, 7000, 1, CUresult,                                                    \
      (CUdeviceptr dstDevice, unsigned char uc, size_t N, CUstream hStream))                                       \
    /* stream-ordered allocations and pools */                                                                     \
    X(cuMemAllocAsync, cuMemAllocAsync, 11020, 0, CUresult, (CUdeviceptr * dptr, size_t bytesize, CUstream hStream)) \
    X(cuMemAllocAsync_ptsz, cuMemAllocAsync, 11020, 1, CUresult,                                                   \
      (CUdeviceptr * dptr, size_t bytesize, CUstream hStream))                                                     \
    X(cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync, 11020, 0, CUresult,                                        \
      (CUdeviceptr * dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream))                                  \
    X(cuMemAllocFromPoolAsync_ptsz, cuMemAllocFromPoolAsync, 11020, 1, CUresult,                                   \
      (CUdeviceptr * dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream))                                  \
    X(cuMemFreeAsync, cuMemFreeAsync, 11020, 0, CUresult, (CUdeviceptr dptr, CUstream hStream))                    \
    X(cuMemFreeAsync_ptsz, cuMemFreeAsync, 11020, 1, CUresult, (CUdeviceptr dptr, CUstream hStream))               \
    X(cuMemPoolCreate, cuMemPoolCreate, 11020, 0, CUresult, (CUmemoryPool * pool, const CUmemPoolProps *poolProps)) \
    X(cuMemPoolDestroy, cuMemPoolDestroy, 11020, 0, CUresult, (CUmemoryPool pool))                                 \
    X(cuMemPoolTrimTo, cuMemPoolTrimTo, 11020, 0, CUresult, (CUmemoryPool pool, size_t minBytesToKeep))            \
    X(cuMemPoolGetAttribute, cuMemPoolGetAttribute, 11020, 0, CUresult,                                            \
      (CUmemoryPool pool, CUmemPool_attribute attr, void *value))                                                  \
    X(cuMemPoolSetAttribute, cuMemPoolSetAttribute, 11020, 0, CUresult,                                            \
      (CUmemoryPool pool, CUmemPool_attribute attr, void *value))                                                  \
    /* virtual memory management */                                                                                \
    X(cuMemCreate, cuMemCreate, 10020, 0, CUresult,                                                                \
      (CUmemGenericAllocationHandle * handle, size_t size, const CUmemAllocationProp *prop,                        \
       unsigned long long flags))                                                                                  \
    X(cuMemRelease, cuMemRelease, 10020, 0, CUresult, (CUmemGenericAllocationHandle handle))                       \
    X(cuMemExportToShareableHandle, cuMemExportToShareableHandle, 10020, 0, CUresult,                              \
      (void *shareableHandle, CUmemGenericAllocationHandle handle, CUmemAllocationHandleType handleType,           \
       unsigned long long flags))                                                                                  \
    X(cuMemImportFromShareableHandle, cuMemImportFromShareableHandle, 10020, 0, CUresult,                          \
      (CUmemGenericAllocationHandle * handle, void *osHandle, CUmemAllocationHandleType shHandleType))             \
    X(cuMemRetainAllocationHandle, cuMemRetainAllocationHandle, 11000, 0, CUresult,                                \
      (CUmemGenericAllocationHandle * handle, void *addr))                                                         \
    /* legacy IPC */                                                                                               \
    X(cuIpcGetMemHandle, cuIpcGetMemHandle, 4010, 0, CUresult, (CUipcMemHandle * pHandle, CUdeviceptr dptr))       \
    X(cuIpcOpenMemHandle_v2, cuIpcOpenMemHandle, 11000, 0, CUresult,                                              \
      (CUdeviceptr * pdptr, CUipcMemHandle handle, unsigned int Flags))                                            \
    X(cuIpcCloseMemHandle, cuIpcCloseMemHandle, 4010, 0, CUresult, (CUdeviceptr dptr))                            \
    X(cuMemAddressReserve, cuMemAddressReserve, 10020, 0, CUresult,                                                \
      (CUdeviceptr * ptr, size_t size, size_t alignment, CUdeviceptr addr, unsigned long long flags))              \
    X(cuMemAddressFree, cuMemAddressFree, 10020, 0, CUresult, (CUdeviceptr ptr, size_t size))                      \
    X(cuMemMap, cuMemMap, 10020, 0, CUresult,                                                                      \
      (CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle, unsigned long long flags)) \
    X(cuMemUnmap, cuMemUnmap, 10020, 0, CUresult, (CUdeviceptr ptr, size_t size))                                  \
    X(cuMemSetAccess, cuMemSetAccess, 10020, 0, CUresult,                                                          \
      (CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count))                                   \
    X(cuMemGetAllocationGranularity, cuMemGetAllocationGranularity, 10020, 0, CUresult,                            \
      (size_t * granularity, const CUmemAllocationProp *prop, CUmemAllocationGranularity_flags option))            \
    /* arrays */                                                                                                   \
    X(cuArrayCreate, cuArrayCreate, 2000, 0, CUresult,                                                             \
      (CUarray * pHandle, const CUDA_ARRAY_DESCRIPTOR_v1 *pAllocateArray))                                         \
    X(cuArrayCreate_v2, cuArrayCreate, 3020, 0, CUresult,                                                          \
      (CUarray * pHandle, const CUDA_ARRAY_DESCRIPTOR *pAllocateArray))                                            \
    X(cuArray3DCreate, cuArray3DCreate, 2000, 0, CUresult,                                                         \
      (CUarray * pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1 *pAllocateArray))                                       \
    X(cuArray3DCreate_v2, cuArray3DCreate, 3020, 0, CUresult,                                                      \
      (CUarray * pHandle, const CUDA_ARRAY3D_DESCRIPTOR *pAllocateArray))                                          \
    X(cuArrayDestroy, cuArrayDestroy, 2000, 0, CUresult, (CUarray hArray))                                         \
    X(cuMipmappedArrayCreate, cuMipmappedArrayCreate, 5000, 0, CUresult,                                           \
      (CUmipmappedArray * pHandle, const CUDA_ARRAY3D_DESCRIPTOR *pMipmappedArrayDesc,                             \
       unsigned int numMipmapLevels))                                                                              \
    X(cuMipmappedArrayDestroy, cuMipmappedArrayDestroy, 5000, 0, CUresult, (CUmipmappedArray hMipmappedArray))     \
    /* modules and functions (PTX, cubin, fatbin; kernels do not run, they take a modelled time) */                         \
    X(cuModuleLoad, cuModuleLoad, 2000, 0, CUresult, (CUmodule * module, const char *fname))                       \
    X(cuModuleLoadData, cuModuleLoadData, 2000, 0, CUresult, (CUmodule * module, const void *image))               \
    X(cuModuleLoadDataEx, cuModuleLoadDataEx, 2010, 0, CUresult,                                                   \
      (CUmodule * module, const void *image, unsigned int numOptions, CUjit_option *options,                       \
       void **optionValues))                                                                                       \
    X(cuModuleUnload, cuModuleUnload, 2000, 0, CUresult, (CUmodule hmod))                                          \
    X(cuModuleLoadFatBinary, cuModuleLoadFatBinary, 2000, 0, CUresult, (CUmodule * module, const void *fatCubin))  \
    X(cuLibraryLoadData, cuLibraryLoadData, 12000, 0, CUresult,                                                    \
      (CUlibrary * library, const void *code, CUjit_option *jitOptions, void **jitOptionsValues,                  \
       unsigned int numJitOptions, CUlibraryOption *libraryOptions, void **libraryOptionValues,                   \
       unsigned int numLibraryOptions))                                                                            \
    X(cuLibraryLoadFromFile, cuLibraryLoadFromFile, 12000, 0, CUresult,                                            \
      (CUlibrary * library, const char *fileName, CUjit_option *jitOptions, void **jitOptionsValues,              \
       unsigned int numJitOptions, CUlibraryOption *libraryOptions, void **libraryOptionValues,                   \
       unsigned int numLibraryOptions))                                                                            \
    X(cuLibraryUnload, cuLibraryUnload, 12000, 0, CUresult, (CUlibrary library))                                   \
    X(cuModuleGetFunction, cuModuleGetFunction, 2000, 0, CUresult,                                                 \
      (CUfunction * hfunc, CUmodule hmod, const char *name))                                                       \
    X(cuFuncGetAttribute, cuFuncGetAttribute, 2020, 0, CUresult,                                                   \
      (int *pi, CUfunction_attribute attrib, CUfunction hfunc))                                                    \
    X(cuFuncGetName, cuFuncGetName, 12030, 0, CUresult, (const char **name, CUfunction hfunc))                     \
    X(cuOccupancyMaxActiveBlocksPerMultiprocessor, cuOccupancyMaxActiveBlocksPerMultiprocessor, 6050, 0,           \
      CUresult, (int *numBlocks, CUfunction func, int blockSize, size_t dynamicSMemSize))                          \
    /* launches */                                                                                                 \
    X(cuLaunchKernel, cuLaunchKernel, 4000, 0, CUresult, SIM_LAUNCH_PARAMS)                                        \
    X(cuLaunchKernel_ptsz, cuLaunchKernel, 7000, 1, CUresult, SIM_LAUNCH_PARAMS)                                   \
    X(cuLaunchKernelEx, cuLaunchKernelEx, 11060, 0, CUresult,                                                      \
      (const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra))                             \
    X(cuLaunchKernelEx_ptsz, cuLaunchKernelEx, 11060, 1, CUresult,                                                 \
      (const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra))                             \
    X(cuLaunchCooperativeKernel, cuLaunchCooperativeKernel, 9000, 0, CUresult, SIM_COOP_PARAMS)                    \
    X(cuLaunchCooperativeKernel_ptsz, cuLaunchCooperativeKernel, 9000, 1, CUresult, SIM_COOP_PARAMS)               \
    X(cuGraphLaunch, cuGraphLaunch, 10000, 0, CUresult, (CUgraphExec hGraphExec, CUstream hStream))                \
    X(cuGraphLaunch_ptsz, cuGraphLaunch, 10000, 1, CUresult, (CUgraphExec hGraphExec, CUstream hStream))           \
    /* streams */                                                                                                  \
    X(cuStreamCreate, cuStreamCreate, 2000, 0, CUresult, (CUstream * phStream, unsigned int Flags))                \
    X(cuStreamCreateWithPriority, cuStreamCreateWithPriority, 5050, 0, CUresult,                                   \
      (CUstream * phStream, unsigned int flags, int priority))                                                     \
    X(cuStreamDestroy, cuStreamDestroy, 2000, 0, CUresult, (CUstream hStream))                                     \
    X(cuStreamDestroy_v2, cuStreamDestroy, 4000, 0, CUresult, (CUstream hStream))                                  \
    X(cuStreamGetDevice, cuStreamGetDevice, 12080, 0, CUresult, (CUstream hStream, CUdevice * device))             \
    X(cuStreamGetDevice_ptsz, cuStreamGetDevice, 12080, 1, CUresult, (CUstream hStream, CUdevice * device))        \
    X(cuStreamSynchronize, cuStreamSynchronize, 2000, 0, CUresult, (CUstream hStream))                             \
    X(cuStreamSynchronize_ptsz, cuStreamSynchronize, 7000, 1, CUresult, (CUstream hStream))                        \
    X(cuStreamQuery, cuStreamQuery, 2000, 0, CUresult, (CUstream hStream))                                         \
    X(cuStreamQuery_ptsz, cuStreamQuery, 7000, 1, CUresult, (CUstream hStream))                                    \
    X(cuStreamWaitEvent, cuStreamWaitEvent, 3020, 0, CUresult, (CUstream hStream, CUevent hEvent, unsigned int Flags)) \
    X(cuStreamWaitEvent_ptsz, cuStreamWaitEvent, 7000, 1, CUresult,                                                \
      (CUstream hStream, CUevent hEvent, unsigned int Flags))                                                      \
    /* events */                                                                                                   \
    X(cuEventCreate, cuEventCreate, 2000, 0, CUresult, (CUevent * phEvent, unsigned int Flags))                    \
    X(cuEventRecord, cuEventRecord, 2000, 0, CUresult, (CUevent hEvent, CUstream hStream))                         \
    X(cuEventRecord_ptsz, cuEventRecord, 7000, 1, CUresult, (CUevent hEvent, CUstream hStream))                    \
    X(cuEventSynchronize, cuEventSynchronize, 2000, 0, CUresult, (CUevent hEvent))                                 \
    X(cuEventQuery, cuEventQuery, 2000, 0, CUresult, (CUevent hEvent))                                             \
    X(cuEventElapsedTime, cuEventElapsedTime, 2000, 0, CUresult, (float *pMilliseconds, CUevent hStart, CUevent hEnd)) \
    X(cuEventElapsedTime_v2, cuEventElapsedTime, 12080, 0, CUresult,                                               \
      (float *pMilliseconds, CUevent hStart, CUevent hEnd))                                                        \
    X(cuEventDestroy, cuEventDestroy, 2000, 0, CUresult, (CUevent hEvent))                                         \
    X(cuEventDestroy_v2, cuEventDestroy, 4000, 0, CUresult, (CUevent hEvent))                                    \
    /* stream capture (the legacy stream cannot capture; the per-thread default stream can) */                    \
    X(cuStreamBeginCapture, cuStreamBeginCapture, 10000, 0, CUresult, (CUstream hStream))                          \
    X(cuStreamBeginCapture_ptsz, cuStreamBeginCapture, 10000, 1, CUresult, (CUstream hStream))                     \
    X(cuStreamBeginCapture_v2, cuStreamBeginCapture, 10010, 0, CUresult,                                           \
      (CUstream hStream, CUstreamCaptureMode mode))                                                                \
    X(cuStreamBeginCapture_v2_ptsz, cuStreamBeginCapture, 10010, 1, CUresult,                                      \
      (CUstream hStream, CUstreamCaptureMode mode))                                                                \
    X(cuStreamBeginCaptureToGraph, cuStreamBeginCaptureToGraph, 12030, 0, CUresult,                                \
      (CUstream hStream, CUgraph hGraph, const CUgraphNode *dependencies, const CUgraphEdgeData *dependencyData,   \
       size_t numDependencies, CUstreamCaptureMode mode))                                                          \
    X(cuStreamBeginCaptureToGraph_ptsz, cuStreamBeginCaptureToGraph, 12030, 1, CUresult,                           \
      (CUstream hStream, CUgraph hGraph, const CUgraphNode *dependencies, const CUgraphEdgeData *dependencyData,   \
       size_t numDependencies, CUstreamCaptureMode mode))                                                          \
    X(cuStreamEndCapture, cuStreamEndCapture, 10000, 0, CUresult, (CUstream hStream, CUgraph * phGraph))           \
    X(cuStreamEndCapture_ptsz, cuStreamEndCapture, 10000, 1, CUresult, (CUstream hStream, CUgraph * phGraph))      \
    X(cuThreadExchangeStreamCaptureMode, cuThreadExchangeStreamCaptureMode, 10010, 0, CUresult,                    \
      (CUstreamCaptureMode * mode))                                                                                \
    X(cuStreamIsCapturing, cuStreamIsCapturing, 10000, 0, CUresult,                                                \
      (CUstream hStream, CUstreamCaptureStatus * captureStatus))                                                   \
    X(cuStreamIsCapturing_ptsz, cuStreamIsCapturing, 10000, 1, CUresult,                                           \
      (CUstream hStream, CUstreamCaptureStatus * captureStatus))                                                   \
    X(cuStreamGetCaptureInfo, cuStreamGetCaptureInfo, 10010, 0, CUresult,                                          \
      (CUstream hStream, CUstreamCaptureStatus * captureStatus_out, cuuint64_t * id_out))                          \
    X(cuStreamGetCaptureInfo_ptsz, cuStreamGetCaptureInfo, 10010, 1, CUresult,                                     \
      (CUstream hStream, CUstreamCaptureStatus * captureStatus_out, cuuint64_t * id_out))                          \
    X(cuStreamGetCaptureInfo_v2, cuStreamGetCaptureInfo, 11030, 0, CUresult,                                       \
      (CUstream hStream, CUstreamCaptureStatus * captureStatus_out, cuuint64_t * id_out, CUgraph * graph_out,      \
       const CUgraphNode **dependencies_out, size_t *numDependencies_out))                                         \
    X(cuStreamGetCaptureInfo_v2_ptsz, cuStreamGetCaptureInfo, 11030, 1, CUresult,                                  \
      (CUstream hStream, CUstreamCaptureStatus * captureStatus_out, cuuint64_t * id_out, CUgraph * graph_out,      \
       const CUgraphNode **dependencies_out, size_t *numDependencies_out))                                         \
    X(cuStreamGetCaptureInfo_v3, cuStreamGetCaptureInfo, 12030, 0, CUresult,                                       \
      (CUstream hStream, CUstreamCaptureStatus * captureStatus_out, cuuint64_t * id_out, CUgraph * graph_out,      \
       const CUgraphNode **dependencies_out, const CUgraphEdgeData **edgeData_out, size_t *numDependencies_out))  \
    X(cuStreamGetCaptureInfo_v3_ptsz, cuStreamGetCaptureInfo, 12030, 1, CUresult,                                  \
      (CUstream hStream, CUstreamCaptureStatus * captureStatus_out, cuuint64_t * id_out, CUgraph * graph_out,      \
       const CUgraphNode **dependencies_out, const CUgraphEdgeData **edgeData_out, size_t *numDependencies_out))  \
    /* graphs (nodes run one after another, in the order they were added; cuGraphLaunch is with the launches) */   \
    X(cuGraphCreate, cuGraphCreate, 10000, 0, CUresult, (CUgraph * phGraph, unsigned int flags))                   \
    X(cuGraphAddKernelNode, cuGraphAddKernelNode, 10000, 0, CUresult,                                              \
      (CUgraphNode * phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies, size_t numDependencies,         \
       const CUDA_KERNEL_NODE_PARAMS_v1 *nodeParams))                                                              \
    X(cuGraphAddKernelNode_v2, cuGraphAddKernelNode, 12000, 0, CUresult,                                           \
      (CUgraphNode * phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies, size_t numDependencies,         \
       const CUDA_KERNEL_NODE_PARAMS_v2 *nodeParams))                                                              \
    X(cuGraphKernelNodeGetParams, cuGraphKernelNodeGetParams, 10000, 0, CUresult,                                  \
      (CUgraphNode hNode, CUDA_KERNEL_NODE_PARAMS_v1 * nodeParams))                                                \
    X(cuGraphKernelNodeGetParams_v2, cuGraphKernelNodeGetParams, 12000, 0, CUresult,                               \
      (CUgraphNode hNode, CUDA_KERNEL_NODE_PARAMS_v2 * nodeParams))                                                \
    X(cuGraphGetNodes, cuGraphGetNodes, 10000, 0, CUresult, (CUgraph hGraph, CUgraphNode * nodes, size_t * numNodes)) \
    X(cuGraphNodeGetType, cuGraphNodeGetType, 10000, 0, CUresult, (CUgraphNode hNode, CUgraphNodeType * type))     \
    X(cuGraphInstantiate, cuGraphInstantiate, 10000, 0, CUresult,                                                  \
      (CUgraphExec * phGraphExec, CUgraph hGraph, CUgraphNode * phErrorNode, char *logBuffer, size_t bufferSize))  \
    X(cuGraphInstantiate_v2, cuGraphInstantiate, 11000, 0, CUresult,                                               \
      (CUgraphExec * phGraphExec, CUgraph hGraph, CUgraphNode * phErrorNode, char *logBuffer, size_t bufferSize))  \
    X(cuGraphInstantiateWithFlags, cuGraphInstantiateWithFlags, 11040, 0, CUresult,                                \
      (CUgraphExec * phGraphExec, CUgraph hGraph, unsigned long long flags))                                       \
    X(cuGraphInstantiateWithParams, cuGraphInstantiateWithParams, 12000, 0, CUresult,                              \
      (CUgraphExec * phGraphExec, CUgraph hGraph, CUDA_GRAPH_INSTANTIATE_PARAMS * instantiateParams))              \
    X(cuGraphInstantiateWithParams_ptsz, cuGraphInstantiateWithParams, 12000, 1, CUresult,                         \
      (CUgraphExec * phGraphExec, CUgraph hGraph, CUDA_GRAPH_INSTANTIATE_PARAMS * instantiateParams))              \
    X(cuGraphExecDestroy, cuGraphExecDestroy, 10000, 0, CUresult, (CUgraphExec hGraphExec))                        \
    X(cuGraphDestroy, cuGraphDestroy, 10000, 0, CUresult, (CUgraph hGraph))                                       \
    /* graph memory (graph_mem.c) */                                                                               \
    X(cuGraphAddMemAllocNode, cuGraphAddMemAllocNode, 11040, 0, CUresult,                                          \
      (CUgraphNode * phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies, size_t numDependencies,         \
       CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams))                                                                    \
    X(cuGraphAddMemFreeNode, cuGraphAddMemFreeNode, 11040, 0, CUresult,                                            \
      (CUgraphNode * phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies, size_t numDependencies,         \
       CUdeviceptr dptr))                                                                                          \
    X(cuGraphMemAllocNodeGetParams, cuGraphMemAllocNodeGetParams, 11040, 0, CUresult,                              \
      (CUgraphNode hNode, CUDA_MEM_ALLOC_NODE_PARAMS * params_out))                                                \
    X(cuGraphMemFreeNodeGetParams, cuGraphMemFreeNodeGetParams, 11040, 0, CUresult,                                \
      (CUgraphNode hNode, CUdeviceptr * dptr_out))                                                                 \
    X(cuDeviceGraphMemTrim, cuDeviceGraphMemTrim, 11040, 0, CUresult, (CUdevice device))                           \
    X(cuDeviceGetGraphMemAttribute, cuDeviceGetGraphMemAttribute, 11040, 0, CUresult,                              \
      (CUdevice device, CUgraphMem_attribute attr, void *value))                                                   \
    X(cuDeviceSetGraphMemAttribute, cuDeviceSetGraphMemAttribute, 11040, 0, CUresult,                              \
      (CUdevice device, CUgraphMem_attribute attr, void *value))

#define SIM_DECLARE_EXPORT(symbol, base, since, per_thread, ret, params) SIM_EXPORT ret symbol params;
SIM_CUDA_EXPORTS(SIM_DECLARE_EXPORT)
#undef SIM_DECLARE_EXPORT

/* Simulator-only API for tests (not reachable through cuGetProcAddress). Both return 0 on success.
 * fcspSimStats reaps dead processes first and works without cuInit (it then reads $FCSP_SIM_DIR). */
SIM_EXPORT int fcspSimStats(int dev, unsigned long long *live_bytes, unsigned long long *peak_bytes);
SIM_EXPORT int fcspSimResetPeak(int dev);

#endif
