#include "interposer/capture_watch.h"

#include "interposer/real_driver.h"

_Atomic int fcsp_open_captures;

void fcsp_capture_begun(void)
{
    /* relaxed: see fcsp_captures_open */
    atomic_fetch_add_explicit(&fcsp_open_captures, 1, memory_order_relaxed);
}

void fcsp_capture_ended(void)
{
    /* relaxed: see fcsp_captures_open */
    atomic_fetch_sub_explicit(&fcsp_open_captures, 1, memory_order_relaxed);
}

int fcsp_stream_captures(CUstream stream, int per_thread)
{
    fcsp_pfn_cuStreamIsCapturing is_capturing = FCSP_REAL(cuStreamIsCapturing);
    if (!is_capturing)
        return 1;
    if (per_thread && stream == NULL)
        stream = CU_STREAM_PER_THREAD;
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
    return is_capturing(stream, &st) != CUDA_SUCCESS || st != CU_STREAM_CAPTURE_STATUS_NONE;
}

int fcsp_relaxed_enter(CUstreamCaptureMode *saved)
{
    fcsp_pfn_cuThreadExchangeStreamCaptureMode exchange = FCSP_REAL(cuThreadExchangeStreamCaptureMode);
    *saved = CU_STREAM_CAPTURE_MODE_RELAXED;
    return exchange && exchange(saved) == CUDA_SUCCESS;
}

void fcsp_relaxed_leave(CUstreamCaptureMode saved)
{
    fcsp_pfn_cuThreadExchangeStreamCaptureMode exchange = FCSP_REAL(cuThreadExchangeStreamCaptureMode);
    if (exchange)
        exchange(&saved);
}

void fcsp_capture_reset(void)
{
    /* relaxed: the fork child has one thread */
    atomic_store_explicit(&fcsp_open_captures, 0, memory_order_relaxed);
}
