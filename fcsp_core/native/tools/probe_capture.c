/* fcsp-capture-probe: which driver calls an open stream capture tolerates, asked of the driver itself.
 *
 *   fcsp-capture-probe matrix                 every call x capture mode x calling thread, one line each:
 *     call=NAME mode=global caller=other rc=CUDA_SUCCESS post=CUDA_SUCCESS end=CUDA_SUCCESS
 *   fcsp-capture-probe storm MODE GRAPHS      one thread launching on stream 1 while the main thread captures
 *                                             GRAPHS graphs of 8 kernels on stream 2 in MODE (each capture
 *                                             held open 0.2 ms); exit status 1 if a capture failed:
 *     storm mode=global graphs=N failed=N launches=N
 *
 * A trial: the main thread begins a capture on a non-blocking stream in the mode, launches a kernel into it, has
 * the caller make the call, launches a second kernel into it (post: whether the capture still takes work) and
 * ends the capture (end: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED when the call invalidated it). Callers: same (the
 * capturing thread), same_relaxed (it, after cuThreadExchangeStreamCaptureMode(RELAXED)), other (another thread
 * with the context current), other_relaxed (that thread, after exchanging its own mode to RELAXED). The same
 * program runs against the simulated driver (tests/test_sim_capture.py compares the two). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "probe.h"

typedef CUresult (*fn_ctx_get)(CUcontext *);
typedef CUresult (*fn_event)(CUevent);
typedef CUresult (*fn_stream)(CUstream);
typedef CUresult (*fn_is_capturing)(CUstream, CUstreamCaptureStatus *);
typedef CUresult (*fn_exchange)(CUstreamCaptureMode *);
typedef CUresult (*fn_occupancy)(int *, CUfunction, int, size_t);
typedef CUresult (*fn_func_attr)(int *, CUfunction_attribute, CUfunction);
typedef CUresult (*fn_ctx_sync)(void);
typedef CUresult (*fn_htod)(CUdeviceptr, const void *, size_t);

static struct {
    fn_ctx_get ctx_get;
    fn_event event_query, event_sync;
    fn_stream stream_query;
    fn_is_capturing is_capturing;
    fn_exchange exchange;
    fn_occupancy occupancy;
    fn_func_attr func_attr;
    fn_ctx_sync ctx_sync;
    fn_htod htod;
} x;

static const char g_ptx[] = ".version 8.0\n.target sm_90\n.address_size 64\n\n.visible .entry noop()\n{\n\tret;\n}\n";

static CUfunction g_fn;
static CUstream g_s1, g_s2;           /* s1: plain work; s2: the captured one */
static CUevent g_ev_a, g_ev_b, g_ev_x; /* a, b: recorded and complete; x: for records */
static CUdeviceptr g_buf;             /* a live allocation (freed by mem_free, then allocated again) */
static CUdeviceptr g_new;             /* what mem_alloc got, freed after the trial */

static void resolve(const char *name, void *field)
{
    void *fn = NULL;
    if (probe_resolve(name, &fn, NULL) != CUDA_SUCCESS)
        fn = NULL;
    memcpy(field, &fn, sizeof fn);
}

static CUresult launch(CUstream s)
{
    return PROBE_CALL(g_cu.LaunchKernel, g_fn, 1, 1, 1, 1, 1, 1, 0, s, NULL, NULL);
}

/* ---- the calls ---- */

