/* Stream captures the application has open, and fcsp's own driver calls kept out of them.
 *
 * While a capture is open, the driver forbids "potentially unsafe" calls (cuEventQuery, cuEventSynchronize,
 * cuStreamQuery, cuStreamSynchronize, cuMemAlloc, cuMemFree: measured on an H200, see sim/CAPTURE.md) to any
 * thread of the process whose own capture mode is GLOBAL when the capture was begun GLOBAL, and to the capturing
 * thread itself unless it was begun RELAXED; a forbidden call fails and invalidates the capture. A thread that
 * exchanged its own mode to RELAXED (cuThreadExchangeStreamCaptureMode) may make them in every case. So fcsp makes
 * its unsafe calls only in RELAXED mode (its sampler thread for good, the launch path around its one call), and
 * a launch into a capturing stream is neither charged, throttled nor timed: it runs when the graph is launched,
 * and is charged then (hooks_launch.c). */
#ifndef FCSP_CAPTURE_WATCH_H
#define FCSP_CAPTURE_WATCH_H

#include <stdatomic.h>

#include "fcsp/cuda_abi.h"

/* Captures begun through our hooks and not yet ended (a hint: a stream destroyed while it captured keeps it
 * raised, which only costs a capture check per capped launch). */
extern _Atomic int fcsp_open_captures;

static inline int fcsp_captures_open(void)
{
    /* relaxed: a launch into a capture follows the begin in the application's own order (same thread, or a
     * thread it synchronised with), so coherence shows it the increment; racing threads need no answer */
    return atomic_load_explicit(&fcsp_open_captures, memory_order_relaxed) > 0;
}

void fcsp_capture_begun(void);
void fcsp_capture_ended(void);

/* Whether a launch on stream (per_thread: made through a _ptsz entry point) goes into a capture. Safe while
 * captures are open (cuStreamIsCapturing is not an unsafe call); an error counts as capturing. */
int fcsp_stream_captures(CUstream stream, int per_thread);

/* Put the calling thread in RELAXED capture mode; *saved gets its mode to give back to fcsp_relaxed_leave.
 * Returns 0 when the driver cannot (then no unsafe call may be made while captures are open). */
int fcsp_relaxed_enter(CUstreamCaptureMode *saved);
void fcsp_relaxed_leave(CUstreamCaptureMode saved);

/* Fork child: no capture is open. */
void fcsp_capture_reset(void);

#endif
