#include "interposer/kernel_cost.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "interposer/bg_thread.h"
#include "interposer/capture_watch.h"
#include "interposer/real_driver.h"
#include "interposer/sm_limiter.h"
#include "interposer/state.h"

#define FN_SLOTS 4096
#define FN_PROBE 64
#define FIRST_SAMPLES 8
#define MAX_INFLIGHT 64
/* The estimate is the smallest of the last WINDOW samples. */
#define WINDOW 8
/* A launch waits at most this long for its function's first measurement. */
#define FIRST_WAIT_NS (2000ull * 1000000ull)

struct fcsp_fn {
    _Atomic uintptr_t key;          /* handle | graph bit; 0 free, 1 being filled */
    _Atomic uint32_t klass;         /* fcsp_fn_class, set (release) before key */
    _Atomic uint32_t occ_threads;   /* block size and shared memory the cached occupancy is for */
    _Atomic uint32_t occ_smem;
    _Atomic uint32_t blocks_per_sm;
    _Atomic uint64_t wave_ns;       /* estimated GPU time of one wave; 0 = not measured yet */
    _Atomic uint64_t next_sample_ns;
    _Atomic uint32_t samples;
    _Atomic uint32_t first_pending; /* the first timed launch is in flight: its cost is not known yet */
    uint32_t graph;
    uint64_t window[WINDOW]; /* the last per-wave samples (sampler thread only) */
    uint32_t nwindow;
};

static struct fcsp_fn table[FN_SLOTS];

static enum fcsp_fn_class classify(const void *handle, int graph)
{
    if (graph)
        return FCSP_FN_COMPUTE;
    fcsp_pfn_cuFuncGetName get_name = FCSP_REAL(cuFuncGetName);
    const char *name = NULL;
    if (get_name && get_name(&name, (CUfunction)handle) == CUDA_SUCCESS && name &&
        (strncmp(name, "ncclDevKernel", 13) == 0 || strncmp(name, "ncclKernel", 10) == 0))
        return FCSP_FN_NCCL;
    return FCSP_FN_COMPUTE;
}

struct fcsp_fn *fcsp_fn_get(const void *handle, int graph)
{
    uintptr_t key = ((uintptr_t)handle << 1) | (uintptr_t)(graph != 0);
    if (key < 2)
        return NULL;
    uintptr_t h = (key * 0x9E3779B97F4A7C15ull) >> 52;
    for (int n = 0; n < FN_PROBE; n++) {
        struct fcsp_fn *e = &table[(h + (uintptr_t)n) % FN_SLOTS];
        /* acquire: pairs with the filler's release of the key: class and fields are then set */
        uintptr_t k = atomic_load_explicit(&e->key, memory_order_acquire);
        if (k == key)
            return e;
        if (k == 1) { /* being filled by another thread: wait, it takes one cuFuncGetName */
            while ((k = atomic_load_explicit(&e->key, memory_order_acquire)) == 1)
                ;
            if (k == key)
                return e;
            continue;
        }
        if (k != 0)
            continue;
        uintptr_t expected = 0;
        /* acquire on success: we own the slot; on failure we re-read the winner's key */
        if (!atomic_compare_exchange_strong_explicit(&e->key, &expected, 1, memory_order_acquire,
                                                     memory_order_acquire)) {
            while ((expected = atomic_load_explicit(&e->key, memory_order_acquire)) == 1)
                ;
            if (expected == key)
                return e;
            continue;
        }
        e->graph = (uint32_t)(graph != 0);
        atomic_store_explicit(&e->klass, classify(handle, graph), memory_order_relaxed);
        /* release: readers that find the key see the class */
        atomic_store_explicit(&e->key, key, memory_order_release);
        return e;
    }
    return NULL;
}

enum fcsp_fn_class fcsp_fn_class(struct fcsp_fn *fn)
{
    return (enum fcsp_fn_class)atomic_load_explicit(&fn->klass, memory_order_relaxed);
}