static CUresult c_ctx_set(void) { return PROBE_CALL(g_cu.CtxSetCurrent, g_ctx); }
static CUresult c_ctx_get(void)
{
    CUcontext c;
    return PROBE_CALL(x.ctx_get, &c);
}
static CUresult c_event_query(void) { return PROBE_CALL(x.event_query, g_ev_b); }
static CUresult c_event_elapsed(void)
{
    float ms;
    return PROBE_CALL(g_cu.EventElapsedTime, &ms, g_ev_a, g_ev_b);
}
static CUresult c_event_record(void) { return PROBE_CALL(g_cu.EventRecord, g_ev_x, g_s1); }
static CUresult c_event_sync(void) { return PROBE_CALL(x.event_sync, g_ev_b); }
static CUresult c_event_create(void)
{
    CUevent e;
    CUresult rc = PROBE_CALL(g_cu.EventCreate, &e, CU_EVENT_DEFAULT);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventDestroy, e);
    return rc;
}
static CUresult c_stream_query(void) { return PROBE_CALL(x.stream_query, g_s1); }
static CUresult c_stream_sync(void) { return PROBE_CALL(g_cu.StreamSynchronize, g_s1); }
static CUresult c_stream_query_capturing(void) { return PROBE_CALL(x.stream_query, g_s2); }
static CUresult c_is_capturing(void)
{
    CUstreamCaptureStatus st;
    return PROBE_CALL(x.is_capturing, g_s2, &st);
}
static CUresult c_launch_other(void) { return launch(g_s1); }
static CUresult c_mem_alloc(void) { return PROBE_CALL(g_cu.MemAlloc, &g_new, 65536); }
static CUresult c_mem_free(void)
{
    CUresult rc = PROBE_CALL(g_cu.MemFree, g_buf);
    if (rc == CUDA_SUCCESS)
        g_buf = 0;
    return rc;
}
static CUresult c_mem_get_info(void)
{
    size_t f, t;
    return PROBE_CALL(g_cu.MemGetInfo, &f, &t);
}
static CUresult c_occupancy(void)
{
    int n;
    return PROBE_CALL(x.occupancy, &n, g_fn, 128, 0);
}
static CUresult c_func_attr(void)
{
    int v;
    return PROBE_CALL(x.func_attr, &v, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, g_fn);
}
static CUresult c_func_name(void)
{
    const char *n;
    return PROBE_CALL(g_cu.FuncGetName, &n, g_fn);
}
static CUresult c_device_attr(void)
{
    int v;
    return PROBE_CALL(g_cu.DeviceGetAttribute, &v, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, g_dev);
}
static CUresult c_ctx_sync(void) { return PROBE_CALL(x.ctx_sync); }
static CUresult c_htod(void)
{
    static char host[256];
    return g_buf ? PROBE_CALL(x.htod, g_buf, host, sizeof host) : CUDA_ERROR_INVALID_VALUE;
}

static const struct {
    const char *name;
    CUresult (*fn)(void);
} g_calls[] = {
    {"cuCtxSetCurrent", c_ctx_set},
    {"cuCtxGetCurrent", c_ctx_get},
    {"cuEventQuery", c_event_query},
    {"cuEventElapsedTime", c_event_elapsed},
    {"cuEventRecord:other_stream", c_event_record},
    {"cuEventSynchronize", c_event_sync},
    {"cuEventCreate+Destroy", c_event_create},
    {"cuStreamQuery:other_stream", c_stream_query},
    {"cuStreamSynchronize:other_stream", c_stream_sync},
    {"cuStreamQuery:capturing_stream", c_stream_query_capturing},
    {"cuStreamIsCapturing", c_is_capturing},
    {"cuLaunchKernel:other_stream", c_launch_other},
    {"cuMemAlloc", c_mem_alloc},
    {"cuMemFree", c_mem_free},
    {"cuMemGetInfo", c_mem_get_info},
    {"cuOccupancyMaxActiveBlocksPerMultiprocessor", c_occupancy},
    {"cuFuncGetAttribute", c_func_attr},
    {"cuFuncGetName", c_func_name},
    {"cuDeviceGetAttribute", c_device_attr},
    {"cuCtxSynchronize", c_ctx_sync},
    {"cuMemcpyHtoD", c_htod},
};
#define NCALLS (sizeof g_calls / sizeof g_calls[0])

