/* Kernel launches. Memory caps do not touch them: they forward with one predictable branch (the compute-cap work
 * adds its token buckets here). */
#include "interposer/hook_lookup.h"
#include "interposer/real_driver.h"

FCSP_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                                    unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                                    unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
    fcsp_pfn_cuLaunchKernel real = FCSP_REAL(cuLaunchKernel);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    return real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                kernelParams, extra);
}

FCSP_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                         unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                         unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                         void **kernelParams, void **extra)
{
    fcsp_pfn_cuLaunchKernel_ptsz real = FCSP_REAL(cuLaunchKernel_ptsz);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    return real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                kernelParams, extra);
}

FCSP_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra)
{
    fcsp_pfn_cuLaunchKernelEx real = FCSP_REAL(cuLaunchKernelEx);
    return real ? real(config, f, kernelParams, extra) : CUDA_ERROR_NOT_FOUND;
}

FCSP_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f, void **kernelParams,
                                           void **extra)
{
    fcsp_pfn_cuLaunchKernelEx_ptsz real = FCSP_REAL(cuLaunchKernelEx_ptsz);
    return real ? real(config, f, kernelParams, extra) : CUDA_ERROR_NOT_FOUND;
}

FCSP_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                               unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                               unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                               void **kernelParams)
{
    fcsp_pfn_cuLaunchCooperativeKernel real = FCSP_REAL(cuLaunchCooperativeKernel);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    return real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                kernelParams);
}

FCSP_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                                    unsigned int gridDimZ, unsigned int blockDimX,
                                                    unsigned int blockDimY, unsigned int blockDimZ,
                                                    unsigned int sharedMemBytes, CUstream hStream, void **kernelParams)
{
    fcsp_pfn_cuLaunchCooperativeKernel_ptsz real = FCSP_REAL(cuLaunchCooperativeKernel_ptsz);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    return real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                kernelParams);
}

FCSP_EXPORT CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
    fcsp_pfn_cuGraphLaunch real = FCSP_REAL(cuGraphLaunch);
    return real ? real(hGraphExec, hStream) : CUDA_ERROR_NOT_FOUND;
}

FCSP_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
    fcsp_pfn_cuGraphLaunch_ptsz real = FCSP_REAL(cuGraphLaunch_ptsz);
    return real ? real(hGraphExec, hStream) : CUDA_ERROR_NOT_FOUND;
}
