/* Kernel launches. Kernels do not run: a grid takes waves x wave time, where a wave is what all SMs hold at once
 * (blocks per SM = min(32, 2048 / threads per block)), and occupies min(SMs, ceil(blocks / blocks per SM)) SMs of
 * the GPU's shared timeline. */
#include <math.h>

#include "sim_cuda.h"

#define SIM_MAX_BLOCKS_PER_SM 32
#define SIM_MAX_THREADS_PER_SM 2048

static int blocks_per_sm(uint64_t threads)
{
    uint64_t b = SIM_MAX_THREADS_PER_SM / threads;
    if (b > SIM_MAX_BLOCKS_PER_SM)
        b = SIM_MAX_BLOCKS_PER_SM;
    return b < 1 ? 1 : (int)b;
}

SIM_EXPORT CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *numBlocks, CUfunction func, int blockSize,
                                                                size_t dynamicSMemSize)
{
    CUresult rc = sim_function_check(func);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (numBlocks == NULL || blockSize <= 0 || blockSize > 1024)
        return CUDA_ERROR_INVALID_VALUE;
    *numBlocks = blocks_per_sm((uint64_t)blockSize);
    return CUDA_SUCCESS;
}

struct launch {
    CUfunction f;
    unsigned int grid[3], block[3];
    CUstream stream;
    int per_thread;
    int cooperative;
};

static CUresult launch(const struct launch *l)
{
    CUresult rc = sim_function_check(l->f);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUstream_st *s;
    rc = sim_stream_resolve(l->stream, l->per_thread, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (l->grid[0] == 0 || l->grid[1] == 0 || l->grid[2] == 0 || l->grid[1] > 65535 || l->grid[2] > 65535 ||
        l->grid[0] > 2147483647u)
        return CUDA_ERROR_INVALID_VALUE;
    if (l->block[0] == 0 || l->block[1] == 0 || l->block[2] == 0 || l->block[0] > 1024 || l->block[1] > 1024 ||
        l->block[2] > 64)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t threads = (uint64_t)l->block[0] * l->block[1] * l->block[2];
    if (threads > 1024)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t blocks = (uint64_t)l->grid[0] * l->grid[1] * l->grid[2];
    uint64_t sms = g_sim_sh->gpu[s->dev].sms;
    uint64_t bps = (uint64_t)blocks_per_sm(threads);
    uint64_t per_wave = sms * bps;
    if (l->cooperative && blocks > per_wave)
        return CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE;
    uint64_t waves = (blocks + per_wave - 1) / per_wave;
    uint64_t nsms = (blocks + bps - 1) / bps;
    if (nsms > sms)
        nsms = sms;
    double dur = (double)waves * l->f->wave_us * 1000.0;
    int64_t dur_ns = dur > 9e18 ? (int64_t)9e18 : (int64_t)llround(dur);
    sim_exec_enqueue(s, (int)nsms, dur_ns);
    return CUDA_SUCCESS;
}

static CUresult launch_kernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                              unsigned int by, unsigned int bz, CUstream h, void **params, void **extra, int pt,
                              int coop)
{
    if (params != NULL && extra != NULL)
        return CUDA_ERROR_INVALID_VALUE; /* one way of passing arguments, not both */
    struct launch l = {f, {gx, gy, gz}, {bx, by, bz}, h, pt, coop};
    return launch(&l);
}

SIM_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                                   unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                                   unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
    return launch_kernel(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream, kernelParams,
                         extra, 0, 0);
}

SIM_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                        unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                        unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                        void **kernelParams, void **extra)
{
    return launch_kernel(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream, kernelParams,
                         extra, 1, 0);
}

SIM_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                              unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                              unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                              void **kernelParams)
{
    return launch_kernel(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream, kernelParams,
                         NULL, 0, 1);
}

SIM_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                                   unsigned int gridDimZ, unsigned int blockDimX,
                                                   unsigned int blockDimY, unsigned int blockDimZ,
                                                   unsigned int sharedMemBytes, CUstream hStream, void **kernelParams)
{
    return launch_kernel(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream, kernelParams,
                         NULL, 1, 1);
}

static CUresult launch_ex(const CUlaunchConfig *config, CUfunction f, void **params, void **extra, int pt)
{
    if (config == NULL || (config->numAttrs > 0 && config->attrs == NULL))
        return CUDA_ERROR_INVALID_VALUE;
    int coop = 0;
    for (unsigned int i = 0; i < config->numAttrs; i++)
        if (config->attrs[i].id == CU_LAUNCH_ATTRIBUTE_COOPERATIVE && config->attrs[i].value.cooperative)
            coop = 1;
    return launch_kernel(f, config->gridDimX, config->gridDimY, config->gridDimZ, config->blockDimX,
                         config->blockDimY, config->blockDimZ, config->hStream, params, extra, pt, coop);
}

SIM_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra)
{
    return launch_ex(config, f, kernelParams, extra, 0);
}

SIM_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f, void **kernelParams,
                                          void **extra)
{
    return launch_ex(config, f, kernelParams, extra, 1);
}

/* Graphs cannot be built on the simulator, so no executable graph handle is valid. */
SIM_EXPORT CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
    CUresult rc = sim_require_init();
    return rc != CUDA_SUCCESS ? rc : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
    return cuGraphLaunch(hGraphExec, hStream);
}
