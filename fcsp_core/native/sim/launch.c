/* Kernel launches. Kernels do not run: a grid takes waves x wave time, where a wave is what all SMs hold at once
 * (blocks per SM = min(32, 2048 / threads per block)), and occupies min(SMs, ceil(blocks / blocks per SM)) SMs of
 * the GPU's shared timeline. A launch on a capturing stream becomes a kernel node of the capture graph instead;
 * a launched graph's kernel nodes take the same path (sim_kernel_enqueue) as launches. */
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

CUresult sim_kernel_model(const struct sim_kernel *k, int dev, int *nsms, int64_t *dur_ns)
{
    CUresult rc = sim_function_check(k->f);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (k->grid[0] == 0 || k->grid[1] == 0 || k->grid[2] == 0 || k->grid[1] > 65535 || k->grid[2] > 65535 ||
        k->grid[0] > 2147483647u)
        return CUDA_ERROR_INVALID_VALUE;
    if (k->block[0] == 0 || k->block[1] == 0 || k->block[2] == 0 || k->block[0] > 1024 || k->block[1] > 1024 ||
        k->block[2] > 64)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t threads = (uint64_t)k->block[0] * k->block[1] * k->block[2];
    if (threads > 1024)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t blocks = (uint64_t)k->grid[0] * k->grid[1] * k->grid[2];
    uint64_t sms = g_sim_sh->gpu[dev].sms;
    uint64_t bps = (uint64_t)blocks_per_sm(threads);
    uint64_t per_wave = sms * bps;
    if (k->cooperative && blocks > per_wave)
        return CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE;
    uint64_t waves = (blocks + per_wave - 1) / per_wave;
    uint64_t used = (blocks + bps - 1) / bps;
    if (used > sms)
        used = sms;
    double dur = (double)waves * k->f->wave_us * 1000.0;
    *nsms = (int)used;
    *dur_ns = dur > 9e18 ? (int64_t)9e18 : (int64_t)llround(dur);
    return CUDA_SUCCESS;
}

CUresult sim_kernel_enqueue(struct CUstream_st *s, const struct sim_kernel *k)
{
    int nsms;
    int64_t dur_ns;
    CUresult rc = sim_kernel_model(k, s->dev, &nsms, &dur_ns);
    if (rc == CUDA_SUCCESS)
        sim_exec_enqueue(s, nsms, dur_ns);
    return rc;
}

static CUresult launch_kernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                              unsigned int by, unsigned int bz, unsigned int shmem, CUstream h, void **params,
                              void **extra, int pt, int coop)
{
    if (params != NULL && extra != NULL)
        return CUDA_ERROR_INVALID_VALUE; /* one way of passing arguments, not both */
    CUresult rc = sim_function_check(f);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUstream_st *s;
    rc = sim_stream_resolve(h, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct sim_kernel k = {f, {gx, gy, gz}, {bx, by, bz}, shmem, coop};
    struct sim_capture_op op = {SIM_CAPTURE_KERNEL, &k, 0, NULL};
    if (sim_capture(s, &op, &rc))
        return rc; /* recorded into the stream's capture graph, not run */
    return sim_kernel_enqueue(s, &k);
}

SIM_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                                   unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                                   unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
    return launch_kernel(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                         kernelParams, extra, 0, 0);
}

SIM_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                        unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                        unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                        void **kernelParams, void **extra)
{
    return launch_kernel(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                         kernelParams, extra, 1, 0);
}

SIM_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                              unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                              unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                              void **kernelParams)
{
    return launch_kernel(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                         kernelParams, NULL, 0, 1);
}

SIM_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                                   unsigned int gridDimZ, unsigned int blockDimX,
                                                   unsigned int blockDimY, unsigned int blockDimZ,
                                                   unsigned int sharedMemBytes, CUstream hStream, void **kernelParams)
{
    return launch_kernel(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                         kernelParams, NULL, 1, 1);
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
                         config->blockDimY, config->blockDimZ, config->sharedMemBytes, config->hStream, params,
                         extra, pt, coop);
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
