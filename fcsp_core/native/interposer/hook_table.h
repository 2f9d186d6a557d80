/* The one list of hooked driver functions. Add a hook here (one line) and define its wrapper in the file of its
 * family (hooks_mem.c, hooks_module.c, hooks_query.c, hooks_launch.c, hooks_resolve.c); everything else derives from this list:
 * the real-function pointers (real_driver.c), the dlsym and cuGetProcAddress lookups (hook_lookup.c), the export
 * list check (tests/test_exports.py), the prototype check against NVIDIA's headers (tests/test_abi.py) and the
 * check that the simulated driver declares each function the same way (tests/native/sim_hooks_agree.c).
 *
 * FCSP_CUDA_HOOKS(X) expands X(symbol, base, since, variant, ret, params, args):
 *   symbol  - the exported ABI symbol we define (cuMemAlloc_v2)
 *   base    - the name cuGetProcAddress is asked for (cuMemAlloc)
 *   since   - the CUDA version that introduced this ABI (as in cudaTypedefs.h's PFN_<base>_v<since>)
 *   variant - empty, or _ptsz / _ptds for per-thread default stream forms
 * The types in params are those of cuda.h (ours: include/fcsp/cuda_abi.h). This file deliberately includes no
 * header so the ABI test can expand it against NVIDIA's cuda.h.
 */
#ifndef FCSP_HOOK_TABLE_H
#define FCSP_HOOK_TABLE_H

#define FCSP_NO_VARIANT

