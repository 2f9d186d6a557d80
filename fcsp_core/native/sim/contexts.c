/* Primary and created contexts, and the per-thread context stack. A simulated context costs no device memory. */
#include <pthread.h>
#include <stdlib.h>

#include "sim_cuda.h"

#define CTX_STACK_MAX 64

struct CUctx_st {
    uint32_t magic;
    int dev;
    int primary;
    int refcount; /* primary: retains; created: 1 until destroyed (under g_ctx_mu) */
    int destroyed;
    unsigned int flags;
};

static pthread_mutex_t g_ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static struct CUctx_st g_primary[SIM_MAX_GPUS];
static struct ptr_map g_created = PTR_MAP_INIT; /* created contexts; destroyed ones stay allocated */

static _Thread_local CUcontext t_stack[CTX_STACK_MAX];
static _Thread_local int t_depth;

/* CUDA_SUCCESS if ctx is one of ours and alive; *dev gets its device. */
static CUresult ctx_check(CUcontext ctx, int *dev)
{
    if (ctx == NULL)
        return CUDA_ERROR_INVALID_CONTEXT;
    CUresult rc = CUDA_SUCCESS;
    int d = -1;
    pthread_mutex_lock(&g_ctx_mu);
    if (ctx >= &g_primary[0] && ctx < &g_primary[SIM_MAX_GPUS]) {
        if (ctx->refcount <= 0)
            rc = CUDA_ERROR_INVALID_CONTEXT; /* released primary context */
        d = ctx->dev;
    } else if (ptr_map_get(&g_created, (uint64_t)(uintptr_t)ctx) == ctx) {
        if (ctx->destroyed)
            rc = CUDA_ERROR_CONTEXT_IS_DESTROYED;
        d = ctx->dev;
    } else {
        rc = CUDA_ERROR_INVALID_CONTEXT;
    }
    pthread_mutex_unlock(&g_ctx_mu);
    if (rc == CUDA_SUCCESS && dev)
        *dev = d;
    return rc;
}

CUresult sim_current(CUcontext *ctx, int *dev)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    CUcontext c = t_depth > 0 ? t_stack[t_depth - 1] : NULL;
    rc = ctx_check(c, dev);
    if (rc == CUDA_SUCCESS && ctx)
        *ctx = c;
    return rc;
}

CUresult sim_ctx_device(CUcontext ctx, int *dev)
{
    if (ctx == NULL)
        return sim_current(NULL, dev);
    CUresult rc = sim_require_init();
    return rc != CUDA_SUCCESS ? rc : ctx_check(ctx, dev);
}

/* ---- primary contexts ---- */

SIM_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (pctx == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_ctx_mu);
    struct CUctx_st *c = &g_primary[dev];
    c->magic = SIM_MAGIC_CTX;
    c->dev = dev;
    c->primary = 1;
    c->refcount++;
    pthread_mutex_unlock(&g_ctx_mu);
    sim_proc_note_context(g_sim_sh, g_sim_slot, dev);
    *pctx = c;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_ctx_mu);
    if (g_primary[dev].refcount > 0)
        g_primary[dev].refcount--;
    else
        rc = CUDA_ERROR_INVALID_CONTEXT;
    pthread_mutex_unlock(&g_ctx_mu);
    return rc;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice dev)
{
    return cuDevicePrimaryCtxRelease_v2(dev);
}

SIM_EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    sim_exec_sync_device(dev);
    sim_free_context_allocs(&g_primary[dev]); /* the driver destroys all allocations of the primary context */
    pthread_mutex_lock(&g_ctx_mu);
    g_primary[dev].refcount = 0;
    g_primary[dev].flags = 0;
    pthread_mutex_unlock(&g_ctx_mu);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxReset(CUdevice dev)
{
    return cuDevicePrimaryCtxReset_v2(dev);
}

SIM_EXPORT CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (flags == NULL || active == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_ctx_mu);
    *flags = g_primary[dev].flags;
    *active = g_primary[dev].refcount > 0;
    pthread_mutex_unlock(&g_ctx_mu);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_ctx_mu);
    g_primary[dev].flags = flags;
    pthread_mutex_unlock(&g_ctx_mu);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags)
{
    return cuDevicePrimaryCtxSetFlags_v2(dev, flags);
}

/* ---- created contexts ---- */

