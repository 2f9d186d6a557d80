/* stress: threads that allocate and free at random (kinds mem, async, vmm, managed; up to 8 live each), counting
 * allocations the driver refused for lack of memory. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "probe.h"

#define LIVE_MAX 8

struct worker {
    pthread_t thread;
    uint64_t iters, maxsize, seed;
    uint64_t allocs, refused, errors;
    CUresult first_error;
};

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    static const enum probe_kind kinds[] = {K_MEM, K_ASYNC, K_VMM, K_MANAGED};
    struct probe_alloc live[LIVE_MAX];
    int n = 0;
    CUresult rc = PROBE_CALL(g_cu.CtxSetCurrent, g_ctx);
    for (uint64_t i = 0; rc == CUDA_SUCCESS && i < w->iters; i++) {
        uint64_t r = next_rand(&w->seed);
        /* free one time in four: threads then hold ~6 allocations each and press against any cap */
        if (n == LIVE_MAX || (n > 0 && (r & 3) == 0)) {
            int k = (int)((r >> 1) % (uint64_t)n);
            CUresult frc = probe_free_one(&live[k]);
            if (frc != CUDA_SUCCESS && w->errors++ == 0)
                w->first_error = frc;
            live[k] = live[--n];
            continue;
        }
        enum probe_kind kind = kinds[(r >> 1) % 4];
        uint64_t size = 1 + (r >> 8) % w->maxsize;
        CUresult arc = probe_alloc_one(kind, size, &live[n]);
        if (arc == CUDA_SUCCESS) {
            n++;
            w->allocs++;
        } else if (arc == CUDA_ERROR_OUT_OF_MEMORY) {
            w->refused++;
        } else if (w->errors++ == 0) {
            w->first_error = arc;
        }
    }
    if (rc != CUDA_SUCCESS && w->errors++ == 0)
        w->first_error = rc;
    while (n > 0)
        probe_free_one(&live[--n]);
    return NULL;
}

int cmd_stress(uint64_t threads, uint64_t iters, uint64_t maxsize)
{
    struct worker ws[64];
    if (threads > 64)
        threads = 64;
    memset(ws, 0, sizeof ws);
    uint64_t started = 0;
    for (uint64_t t = 0; t < threads; t++) {
        ws[t].iters = iters;
        ws[t].maxsize = maxsize ? maxsize : 1;
        ws[t].seed = 0x9e3779b97f4a7c15ULL * (t + 1) ^ ((uint64_t)getpid() << 32);
        if (pthread_create(&ws[t].thread, NULL, work, &ws[t]) != 0)
            break;
        started++;
    }
    uint64_t allocs = 0, refused = 0, errors = 0;
    CUresult first = CUDA_SUCCESS;
    for (uint64_t t = 0; t < started; t++) {
        pthread_join(ws[t].thread, NULL);
        allocs += ws[t].allocs;
        refused += ws[t].refused;
        if (ws[t].errors && first == CUDA_SUCCESS)
            first = ws[t].first_error;
        errors += ws[t].errors;
    }
    PROBE_CALL(g_cu.StreamSynchronize, NULL);
    if (errors || started < threads) {
        probe_out("stress fail threads=%llu errors=%llu err=%s", (unsigned long long)threads,
                  (unsigned long long)errors, probe_err(first));
        return 1;
    }
    probe_out("stress ok threads=%llu iters=%llu allocs=%llu refused=%llu", (unsigned long long)threads,
              (unsigned long long)iters, (unsigned long long)allocs, (unsigned long long)refused);
    return 0;
}