#define FCSP_CUDA_HOOKS(X)                                                                                          \
    /* cuGetProcAddress: hands out our wrappers for the functions below */                                         \
    X(cuGetProcAddress, cuGetProcAddress, 11030, FCSP_NO_VARIANT, CUresult,                                         \
      (const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags), (symbol, pfn, cudaVersion, flags))       \
    X(cuGetProcAddress_v2, cuGetProcAddress, 12000, FCSP_NO_VARIANT, CUresult,                                      \
      (const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags, CUdriverProcAddressQueryResult *status),  \
      (symbol, pfn, cudaVersion, flags, status))                                                                    \
    /* linear allocations */                                                                                        \
    X(cuMemAlloc, cuMemAlloc, 2000, FCSP_NO_VARIANT, CUresult, (CUdeviceptr_v1 * dptr, unsigned int bytesize),      \
      (dptr, bytesize))                                                                                             \
    X(cuMemAlloc_v2, cuMemAlloc, 3020, FCSP_NO_VARIANT, CUresult, (CUdeviceptr * dptr, size_t bytesize),            \
      (dptr, bytesize))                                                                                             \
    X(cuMemAllocPitch, cuMemAllocPitch, 2000, FCSP_NO_VARIANT, CUresult,                                            \
      (CUdeviceptr_v1 * dptr, unsigned int *pPitch, unsigned int WidthInBytes, unsigned int Height,                 \
       unsigned int ElementSizeBytes),                                                                              \
      (dptr, pPitch, WidthInBytes, Height, ElementSizeBytes))                                                       \
    X(cuMemAllocPitch_v2, cuMemAllocPitch, 3020, FCSP_NO_VARIANT, CUresult,                                         \
      (CUdeviceptr * dptr, size_t *pPitch, size_t WidthInBytes, size_t Height, unsigned int ElementSizeBytes),       \
      (dptr, pPitch, WidthInBytes, Height, ElementSizeBytes))                                                       \
    X(cuMemAllocManaged, cuMemAllocManaged, 6000, FCSP_NO_VARIANT, CUresult,                                        \
      (CUdeviceptr * dptr, size_t bytesize, unsigned int flags), (dptr, bytesize, flags))                          \
    X(cuMemFree, cuMemFree, 2000, FCSP_NO_VARIANT, CUresult, (CUdeviceptr_v1 dptr), (dptr))                        \
    X(cuMemFree_v2, cuMemFree, 3020, FCSP_NO_VARIANT, CUresult, (CUdeviceptr dptr), (dptr))                        \
    /* stream-ordered allocations and pools */                                                                      \
    X(cuMemAllocAsync, cuMemAllocAsync, 11020, FCSP_NO_VARIANT, CUresult,                                           \
      (CUdeviceptr * dptr, size_t bytesize, CUstream hStream), (dptr, bytesize, hStream))                          \
    X(cuMemAllocAsync_ptsz, cuMemAllocAsync, 11020, _ptsz, CUresult,                                                \
      (CUdeviceptr * dptr, size_t bytesize, CUstream hStream), (dptr, bytesize, hStream))                          \
    X(cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync, 11020, FCSP_NO_VARIANT, CUresult,                           \
      (CUdeviceptr * dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream), (dptr, bytesize, pool, hStream)) \
    X(cuMemAllocFromPoolAsync_ptsz, cuMemAllocFromPoolAsync, 11020, _ptsz, CUresult,                                \
      (CUdeviceptr * dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream), (dptr, bytesize, pool, hStream)) \
    X(cuMemFreeAsync, cuMemFreeAsync, 11020, FCSP_NO_VARIANT, CUresult, (CUdeviceptr dptr, CUstream hStream),       \
      (dptr, hStream))                                                                                              \
    X(cuMemFreeAsync_ptsz, cuMemFreeAsync, 11020, _ptsz, CUresult, (CUdeviceptr dptr, CUstream hStream),            \
      (dptr, hStream))                                                                                              \
    X(cuMemPoolTrimTo, cuMemPoolTrimTo, 11020, FCSP_NO_VARIANT, CUresult,                                           \
      (CUmemoryPool pool, size_t minBytesToKeep), (pool, minBytesToKeep))                                           \
    X(cuMemPoolDestroy, cuMemPoolDestroy, 11020, FCSP_NO_VARIANT, CUresult, (CUmemoryPool pool), (pool))           \
    X(cuMemPoolCreate, cuMemPoolCreate, 11020, FCSP_NO_VARIANT, CUresult,                                           \
      (CUmemoryPool * pool, const CUmemPoolProps *poolProps), (pool, poolProps))                                    \
    /* virtual memory management */                                                                                 \
    X(cuMemCreate, cuMemCreate, 10020, FCSP_NO_VARIANT, CUresult,                                                   \
      (CUmemGenericAllocationHandle * handle, size_t size, const CUmemAllocationProp *prop,                         \
       unsigned long long flags),                                                                                   \
      (handle, size, prop, flags))                                                                                  \
    X(cuMemRelease, cuMemRelease, 10020, FCSP_NO_VARIANT, CUresult, (CUmemGenericAllocationHandle handle),         \
      (handle))                                                                                                     \
    X(cuMemRetainAllocationHandle, cuMemRetainAllocationHandle, 11000, FCSP_NO_VARIANT, CUresult,                   \
      (CUmemGenericAllocationHandle * handle, void *addr), (handle, addr))                                          \
    X(cuMemMap, cuMemMap, 10020, FCSP_NO_VARIANT, CUresult,                                                         \
      (CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle, unsigned long long flags),  \
      (ptr, size, offset, handle, flags))                                                                           \
    X(cuMemUnmap, cuMemUnmap, 10020, FCSP_NO_VARIANT, CUresult, (CUdeviceptr ptr, size_t size), (ptr, size))       \
    /* graph memory: what graphs allocate is charged from the launch that materialises it */                       \
    X(cuGraphInstantiate, cuGraphInstantiate, 10000, FCSP_NO_VARIANT, CUresult,                                     \
      (CUgraphExec * phGraphExec, CUgraph hGraph, CUgraphNode * phErrorNode, char *logBuffer, size_t bufferSize),   \
      (phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize))                                                    \
    X(cuGraphInstantiate_v2, cuGraphInstantiate, 11000, FCSP_NO_VARIANT, CUresult,                                  \
      (CUgraphExec * phGraphExec, CUgraph hGraph, CUgraphNode * phErrorNode, char *logBuffer, size_t bufferSize),   \
      (phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize))                                                    \
    X(cuGraphInstantiateWithFlags, cuGraphInstantiateWithFlags, 11040, FCSP_NO_VARIANT, CUresult,                   \
      (CUgraphExec * phGraphExec, CUgraph hGraph, unsigned long long flags), (phGraphExec, hGraph, flags))         \
    X(cuGraphInstantiateWithParams, cuGraphInstantiateWithParams, 12000, FCSP_NO_VARIANT, CUresult,                 \
      (CUgraphExec * phGraphExec, CUgraph hGraph, CUDA_GRAPH_INSTANTIATE_PARAMS * instantiateParams),               \
      (phGraphExec, hGraph, instantiateParams))                                                                     \
    X(cuGraphInstantiateWithParams_ptsz, cuGraphInstantiateWithParams, 12000, _ptsz, CUresult,                      \
      (CUgraphExec * phGraphExec, CUgraph hGraph, CUDA_GRAPH_INSTANTIATE_PARAMS * instantiateParams),               \
      (phGraphExec, hGraph, instantiateParams))                                                                     \
    X(cuGraphExecDestroy, cuGraphExecDestroy, 10000, FCSP_NO_VARIANT, CUresult, (CUgraphExec hGraphExec),           \
      (hGraphExec))                                                                                                 \
    X(cuDeviceGraphMemTrim, cuDeviceGraphMemTrim, 11040, FCSP_NO_VARIANT, CUresult, (CUdevice device), (device))   \
    /* modules and libraries: their globals are charged from the load to the unload (hooks_module.c) */            \
    X(cuModuleLoad, cuModuleLoad, 2000, FCSP_NO_VARIANT, CUresult, (CUmodule * module, const char *fname),           \
      (module, fname))                                                                                              \
    X(cuModuleLoadData, cuModuleLoadData, 2000, FCSP_NO_VARIANT, CUresult, (CUmodule * module, const void *image),   \
      (module, image))                                                                                              \
    X(cuModuleLoadDataEx, cuModuleLoadDataEx, 2010, FCSP_NO_VARIANT, CUresult,                                      \
      (CUmodule * module, const void *image, unsigned int numOptions, CUjit_option *options, void **optionValues),  \
      (module, image, numOptions, options, optionValues))                                                           \
    X(cuModuleLoadFatBinary, cuModuleLoadFatBinary, 2000, FCSP_NO_VARIANT, CUresult,                                \
      (CUmodule * module, const void *fatCubin), (module, fatCubin))                                                \
    X(cuModuleUnload, cuModuleUnload, 2000, FCSP_NO_VARIANT, CUresult, (CUmodule hmod), (hmod))                     \
    X(cuLibraryLoadData, cuLibraryLoadData, 12000, FCSP_NO_VARIANT, CUresult,                                       \
      (CUlibrary * library, const void *code, CUjit_option *jitOptions, void **jitOptionsValues,                   \
       unsigned int numJitOptions, CUlibraryOption *libraryOptions, void **libraryOptionValues,                    \
       unsigned int numLibraryOptions),                                                                             \
      (library, code, jitOptions, jitOptionsValues, numJitOptions, libraryOptions, libraryOptionValues,            \
       numLibraryOptions))                                                                                          \
    X(cuLibraryLoadFromFile, cuLibraryLoadFromFile, 12000, FCSP_NO_VARIANT, CUresult,                               \
      (CUlibrary * library, const char *fileName, CUjit_option *jitOptions, void **jitOptionsValues,               \
       unsigned int numJitOptions, CUlibraryOption *libraryOptions, void **libraryOptionValues,                    \
       unsigned int numLibraryOptions),                                                                             \
      (library, fileName, jitOptions, jitOptionsValues, numJitOptions, libraryOptions, libraryOptionValues,        \
       numLibraryOptions))                                                                                          \
    X(cuLibraryUnload, cuLibraryUnload, 12000, FCSP_NO_VARIANT, CUresult, (CUlibrary library), (library))            \
    /* arrays */                                                                                                    \
    X(cuArrayCreate, cuArrayCreate, 2000, FCSP_NO_VARIANT, CUresult,                                                \
      (CUarray * pHandle, const CUDA_ARRAY_DESCRIPTOR_v1 *pAllocateArray), (pHandle, pAllocateArray))              \
    X(cuArrayCreate_v2, cuArrayCreate, 3020, FCSP_NO_VARIANT, CUresult,                                             \
      (CUarray * pHandle, const CUDA_ARRAY_DESCRIPTOR *pAllocateArray), (pHandle, pAllocateArray))                 \
    X(cuArray3DCreate, cuArray3DCreate, 2000, FCSP_NO_VARIANT, CUresult,                                            \
      (CUarray * pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1 *pAllocateArray), (pHandle, pAllocateArray))            \
    X(cuArray3DCreate_v2, cuArray3DCreate, 3020, FCSP_NO_VARIANT, CUresult,                                         \
      (CUarray * pHandle, const CUDA_ARRAY3D_DESCRIPTOR *pAllocateArray), (pHandle, pAllocateArray))               \
    X(cuArrayDestroy, cuArrayDestroy, 2000, FCSP_NO_VARIANT, CUresult, (CUarray hArray), (hArray))                  \
    X(cuMipmappedArrayCreate, cuMipmappedArrayCreate, 5000, FCSP_NO_VARIANT, CUresult,                              \
      (CUmipmappedArray * pHandle, const CUDA_ARRAY3D_DESCRIPTOR *pMipmappedArrayDesc,                              \
       unsigned int numMipmapLevels),                                                                               \
      (pHandle, pMipmappedArrayDesc, numMipmapLevels))                                                              \
    X(cuMipmappedArrayDestroy, cuMipmappedArrayDestroy, 5000, FCSP_NO_VARIANT, CUresult,                            \
      (CUmipmappedArray hMipmappedArray), (hMipmappedArray))                                                        \
    /* what the application sees */                                                                                 \
    X(cuMemGetInfo, cuMemGetInfo, 2000, FCSP_NO_VARIANT, CUresult, (unsigned int *free, unsigned int *total),       \
      (free, total))                                                                                                \
    X(cuMemGetInfo_v2, cuMemGetInfo, 3020, FCSP_NO_VARIANT, CUresult, (size_t *free, size_t *total),               \
      (free, total))                                                                                                \
    X(cuDeviceTotalMem, cuDeviceTotalMem, 2000, FCSP_NO_VARIANT, CUresult, (unsigned int *bytes, CUdevice dev),     \
      (bytes, dev))                                                                                                 \
    X(cuDeviceTotalMem_v2, cuDeviceTotalMem, 3020, FCSP_NO_VARIANT, CUresult, (size_t *bytes, CUdevice dev),       \
      (bytes, dev))                                                                                                 \
    /* launches (compute caps hook in here) */                                                                      \
    X(cuLaunchKernel, cuLaunchKernel, 4000, FCSP_NO_VARIANT, CUresult,                                              \
      (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ, unsigned int blockDimX,   \
       unsigned int blockDimY, unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,               \
       void **kernelParams, void **extra),                                                                          \
      (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream, kernelParams,     \
       extra))                                                                                                      \
    X(cuLaunchKernel_ptsz, cuLaunchKernel, 7000, _ptsz, CUresult,                                                   \
      (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ, unsigned int blockDimX,   \
       unsigned int blockDimY, unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,               \
       void **kernelParams, void **extra),                                                                          \
      (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream, kernelParams,     \
       extra))                                                                                                      \
    X(cuLaunchKernelEx, cuLaunchKernelEx, 11060, FCSP_NO_VARIANT, CUresult,                                         \
      (const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra),                             \
      (config, f, kernelParams, extra))                                                                             \
    X(cuLaunchKernelEx_ptsz, cuLaunchKernelEx, 11060, _ptsz, CUresult,                                              \
      (const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra),                             \
      (config, f, kernelParams, extra))                                                                             \
    X(cuLaunchCooperativeKernel, cuLaunchCooperativeKernel, 9000, FCSP_NO_VARIANT, CUresult,                        \
      (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ, unsigned int blockDimX,   \
       unsigned int blockDimY, unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,               \
       void **kernelParams),                                                                                        \
      (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream, kernelParams))    \
    X(cuLaunchCooperativeKernel_ptsz, cuLaunchCooperativeKernel, 9000, _ptsz, CUresult,                             \
      (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ, unsigned int blockDimX,   \
       unsigned int blockDimY, unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,               \
       void **kernelParams),                                                                                        \
      (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream, kernelParams))    \
    X(cuGraphLaunch, cuGraphLaunch, 10000, FCSP_NO_VARIANT, CUresult, (CUgraphExec hGraphExec, CUstream hStream),   \
      (hGraphExec, hStream))                                                                                        \
    X(cuGraphLaunch_ptsz, cuGraphLaunch, 10000, _ptsz, CUresult, (CUgraphExec hGraphExec, CUstream hStream),        \
      (hGraphExec, hStream))                                                                                        \
    /* stream capture (open captures: launches into them are not charged, fcsp's unsafe calls stand aside) */      \
    X(cuStreamBeginCapture, cuStreamBeginCapture, 10000, FCSP_NO_VARIANT, CUresult, (CUstream hStream), (hStream))  \
    X(cuStreamBeginCapture_ptsz, cuStreamBeginCapture, 10000, _ptsz, CUresult, (CUstream hStream), (hStream))       \
    X(cuStreamBeginCapture_v2, cuStreamBeginCapture, 10010, FCSP_NO_VARIANT, CUresult,                              \
      (CUstream hStream, CUstreamCaptureMode mode), (hStream, mode))                                                \
    X(cuStreamBeginCapture_v2_ptsz, cuStreamBeginCapture, 10010, _ptsz, CUresult,                                   \
      (CUstream hStream, CUstreamCaptureMode mode), (hStream, mode))                                                \
    X(cuStreamBeginCaptureToGraph, cuStreamBeginCaptureToGraph, 12030, FCSP_NO_VARIANT, CUresult,                \
      (CUstream hStream, CUgraph hGraph, const CUgraphNode *dependencies, const CUgraphEdgeData *dependencyData,    \
       size_t numDependencies, CUstreamCaptureMode mode),                                                           \
      (hStream, hGraph, dependencies, dependencyData, numDependencies, mode))                                       \
    X(cuStreamBeginCaptureToGraph_ptsz, cuStreamBeginCaptureToGraph, 12030, _ptsz, CUresult,                        \
      (CUstream hStream, CUgraph hGraph, const CUgraphNode *dependencies, const CUgraphEdgeData *dependencyData,    \
       size_t numDependencies, CUstreamCaptureMode mode),                                                           \
      (hStream, hGraph, dependencies, dependencyData, numDependencies, mode))                                       \
    X(cuStreamEndCapture, cuStreamEndCapture, 10000, FCSP_NO_VARIANT, CUresult, (CUstream hStream, CUgraph * phGraph), \
      (hStream, phGraph))                                                                                           \
    X(cuStreamEndCapture_ptsz, cuStreamEndCapture, 10000, _ptsz, CUresult, (CUstream hStream, CUgraph * phGraph),   \
      (hStream, phGraph))

