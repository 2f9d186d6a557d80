/* Kernel launches under compute caps (sm_limiter.c, kernel_cost.c).
 *
 * Fast path: a process whose tenant has no SM cap anywhere forwards after two loads. Otherwise a launch costs a
 * lookup of its function's learned GPU time, one compare-and-swap on the tenant's token bucket (and one on its
 * stream's), and waits only when the tenant is ahead of its share. NCCL kernels are recognised by name and bypass
 * throttling (FCSP_SM_NCCL_BYPASS=0 to charge them): throttling one rank's collective stalls every rank. A graph
 * launch is charged as one unit whose cost, like a kernel's, is learned from timed launches. Copies are never
 * charged. A launch into a stream capture is not executed: it is neither charged, throttled nor timed (the graph
 * launch is), and fcsp makes no call that could invalidate a capture (capture_watch.h). Graph memory is charged at
 * the graph launch that takes it (acct_graph.c). */
#include "interposer/acct.h"
#include "interposer/capture_watch.h"
#include "interposer/gpu_map.h"
#include "interposer/hook_lookup.h"
#include "interposer/kernel_cost.h"
#include "interposer/real_driver.h"
#include "interposer/sm_limiter.h"
#include "interposer/sm_spatial.h"
#include "interposer/state.h"

static inline int sm_capped_process(void)
{
    /* relaxed: a hint set at init or by a policy change, before launches depend on it */
    return fcsp_mode() == FCSP_MODE_ENFORCE && atomic_load_explicit(&fcsp_sm_possible, memory_order_relaxed);
}

/* Charge a launch and decide whether to time it. Returns the sample token (or NULL). */
static struct fcsp_sample *gate(const void *handle, int graph, uint64_t blocks, unsigned threads, unsigned smem,
                                CUstream stream, int per_thread)
{
    struct fcsp_dev *d = fcsp_dev_current();
    if (!d)
        return NULL;
    if (fcsp_spatial_on() || (fcsp_captures_open() && fcsp_stream_captures(stream, per_thread))) {
        fcsp_sm_count(d->gpu, 0, 0);
        return NULL;
    }
    struct fcsp_fn *fn = fcsp_fn_get(handle, graph);
    if (!fn)
        return NULL;
    if (fcsp_fn_class(fn) == FCSP_FN_NCCL && fcsp_g.cfg.nccl_bypass) {
        fcsp_sm_count(d->gpu, 0, 0);
        return NULL;
    }
    /* relaxed: see fcsp_sm_acquire */
    if (!atomic_load_explicit(&d->sm_limit_pct, memory_order_relaxed)) {
        fcsp_sm_count(d->gpu, 0, 0);
        return NULL;
    }
    uint64_t waves;
    fcsp_fn_wait_measured(fn);
    uint64_t cost = fcsp_fn_cost(fn, d, blocks, threads, smem, &waves);
    fcsp_sm_acquire(d, stream, cost);
    return fcsp_sample_begin(fn, stream, waves);
}

/* One shape for every launch entry point: CALL is the real call, the rest describes the launch. */
#define LAUNCH(real, handle, graph, blocks, threads, smem, stream, per_thread, CALL)                                \
    do {                                                                                                            \
        if (!(real))                                                                                                \
            return CUDA_ERROR_NOT_FOUND;                                                                            \
        if (__builtin_expect(!sm_capped_process(), 1))                                                              \
            return CALL;                                                                                            \
        struct fcsp_sample *s_ = gate((handle), (graph), (blocks), (threads), (smem), (stream), (per_thread));      \
        CUresult rc_ = CALL;                                                                                        \
        if (s_)                                                                                                     \
            fcsp_sample_end(s_, (stream), rc_);                                                                     \
        return rc_;                                                                                                 \
    } while (0)

#define GRID(x, y, z) ((uint64_t)(x) * (uint64_t)(y) * (uint64_t)(z))

FCSP_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                                    unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                                    unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
    fcsp_pfn_cuLaunchKernel real = FCSP_REAL(cuLaunchKernel);
    LAUNCH(real, f, 0, GRID(gridDimX, gridDimY, gridDimZ), blockDimX * blockDimY * blockDimZ, sharedMemBytes,
           hStream, 0,
           real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                kernelParams, extra));
}

FCSP_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                         unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                         unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                         void **kernelParams, void **extra)
{
    fcsp_pfn_cuLaunchKernel_ptsz real = FCSP_REAL(cuLaunchKernel_ptsz);
    LAUNCH(real, f, 0, GRID(gridDimX, gridDimY, gridDimZ), blockDimX * blockDimY * blockDimZ, sharedMemBytes,
           hStream, 1,
           real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                kernelParams, extra));
}

#define CFG_GRID(c) ((c) ? GRID((c)->gridDimX, (c)->gridDimY, (c)->gridDimZ) : 0)
#define CFG_THREADS(c) ((c) ? (c)->blockDimX * (c)->blockDimY * (c)->blockDimZ : 0)

FCSP_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra)
{
    fcsp_pfn_cuLaunchKernelEx real = FCSP_REAL(cuLaunchKernelEx);
    LAUNCH(real, f, 0, CFG_GRID(config), CFG_THREADS(config), config ? config->sharedMemBytes : 0,
           config ? config->hStream : NULL, 0, real(config, f, kernelParams, extra));
}

FCSP_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f, void **kernelParams,
                                           void **extra)
{
    fcsp_pfn_cuLaunchKernelEx_ptsz real = FCSP_REAL(cuLaunchKernelEx_ptsz);
    LAUNCH(real, f, 0, CFG_GRID(config), CFG_THREADS(config), config ? config->sharedMemBytes : 0,
           config ? config->hStream : NULL, 1, real(config, f, kernelParams, extra));
}

