/* Streams: created ones, the legacy default stream of each device and the per-thread default streams. */
#include <pthread.h>

#include "sim_cuda.h"

static struct ptr_map g_streams_by_handle = PTR_MAP_INIT;
static pthread_mutex_t g_builtin_mu = PTHREAD_MUTEX_INITIALIZER;
static struct CUstream_st *g_legacy[SIM_MAX_GPUS];
static _Thread_local struct CUstream_st *t_per_thread[SIM_MAX_GPUS];

static CUresult builtin_stream(int per_thread, struct CUstream_st **out)
{
    CUcontext ctx;
    int dev;
    CUresult rc = sim_current(&ctx, &dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUstream_st *s;
    if (per_thread) {
        s = t_per_thread[dev];
        if (s == NULL)
            s = t_per_thread[dev] = sim_exec_new_stream(dev, ctx, 0, 0, SIM_STREAM_PER_THREAD);
    } else {
        pthread_mutex_lock(&g_builtin_mu);
        s = g_legacy[dev];
        if (s == NULL)
            s = g_legacy[dev] = sim_exec_new_stream(dev, ctx, 0, 0, SIM_STREAM_LEGACY);
        pthread_mutex_unlock(&g_builtin_mu);
    }
    if (s == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *out = s;
    return CUDA_SUCCESS;
}

CUresult sim_stream_resolve(CUstream h, int per_thread, struct CUstream_st **out)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (h == NULL)
        return builtin_stream(per_thread, out);
    if (h == CU_STREAM_LEGACY)
        return builtin_stream(0, out);
    if (h == CU_STREAM_PER_THREAD)
        return builtin_stream(1, out);
    struct CUstream_st *s = ptr_map_get(&g_streams_by_handle, (uint64_t)(uintptr_t)h);
    if (s == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    *out = s;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamCreateWithPriority(CUstream *phStream, unsigned int flags, int priority)
{
    CUcontext ctx;
    int dev;
    CUresult rc = sim_current(&ctx, &dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (phStream == NULL || (flags & ~(unsigned int)CU_STREAM_NON_BLOCKING) != 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct CUstream_st *s = sim_exec_new_stream(dev, ctx, flags, priority, SIM_STREAM_CREATED);
    if (s == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (ptr_map_put(&g_streams_by_handle, (uint64_t)(uintptr_t)s, s) != 0) {
        sim_exec_destroy_stream(s);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *phStream = s;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
    return cuStreamCreateWithPriority(phStream, Flags, 0);
}

SIM_EXPORT CUresult cuStreamDestroy_v2(CUstream hStream)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUstream_st *s = ptr_map_take(&g_streams_by_handle, (uint64_t)(uintptr_t)hStream);
    if (s == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    sim_capture_stream_destroyed(s);
    sim_exec_destroy_stream(s);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamDestroy(CUstream hStream)
{
    return cuStreamDestroy_v2(hStream);
}

static CUresult stream_sync(CUstream h, int pt)
{
    struct CUstream_st *s;
    CUresult rc = sim_stream_resolve(h, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct sim_capture_op op = {SIM_CAPTURE_SYNC, NULL, 0, NULL};
    if (sim_capture(s, &op, &rc))
        return rc;
    if ((rc = sim_capture_unsafe_call()) != CUDA_SUCCESS)
        return rc;
    sim_exec_sync_stream(s);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamSynchronize(CUstream hStream)
{
    return stream_sync(hStream, 0);
}

SIM_EXPORT CUresult cuStreamSynchronize_ptsz(CUstream hStream)
{
    return stream_sync(hStream, 1);
}

static CUresult stream_query(CUstream h, int pt)
{
    struct CUstream_st *s;
    CUresult rc = sim_stream_resolve(h, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct sim_capture_op op = {SIM_CAPTURE_SYNC, NULL, 0, NULL};
    if (sim_capture(s, &op, &rc))
        return rc;
    if ((rc = sim_capture_unsafe_call()) != CUDA_SUCCESS)
        return rc;
    return sim_exec_stream_busy(s) ? CUDA_ERROR_NOT_READY : CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamQuery(CUstream hStream)
{
    return stream_query(hStream, 0);
}

SIM_EXPORT CUresult cuStreamQuery_ptsz(CUstream hStream)
{
    return stream_query(hStream, 1);
}

static CUresult stream_wait(CUstream h, CUevent ev, unsigned int flags, int pt)
{
    struct CUstream_st *s;
    CUresult rc = sim_stream_resolve(h, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    rc = sim_event_check(ev);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct sim_capture_op op = {SIM_CAPTURE_NOTHING, NULL, 0, NULL};
    if (sim_capture(s, &op, &rc))
        return rc; /* a capture records no dependency: its nodes run in order anyway */
    sim_exec_wait_event(s, ev);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
    return stream_wait(hStream, hEvent, Flags, 0);
}

SIM_EXPORT CUresult cuStreamWaitEvent_ptsz(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
    return stream_wait(hStream, hEvent, Flags, 1);
}

/* The device of a stream (stream-ordered allocations without a pool allocate there, whatever context is current). */
static CUresult stream_device(CUstream hStream, int pt, CUdevice *device)
{
    struct CUstream_st *s;
    CUresult rc = sim_stream_resolve(hStream, pt, &s);
    if (rc == CUDA_SUCCESS && device == NULL)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        *device = s->dev;
    return rc;
}

SIM_EXPORT CUresult cuStreamGetDevice(CUstream hStream, CUdevice *device)
{
    return stream_device(hStream, 0, device);
}

SIM_EXPORT CUresult cuStreamGetDevice_ptsz(CUstream hStream, CUdevice *device)
{
    return stream_device(hStream, 1, device);
}