static uint32_t blocks_per_sm(struct fcsp_fn *fn, const void *handle, unsigned threads, unsigned smem)
{
    /* relaxed: a cache of a pure function of (threads, smem); a torn pair only costs one more query */
    if (atomic_load_explicit(&fn->occ_threads, memory_order_relaxed) == threads &&
        atomic_load_explicit(&fn->occ_smem, memory_order_relaxed) == smem) {
        uint32_t b = atomic_load_explicit(&fn->blocks_per_sm, memory_order_relaxed);
        if (b)
            return b;
    }
    fcsp_pfn_cuOccupancyMaxActiveBlocksPerMultiprocessor occ = FCSP_REAL(cuOccupancyMaxActiveBlocksPerMultiprocessor);
    int n = 0;
    if (!occ || occ(&n, (CUfunction)handle, (int)threads, smem) != CUDA_SUCCESS || n < 1)
        n = 1;
    atomic_store_explicit(&fn->blocks_per_sm, (uint32_t)n, memory_order_relaxed);
    atomic_store_explicit(&fn->occ_threads, threads, memory_order_relaxed);
    atomic_store_explicit(&fn->occ_smem, smem, memory_order_relaxed);
    return (uint32_t)n;
}

uint64_t fcsp_fn_cost(struct fcsp_fn *fn, struct fcsp_dev *d, uint64_t blocks, unsigned threads, unsigned smem,
                      uint64_t *waves)
{
    uint64_t w = 1;
    if (!fn->graph && d->sm_count && blocks) {
        const void *handle = (const void *)(atomic_load_explicit(&fn->key, memory_order_relaxed) >> 1);
        uint64_t per_wave = (uint64_t)d->sm_count * blocks_per_sm(fn, handle, threads, smem);
        w = (blocks + per_wave - 1) / per_wave;
    }
    *waves = w;
    /* relaxed: an estimate, refined by the sampler thread */
    uint64_t wave_ns = atomic_load_explicit(&fn->wave_ns, memory_order_relaxed);
    if (!wave_ns)
        wave_ns = fcsp_g.cfg.sm_default_wave_ns;
    return wave_ns * w;
}