FCSP_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                               unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                               unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                               void **kernelParams)
{
    fcsp_pfn_cuLaunchCooperativeKernel real = FCSP_REAL(cuLaunchCooperativeKernel);
    LAUNCH(real, f, 0, GRID(gridDimX, gridDimY, gridDimZ), blockDimX * blockDimY * blockDimZ, sharedMemBytes,
           hStream, 0,
           real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                kernelParams));
}

FCSP_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                                    unsigned int gridDimZ, unsigned int blockDimX,
                                                    unsigned int blockDimY, unsigned int blockDimZ,
                                                    unsigned int sharedMemBytes, CUstream hStream, void **kernelParams)
{
    fcsp_pfn_cuLaunchCooperativeKernel_ptsz real = FCSP_REAL(cuLaunchCooperativeKernel_ptsz);
    LAUNCH(real, f, 0, GRID(gridDimX, gridDimY, gridDimZ), blockDimX * blockDimY * blockDimZ, sharedMemBytes,
           hStream, 1,
           real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
                kernelParams));
}

FCSP_EXPORT CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
    fcsp_pfn_cuGraphLaunch real = FCSP_REAL(cuGraphLaunch);
    LAUNCH(real, hGraphExec, 1, 0, 0, 0, hStream, 0, fcsp_gmem_launch(real, hGraphExec, hStream, 0));
}

FCSP_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
    fcsp_pfn_cuGraphLaunch_ptsz real = FCSP_REAL(cuGraphLaunch_ptsz);
    LAUNCH(real, hGraphExec, 1, 0, 0, 0, hStream, 1, fcsp_gmem_launch(real, hGraphExec, hStream, 1));
}

/* ---- stream capture: count the open ones (capture_watch.h) ---- */

/* A begin that failed opened nothing. */
static CUresult capture_begun(CUresult rc)
{
    if (rc != CUDA_SUCCESS)
        fcsp_capture_ended();
    return rc;
}

/* An end closed the capture unless it was refused before looking at one (no capture on the stream, the wrong
 * thread, a bad argument): a graph, an invalidated or an unjoined capture all end it. */
static CUresult capture_ended(CUresult rc)
{
    switch (rc) {
    case CUDA_ERROR_ILLEGAL_STATE:
    case CUDA_ERROR_STREAM_CAPTURE_UNMATCHED:
    case CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD:
    case CUDA_ERROR_INVALID_VALUE:
    case CUDA_ERROR_INVALID_HANDLE:
    case CUDA_ERROR_INVALID_CONTEXT:
    case CUDA_ERROR_NOT_INITIALIZED: break;
    default: fcsp_capture_ended(); break;
    }
    return rc;
}

FCSP_EXPORT CUresult cuStreamBeginCapture(CUstream hStream)
{
    fcsp_pfn_cuStreamBeginCapture real = FCSP_REAL(cuStreamBeginCapture);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    fcsp_capture_begun(); /* before the capture opens: no launch into it can miss it */
    return capture_begun(real(hStream));
}

FCSP_EXPORT CUresult cuStreamBeginCapture_ptsz(CUstream hStream)
{
    fcsp_pfn_cuStreamBeginCapture_ptsz real = FCSP_REAL(cuStreamBeginCapture_ptsz);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    fcsp_capture_begun();
    return capture_begun(real(hStream));
}

FCSP_EXPORT CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
{
    fcsp_pfn_cuStreamBeginCapture_v2 real = FCSP_REAL(cuStreamBeginCapture_v2);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    fcsp_capture_begun();
    return capture_begun(real(hStream, mode));
}

FCSP_EXPORT CUresult cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode)
{
    fcsp_pfn_cuStreamBeginCapture_v2_ptsz real = FCSP_REAL(cuStreamBeginCapture_v2_ptsz);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    fcsp_capture_begun();
    return capture_begun(real(hStream, mode));
}

FCSP_EXPORT CUresult cuStreamBeginCaptureToGraph(CUstream hStream, CUgraph hGraph, const CUgraphNode *dependencies,
                                                 const CUgraphEdgeData *dependencyData, size_t numDependencies,
                                                 CUstreamCaptureMode mode)
{
    fcsp_pfn_cuStreamBeginCaptureToGraph real = FCSP_REAL(cuStreamBeginCaptureToGraph);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    fcsp_capture_begun();
    return capture_begun(real(hStream, hGraph, dependencies, dependencyData, numDependencies, mode));
}

FCSP_EXPORT CUresult cuStreamBeginCaptureToGraph_ptsz(CUstream hStream, CUgraph hGraph,
                                                      const CUgraphNode *dependencies,
                                                      const CUgraphEdgeData *dependencyData, size_t numDependencies,
                                                      CUstreamCaptureMode mode)
{
    fcsp_pfn_cuStreamBeginCaptureToGraph_ptsz real = FCSP_REAL(cuStreamBeginCaptureToGraph_ptsz);
    if (!real)
        return CUDA_ERROR_NOT_FOUND;
    fcsp_capture_begun();
    return capture_begun(real(hStream, hGraph, dependencies, dependencyData, numDependencies, mode));
}

FCSP_EXPORT CUresult cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
{
    fcsp_pfn_cuStreamEndCapture real = FCSP_REAL(cuStreamEndCapture);
    return real ? capture_ended(real(hStream, phGraph)) : CUDA_ERROR_NOT_FOUND;
}

FCSP_EXPORT CUresult cuStreamEndCapture_ptsz(CUstream hStream, CUgraph *phGraph)
{
    fcsp_pfn_cuStreamEndCapture_ptsz real = FCSP_REAL(cuStreamEndCapture_ptsz);
    return real ? capture_ended(real(hStream, phGraph)) : CUDA_ERROR_NOT_FOUND;
}