static CUresult ctx_create(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    CUresult rc = sim_check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (pctx == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (t_depth >= CTX_STACK_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    struct CUctx_st *c = calloc(1, sizeof *c);
    if (c == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    c->magic = SIM_MAGIC_CTX;
    c->dev = dev;
    c->refcount = 1;
    c->flags = flags;
    pthread_mutex_lock(&g_ctx_mu);
    int prc = ptr_map_put(&g_created, (uint64_t)(uintptr_t)c, c);
    pthread_mutex_unlock(&g_ctx_mu);
    if (prc != 0) {
        free(c);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    sim_proc_note_context(g_sim_sh, g_sim_slot, dev);
    t_stack[t_depth++] = c; /* a created context becomes current */
    *pctx = c;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    return ctx_create(pctx, flags, dev);
}

SIM_EXPORT CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    return ctx_create(pctx, flags, dev);
}

SIM_EXPORT CUresult cuCtxCreate_v3(CUcontext *pctx, CUexecAffinityParam *paramsArray, int numParams,
                                   unsigned int flags, CUdevice dev)
{
    if (numParams < 0 || (numParams > 0 && paramsArray == NULL))
        return CUDA_ERROR_INVALID_VALUE;
    return ctx_create(pctx, flags, dev);
}

SIM_EXPORT CUresult cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *ctxCreateParams, unsigned int flags,
                                   CUdevice dev)
{
    if (ctxCreateParams != NULL && ctxCreateParams->numExecAffinityParams < 0)
        return CUDA_ERROR_INVALID_VALUE;
    return ctx_create(pctx, flags, dev);
}

SIM_EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    int dev;
    pthread_mutex_lock(&g_ctx_mu);
    struct CUctx_st *c = ptr_map_get(&g_created, (uint64_t)(uintptr_t)ctx);
    if (c == NULL || c->destroyed)
        rc = CUDA_ERROR_INVALID_CONTEXT;
    else
        c->destroyed = 1;
    dev = c ? c->dev : 0;
    pthread_mutex_unlock(&g_ctx_mu);
    if (rc != CUDA_SUCCESS)
        return rc;
    sim_exec_sync_device(dev);
    sim_free_context_allocs(ctx);
    if (t_depth > 0 && t_stack[t_depth - 1] == ctx)
        t_depth--;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxDestroy(CUcontext ctx)
{
    return cuCtxDestroy_v2(ctx);
}

/* ---- the context stack ---- */

SIM_EXPORT CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
    CUresult rc = sim_ctx_device(ctx, NULL);
    if (ctx == NULL)
        return CUDA_ERROR_INVALID_CONTEXT;
    if (rc != CUDA_SUCCESS)
        return rc;
    if (t_depth >= CTX_STACK_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    t_stack[t_depth++] = ctx;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxPushCurrent(CUcontext ctx)
{
    return cuCtxPushCurrent_v2(ctx);
}

SIM_EXPORT CUresult cuCtxPopCurrent_v2(CUcontext *pctx)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (t_depth == 0)
        return CUDA_ERROR_INVALID_CONTEXT;
    CUcontext c = t_stack[--t_depth];
    if (pctx)
        *pctx = c;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxPopCurrent(CUcontext *pctx)
{
    return cuCtxPopCurrent_v2(pctx);
}

SIM_EXPORT CUresult cuCtxSetCurrent(CUcontext ctx)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (ctx == NULL) {
        if (t_depth > 0)
            t_depth--; /* NULL pops the top of the stack */
        return CUDA_SUCCESS;
    }
    rc = ctx_check(ctx, NULL);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (t_depth == 0)
        t_depth = 1;
    t_stack[t_depth - 1] = ctx;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxGetCurrent(CUcontext *pctx)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (pctx == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *pctx = t_depth > 0 ? t_stack[t_depth - 1] : NULL;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxGetDevice(CUdevice *device)
{
    if (device == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    int dev;
    CUresult rc = sim_current(NULL, &dev);
    if (rc == CUDA_SUCCESS)
        *device = dev;
    return rc;
}

SIM_EXPORT CUresult cuCtxGetDevice_v2(CUdevice *device, CUcontext ctx)
{
    if (device == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    int dev;
    CUresult rc = sim_ctx_device(ctx, &dev);
    if (rc == CUDA_SUCCESS)
        *device = dev;
    return rc;
}

SIM_EXPORT CUresult cuCtxGetApiVersion(CUcontext ctx, unsigned int *version)
{
    if (version == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = sim_ctx_device(ctx, NULL);
    if (rc == CUDA_SUCCESS)
        *version = 3020; /* the context API version of every context since CUDA 3.2 */
    return rc;
}

SIM_EXPORT CUresult cuCtxSynchronize_v2(CUcontext ctx)
{
    int dev;
    CUresult rc = sim_ctx_device(ctx, &dev);
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_check_device_sync(dev);
    if (rc == CUDA_SUCCESS)
        sim_exec_sync_device(dev);
    return rc;
}

SIM_EXPORT CUresult cuCtxSynchronize(void)
{
    return cuCtxSynchronize_v2(NULL);
}