/* ---- the other thread ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_job = -1, g_job_relaxed, g_done;
static CUresult g_job_rc;

static CUresult call_as(int i, int relaxed)
{
    CUstreamCaptureMode m = CU_STREAM_CAPTURE_MODE_RELAXED;
    if (relaxed && x.exchange)
        x.exchange(&m);
    CUresult rc = g_calls[i].fn();
    if (relaxed && x.exchange)
        x.exchange(&m); /* back to what it was */
    return rc;
}

static void *other_main(void *arg)
{
    (void)arg;
    PROBE_CALL(g_cu.CtxSetCurrent, g_ctx);
    pthread_mutex_lock(&g_mu);
    for (;;) {
        while (g_job < 0)
            pthread_cond_wait(&g_cv, &g_mu);
        int i = g_job, relaxed = g_job_relaxed;
        pthread_mutex_unlock(&g_mu);
        CUresult rc = call_as(i, relaxed);
        pthread_mutex_lock(&g_mu);
        g_job_rc = rc;
        g_job = -1;
        g_done = 1;
        pthread_cond_broadcast(&g_cv);
    }
    return NULL;
}

static CUresult call_other(int i, int relaxed)
{
    pthread_mutex_lock(&g_mu);
    g_done = 0;
    g_job = i;
    g_job_relaxed = relaxed;
    pthread_cond_broadcast(&g_cv);
    while (!g_done)
        pthread_cond_wait(&g_cv, &g_mu);
    CUresult rc = g_job_rc;
    pthread_mutex_unlock(&g_mu);
    return rc;
}

/* ---- setup ---- */

static int setup(void)
{
    resolve("cuCtxGetCurrent", &x.ctx_get);
    resolve("cuEventQuery", &x.event_query);
    resolve("cuEventSynchronize", &x.event_sync);
    resolve("cuStreamQuery", &x.stream_query);
    resolve("cuStreamIsCapturing", &x.is_capturing);
    resolve("cuThreadExchangeStreamCaptureMode", &x.exchange);
    resolve("cuOccupancyMaxActiveBlocksPerMultiprocessor", &x.occupancy);
    resolve("cuFuncGetAttribute", &x.func_attr);
    resolve("cuCtxSynchronize", &x.ctx_sync);
    resolve("cuMemcpyHtoD", &x.htod);
    CUmodule mod;
    CUresult rc = PROBE_CALL(g_cu.Init, 0);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.DeviceGet, &g_dev, 0);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.PrimaryCtxRetain, &g_ctx, g_dev);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.CtxSetCurrent, g_ctx);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.ModuleLoadData, &mod, g_ptx);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.ModuleGetFunction, &g_fn, mod, "noop");
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.StreamCreate, &g_s1, CU_STREAM_NON_BLOCKING);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.StreamCreate, &g_s2, CU_STREAM_NON_BLOCKING);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventCreate, &g_ev_a, CU_EVENT_DEFAULT);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventCreate, &g_ev_b, CU_EVENT_DEFAULT);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventCreate, &g_ev_x, CU_EVENT_DEFAULT);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventRecord, g_ev_a, g_s1);
    if (rc == CUDA_SUCCESS)
        rc = launch(g_s1);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventRecord, g_ev_b, g_s1);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.StreamSynchronize, g_s1);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.MemAlloc, &g_buf, 65536);
    if (rc != CUDA_SUCCESS) {
        fprintf(stderr, "fcsp-capture-probe: setup failed: %s\n", probe_err(rc));
        return -1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, other_main, NULL) != 0)
        return -1;
    pthread_detach(t);
    return 0;
}

static const char *const g_mode_names[] = {"global", "thread_local", "relaxed"};
static const char *const g_caller_names[] = {"same", "same_relaxed", "other", "other_relaxed"};

