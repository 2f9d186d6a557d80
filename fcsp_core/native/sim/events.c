/* Events: a recorded event gets the time at which its stream reaches it on the simulated GPU. */
#include <stdlib.h>

#include "sim_cuda.h"

static struct ptr_map g_events = PTR_MAP_INIT;

CUresult sim_event_check(CUevent ev)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    return (ev != NULL && ptr_map_get(&g_events, (uint64_t)(uintptr_t)ev) == ev) ? CUDA_SUCCESS
                                                                                    : CUDA_ERROR_INVALID_HANDLE;
}

SIM_EXPORT CUresult cuEventCreate(CUevent *phEvent, unsigned int Flags)
{
    CUresult rc = sim_current(NULL, NULL);
    if (rc != CUDA_SUCCESS)
        return rc;
    unsigned int known = CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
    if (phEvent == NULL || (Flags & ~known) != 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct CUevent_st *ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    ev->magic = SIM_MAGIC_EVENT;
    ev->flags = Flags;
    if (ptr_map_put(&g_events, (uint64_t)(uintptr_t)ev, ev) != 0) {
        free(ev);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *phEvent = ev;
    return CUDA_SUCCESS;
}

static CUresult record(CUevent ev, CUstream h, int pt)
{
    CUresult rc = sim_event_check(ev);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUstream_st *s;
    rc = sim_stream_resolve(h, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct sim_capture_op op = {SIM_CAPTURE_NOTHING, NULL, 0, NULL};
    if (sim_capture(s, &op, &rc))
        return rc; /* recorded into a capture: the event keeps its state */
    sim_exec_record(ev, s);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuEventRecord(CUevent hEvent, CUstream hStream)
{
    return record(hEvent, hStream, 0);
}

SIM_EXPORT CUresult cuEventRecord_ptsz(CUevent hEvent, CUstream hStream)
{
    return record(hEvent, hStream, 1);
}

SIM_EXPORT CUresult cuEventSynchronize(CUevent hEvent)
{
    CUresult rc = sim_event_check(hEvent);
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_unsafe_call();
    if (rc == CUDA_SUCCESS)
        sim_exec_sync_event(hEvent);
    return rc;
}

SIM_EXPORT CUresult cuEventQuery(CUevent hEvent)
{
    CUresult rc = sim_event_check(hEvent);
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_unsafe_call();
    if (rc != CUDA_SUCCESS)
        return rc;
    return sim_exec_event_busy(hEvent) ? CUDA_ERROR_NOT_READY : CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuEventElapsedTime_v2(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    CUresult rc = sim_event_check(hStart);
    if (rc == CUDA_SUCCESS)
        rc = sim_event_check(hEnd);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (pMilliseconds == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if ((hStart->flags | hEnd->flags) & CU_EVENT_DISABLE_TIMING)
        return CUDA_ERROR_INVALID_HANDLE;
    return sim_exec_elapsed(pMilliseconds, hStart, hEnd);
}

SIM_EXPORT CUresult cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    return cuEventElapsedTime_v2(pMilliseconds, hStart, hEnd);
}

SIM_EXPORT CUresult cuEventDestroy_v2(CUevent hEvent)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUevent_st *ev = ptr_map_take(&g_events, (uint64_t)(uintptr_t)hEvent);
    if (ev == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    sim_exec_destroy_event(ev);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuEventDestroy(CUevent hEvent)
{
    return cuEventDestroy_v2(hEvent);
}