int fcsp_fn_wait_measured(struct fcsp_fn *fn)
{
    /* acquire: pairs with learn()'s release, so the estimate read after is the measured one */
    if (!atomic_load_explicit(&fn->first_pending, memory_order_acquire))
        return 0;
    uint64_t deadline = fcsp_now_ns() + FIRST_WAIT_NS;
    while (atomic_load_explicit(&fn->first_pending, memory_order_acquire) && fcsp_now_ns() < deadline) {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

/* ---- sampling ---- */

struct fcsp_sample {
    struct fcsp_fn *fn;
    CUcontext ctx;
    CUevent start, end;
    uint64_t waves;
    uint64_t submit_ns; /* stream was idle: CPU time from recording start to the launch's return, else 0 */
    uint64_t t0;        /* when start was recorded (CLOCK_MONOTONIC ns) */
    int pending;        /* under sample_lock */
};

static pthread_mutex_t sample_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sample_cond = PTHREAD_COND_INITIALIZER;
static struct fcsp_sample samples[MAX_INFLIGHT]; /* events kept for reuse (per context) */
static int sampler_started;

/* The smallest of the recent samples: a kernel that waited behind another tenant's kernels (the GPU does not
 * preempt) reads longer than it ran, never shorter, so the minimum is the kernel's own time. A window, not an
 * all-time minimum, so a function whose kernels really grow (input-dependent work) is followed within 8 samples. */
static void learn(struct fcsp_fn *fn, uint64_t ns, uint64_t waves)
{
    uint64_t per_wave = ns / (waves ? waves : 1);
    if (!per_wave)
        per_wave = 1;
    fn->window[fn->nwindow++ % WINDOW] = per_wave;
    uint32_t n = fn->nwindow < WINDOW ? fn->nwindow : WINDOW;
    uint64_t best = fn->window[0];
    for (uint32_t i = 1; i < n; i++)
        if (fn->window[i] < best)
            best = fn->window[i];
    /* relaxed for the estimate: a value of its own. release on first_pending: a launch waiting for the first
     * measurement (acquire) then reads this estimate */
    atomic_store_explicit(&fn->wave_ns, best, memory_order_relaxed);
    atomic_store_explicit(&fn->first_pending, 0, memory_order_release);
    /* How the estimate follows the samples (bench/gpu_inference.py keeps these lines for its trainers). On the
     * sampler thread, at debug level only: the write happens under sample_lock, so with debug on a launch that
     * samples may wait for it */
    fcsp_log(FCSP_LOG_DEBUG, "kernel sample: fn=%p waves=%llu ns=%llu estimate_per_wave_ns=%llu", (void *)fn,
             (unsigned long long)waves, (unsigned long long)ns, (unsigned long long)best);
}

static void *sampler_main(void *arg)
{
    (void)arg;
    fcsp_pfn_cuEventQuery query = FCSP_REAL(cuEventQuery);
    fcsp_pfn_cuEventElapsedTime elapsed = FCSP_REAL(cuEventElapsedTime);
    fcsp_pfn_cuCtxSetCurrent set_ctx = FCSP_REAL(cuCtxSetCurrent);
    /* cuEventQuery is an unsafe call during captures: in RELAXED mode this thread may make it whatever the
     * application captures (capture_watch.h). Where the driver cannot, queries wait while captures are open. */
    CUstreamCaptureMode old_mode;
    int relaxed = fcsp_relaxed_enter(&old_mode);
    pthread_mutex_lock(&sample_lock);
    for (;;) {
        int pending = 0;
        for (int i = 0; i < MAX_INFLIGHT; i++) {
            struct fcsp_sample *s = &samples[i];
            if (s->pending != 1)
                continue;
            if (!relaxed && fcsp_captures_open()) {
                pending++;
                continue;
            }
            set_ctx(s->ctx);
            CUresult rc = query(s->end);
            if (rc == CUDA_ERROR_NOT_READY) {
                pending++;
                continue;
            }
            float ms = 0;
            if (rc == CUDA_SUCCESS && elapsed(&ms, s->start, s->end) == CUDA_SUCCESS && ms > 0) {
                /* On an idle stream the start event ran at once and the kernel only once the CPU had submitted
                 * it: that submission time is not the kernel's (short kernels read 20-30% long on an H100). */
                uint64_t ns = (uint64_t)((double)ms * 1e6);
                learn(s->fn, ns > 2 * s->submit_ns ? ns - s->submit_ns : ns / 2, s->waves);
            }
            else /* relaxed: nothing to publish; waiters fall back to the default cost */
                atomic_store_explicit(&s->fn->first_pending, 0, memory_order_relaxed);
            s->pending = 0;
        }
        if (pending) {
            pthread_mutex_unlock(&sample_lock);
            struct timespec ts = {0, 500000}; /* the GPU runs them in micro- to milliseconds */
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&sample_lock);
        } else {
            pthread_cond_wait(&sample_cond, &sample_lock);
        }
    }
    return NULL;
}

static void start_sampler(void)
{
    sampler_started = fcsp_start_bg_thread(sampler_main) == 0 ? 1 : -1;
    if (sampler_started < 0)
        fcsp_log(FCSP_LOG_WARN, "cannot start the launch sampler thread: kernel costs stay at their default");
}

static int due(struct fcsp_fn *fn, uint64_t now)
{
    uint32_t n = atomic_load_explicit(&fn->samples, memory_order_relaxed);
    if (n < FIRST_SAMPLES)
        return atomic_fetch_add_explicit(&fn->samples, 1, memory_order_relaxed) < FIRST_SAMPLES;
    uint64_t next = atomic_load_explicit(&fn->next_sample_ns, memory_order_relaxed);
    /* relaxed: one thread wins the CAS and samples; a lost race just skips a sample */
    return now >= next && atomic_compare_exchange_strong_explicit(&fn->next_sample_ns, &next,
                                                                   now + fcsp_g.cfg.sm_sample_ns,
                                                                   memory_order_relaxed, memory_order_relaxed);
}

struct fcsp_sample *fcsp_sample_begin(struct fcsp_fn *fn, CUstream stream, uint64_t waves)
{
    /* While the application has a capture open, sampling stands aside (a launch into it is not even here). */
    if (fcsp_captures_open() || !due(fn, fcsp_coarse_ns()))
        return NULL;
    fcsp_pfn_cuStreamIsCapturing capturing = FCSP_REAL(cuStreamIsCapturing);
    fcsp_pfn_cuStreamQuery stream_query = FCSP_REAL(cuStreamQuery);
    CUstreamCaptureStatus cap = CU_STREAM_CAPTURE_STATUS_NONE;
    if (capturing && capturing(stream, &cap) == CUDA_SUCCESS && cap != CU_STREAM_CAPTURE_STATUS_NONE)
        return NULL; /* events would become part of the graph (a capture begun past our hooks) */
    /* Idle stream: the start event completes at once, before the kernel is even submitted (see sampler_main).
     * cuStreamQuery is an unsafe call: made in RELAXED mode, so a capture another thread opens meanwhile stays
     * valid; without that mode, the stream counts as busy. */
    CUstreamCaptureMode old_mode;
    int idle = 0;
    if (stream_query && fcsp_relaxed_enter(&old_mode)) {
        idle = stream_query(stream) == CUDA_SUCCESS;
        fcsp_relaxed_leave(old_mode);
    }
    fcsp_pfn_cuCtxGetCurrent get_ctx = FCSP_REAL(cuCtxGetCurrent);
    fcsp_pfn_cuEventCreate create = FCSP_REAL(cuEventCreate);
    fcsp_pfn_cuEventDestroy_v2 destroy = FCSP_REAL(cuEventDestroy_v2);
    fcsp_pfn_cuEventRecord record = FCSP_REAL(cuEventRecord);
    CUcontext ctx = NULL;
    if (!get_ctx || !create || !destroy || !record || !FCSP_REAL(cuEventQuery) || !FCSP_REAL(cuEventElapsedTime) ||
        !FCSP_REAL(cuCtxSetCurrent) || get_ctx(&ctx) != CUDA_SUCCESS || !ctx)
        return NULL;
    pthread_mutex_lock(&sample_lock);
    if (!sampler_started)
        start_sampler();
    struct fcsp_sample *s = NULL;
    for (int i = 0; i < MAX_INFLIGHT && !s; i++)
        if (!samples[i].pending && (samples[i].ctx == ctx || !samples[i].start))
            s = &samples[i];
    for (int i = 0; i < MAX_INFLIGHT && !s; i++)
        if (!samples[i].pending) { /* events of another context: replace them */
            s = &samples[i];
            destroy(s->start);
            destroy(s->end);
            s->start = s->end = NULL;
        }
    if (s && !s->start) {
        if (create(&s->start, CU_EVENT_DEFAULT) != CUDA_SUCCESS)
            s->start = NULL;
        else if (create(&s->end, CU_EVENT_DEFAULT) != CUDA_SUCCESS) {
            destroy(s->start);
            s->start = NULL;
        }
        s->ctx = ctx;
    }
    if (s && (!s->start || record(s->start, stream) != CUDA_SUCCESS))
        s = NULL;
    if (s) {
        s->fn = fn;
        s->waves = waves;
        s->t0 = idle ? fcsp_now_ns() : 0;
        s->submit_ns = 0;
        s->pending = -1; /* reserved: not yet visible to the sampler */
        if (!atomic_load_explicit(&fn->wave_ns, memory_order_relaxed))
            atomic_store_explicit(&fn->first_pending, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&sample_lock);
    return s;
}

void fcsp_sample_end(struct fcsp_sample *s, CUstream stream, CUresult launch_rc)
{
    fcsp_pfn_cuEventRecord record = FCSP_REAL(cuEventRecord);
    uint64_t submitted = s->t0 ? fcsp_now_ns() - s->t0 : 0;
    int ok = launch_rc == CUDA_SUCCESS && record(s->end, stream) == CUDA_SUCCESS;
    pthread_mutex_lock(&sample_lock);
    s->submit_ns = submitted;
    s->pending = ok ? 1 : 0;
    if (!ok) /* relaxed: nothing to publish; waiters fall back to the default cost */
        atomic_store_explicit(&s->fn->first_pending, 0, memory_order_relaxed);
    if (ok)
        pthread_cond_signal(&sample_cond);
    pthread_mutex_unlock(&sample_lock);
}

void fcsp_cost_reset(void)
{
    fcsp_capture_reset();
    memset(table, 0, sizeof table);
    memset(samples, 0, sizeof samples);
    sampler_started = 0;
    pthread_mutex_init(&sample_lock, NULL);
    pthread_cond_init(&sample_cond, NULL);
}