static int matrix(void)
{
    for (size_t i = 0; i < NCALLS; i++) {
        for (int mode = 0; mode < 3; mode++) {
            for (int caller = 0; caller < 4; caller++) {
                CUresult rc = PROBE_CALL(g_cu.StreamBeginCapture, g_s2, (CUstreamCaptureMode)mode);
                if (rc != CUDA_SUCCESS) {
                    probe_out("call=%s mode=%s caller=%s begin=%s", g_calls[i].name, g_mode_names[mode],
                              g_caller_names[caller], probe_err(rc));
                    continue;
                }
                CUresult pre = launch(g_s2);
                int relaxed = caller == 1 || caller == 3;
                CUresult crc = caller < 2 ? call_as((int)i, relaxed) : call_other((int)i, relaxed);
                CUresult post = launch(g_s2);
                CUgraph g = NULL;
                CUresult end = PROBE_CALL(g_cu.StreamEndCapture, g_s2, &g);
                if (g)
                    PROBE_CALL(g_cu.GraphDestroy, g);
                probe_out("call=%s mode=%s caller=%s rc=%s post=%s end=%s pre=%s", g_calls[i].name,
                          g_mode_names[mode], g_caller_names[caller], probe_err(crc), probe_err(post),
                          probe_err(end), probe_err(pre));
                /* put things back for the next trial */
                PROBE_CALL(x.ctx_sync);
                if (g_new) {
                    PROBE_CALL(g_cu.MemFree, g_new);
                    g_new = 0;
                }
                if (!g_buf)
                    PROBE_CALL(g_cu.MemAlloc, &g_buf, 65536);
            }
        }
    }
    return 0;
}

/* ---- storm ---- */

static _Atomic int g_stop;
static _Atomic long g_launches;

static void *launcher_main(void *arg)
{
    (void)arg;
    PROBE_CALL(g_cu.CtxSetCurrent, g_ctx);
    while (!g_stop) {
        if (launch(g_s1) == CUDA_SUCCESS)
            g_launches++;
    }
    return NULL;
}

static int storm(int mode, long graphs)
{
    pthread_t t;
    if (pthread_create(&t, NULL, launcher_main, NULL) != 0)
        return 1;
    long failed = 0;
    for (long n = 0; n < graphs; n++) {
        CUresult rc = PROBE_CALL(g_cu.StreamBeginCapture, g_s2, (CUstreamCaptureMode)mode);
        for (int k = 0; k < 8 && rc == CUDA_SUCCESS; k++)
            rc = launch(g_s2);
        struct timespec pause = {0, 200000}; /* keep the capture open a while, as a framework's would be */
        nanosleep(&pause, NULL);
        CUgraph g = NULL;
        CUresult end = PROBE_CALL(g_cu.StreamEndCapture, g_s2, &g);
        if (rc != CUDA_SUCCESS || end != CUDA_SUCCESS || !g) {
            failed++;
            if (failed <= 3)
                fprintf(stderr, "capture %ld: launch %s end %s\n", n, probe_err(rc), probe_err(end));
        }
        if (g)
            PROBE_CALL(g_cu.GraphDestroy, g);
    }
    g_stop = 1;
    pthread_join(t, NULL);
    PROBE_CALL(g_cu.StreamSynchronize, g_s1);
    probe_out("storm mode=%s graphs=%ld failed=%ld launches=%ld", g_mode_names[mode], graphs, failed,
              (long)g_launches);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const char usage[] = "usage: fcsp-capture-probe matrix | storm global|thread_local|relaxed GRAPHS\n";
    struct probe_options opt = {0, 12080, 0};
    if (argc < 2 || (strcmp(argv[1], "matrix") != 0 && strcmp(argv[1], "storm") != 0)) {
        fputs(usage, stderr);
        return 2;
    }
    int mode = 0;
    uint64_t graphs = 0;
    if (strcmp(argv[1], "storm") == 0) {
        for (mode = 0; mode < 3 && (argc < 3 || strcmp(argv[2], g_mode_names[mode]) != 0); mode++)
            ;
        if (argc != 4 || mode == 3 || probe_parse_uint(argv[3], &graphs) != 0) {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (probe_load(&opt) != 0 || setup() != 0)
        return 1;
    return strcmp(argv[1], "matrix") == 0 ? matrix() : storm(mode, (long)graphs);
}