/* Driver functions fcsp calls but does not wrap (resolved with the hooks, never exported).
 * X(symbol, ret, params) */
#define FCSP_CUDA_USED(X)                                                                                           \
    X(cuCtxGetDevice, CUresult, (CUdevice * device))                                                               \
    X(cuDeviceGet, CUresult, (CUdevice * device, int ordinal))                                                     \
    X(cuDeviceGetUuid, CUresult, (CUuuid * uuid, CUdevice dev))                                                    \
    X(cuDeviceGetUuid_v2, CUresult, (CUuuid * uuid, CUdevice dev))                                                 \
    X(cuDeviceGetAttribute, CUresult, (int *pi, CUdevice_attribute attrib, CUdevice dev))                          \
    X(cuMemPoolGetAttribute, CUresult, (CUmemoryPool pool, CUmemPool_attribute attr, void *value))                \
    X(cuCtxGetCurrent, CUresult, (CUcontext * pctx))                                                               \
    X(cuCtxSetCurrent, CUresult, (CUcontext ctx))                                                                  \
    X(cuEventCreate, CUresult, (CUevent * phEvent, unsigned int Flags))                                            \
    X(cuEventRecord, CUresult, (CUevent hEvent, CUstream hStream))                                                 \
    X(cuEventQuery, CUresult, (CUevent hEvent))                                                                    \
    X(cuEventElapsedTime, CUresult, (float *pMilliseconds, CUevent hStart, CUevent hEnd))                          \
    X(cuEventDestroy_v2, CUresult, (CUevent hEvent))                                                               \
    X(cuStreamIsCapturing, CUresult, (CUstream hStream, CUstreamCaptureStatus * captureStatus))                    \
    X(cuStreamQuery, CUresult, (CUstream hStream))                                                                 \
    X(cuThreadExchangeStreamCaptureMode, CUresult, (CUstreamCaptureMode * mode))                                   \
    X(cuFuncGetName, CUresult, (const char **name, CUfunction hfunc))                                             \
    X(cuOccupancyMaxActiveBlocksPerMultiprocessor, CUresult,                                                       \
      (int *numBlocks, CUfunction func, int blockSize, size_t dynamicSMemSize))                                    \
    X(cuStreamGetDevice, CUresult, (CUstream hStream, CUdevice * device))                                          \
    X(cuDeviceGetMemPool, CUresult, (CUmemoryPool * pool, CUdevice dev))                                           \
    X(cuDeviceGetDefaultMemPool, CUresult, (CUmemoryPool * pool_out, CUdevice dev))                                \
    X(cuDeviceGetCount, CUresult, (int *count))                                                                    \
    X(cuGraphGetNodes, CUresult, (CUgraph hGraph, CUgraphNode * nodes, size_t * numNodes))                         \
    X(cuGraphNodeGetType, CUresult, (CUgraphNode hNode, CUgraphNodeType * type))                                   \
    X(cuGraphMemAllocNodeGetParams, CUresult, (CUgraphNode hNode, CUDA_MEM_ALLOC_NODE_PARAMS * params_out))        \
    X(cuGraphMemFreeNodeGetParams, CUresult, (CUgraphNode hNode, CUdeviceptr * dptr_out))                          \
    X(cuDeviceGetGraphMemAttribute, CUresult, (CUdevice device, CUgraphMem_attribute attr, void *value))

/* NVML functions we wrap: X(symbol, ret, params, args) */
#define FCSP_NVML_HOOKS(X)                                                                                          \
    X(nvmlDeviceGetMemoryInfo, nvmlReturn_t, (nvmlDevice_t device, nvmlMemory_t * memory), (device, memory))        \
    X(nvmlDeviceGetMemoryInfo_v2, nvmlReturn_t, (nvmlDevice_t device, nvmlMemory_v2_t * memory), (device, memory))

/* NVML functions fcsp calls but does not wrap: X(symbol, ret, params) */
#define FCSP_NVML_USED(X)                                                                                           \
    X(nvmlInit_v2, nvmlReturn_t, (void))                                                                            \
    X(nvmlDeviceGetUUID, nvmlReturn_t, (nvmlDevice_t device, char *uuid, unsigned int length))                   \
    X(nvmlDeviceGetIndex, nvmlReturn_t, (nvmlDevice_t device, unsigned int *index))

#endif /* FCSP_HOOK_TABLE_H */
