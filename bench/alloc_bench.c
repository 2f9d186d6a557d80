/* alloc_bench: per-call latency of driver-API allocation, refusal, launch and initialisation.
 *
 * Reaches the driver the way the CUDA runtime does: dlopen("libcuda.so.1"), then every function through
 * cuGetProcAddress_v2(name, &pfn, 12080, 0, &status). Run it with and without LD_PRELOAD=libfcsp.so to get the
 * interposer's added cost (bench/run_bench.py does that and prints the table).
 *
 *   alloc_bench --mode alloc|launch|refused|init [--threads N] [--iters N] [--size BYTES] [--warmup N]
 *               [--dump FILE]
 *
 * alloc    each iteration: cuMemAlloc_v2(--size, default 64 KiB) + cuMemFree_v2, timed as a pair (--warmup,
 *          default 1000, untimed iterations per thread first; likewise in the other per-call modes)
 * refused  each iteration: one cuMemAlloc_v2(--size) that must fail with CUDA_ERROR_OUT_OF_MEMORY (size above the cap)
 * launch   each iteration: one cuLaunchKernel (1 block x 32 threads, empty kernel `noop`) on the thread's own
 *          stream; the stream is synchronised every 256 launches outside the timed region
 * init     one cuInit + cuDevicePrimaryCtxRetain + cuCtxSetCurrent; also reports the dlopen + symbol lookup time
 *          and the first cuMemAlloc_v2 + cuMemFree_v2 (where libfcsp initialises lazily)
 *
 * Prints one line: `mode=alloc threads=16 n=... p50_ns=... p99_ns=... mean_ns=...` over all threads' samples
 * (init: `mode=init setup_us=... init_us=... first_alloc_us=...`). --dump FILE also writes every sample as a
 * native-endian uint32 (nanoseconds, saturated), so several processes' samples can be merged.
 * Any unexpected CUDA error prints its name and exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fcsp/cuda_abi.h"

#define BENCH_CUDA_VERSION 12080
#define LAUNCH_SYNC_EVERY 256

typedef CUresult (*pfn_cuGetProcAddress_v2)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
typedef CUresult (*pfn_cuGetErrorName)(CUresult, const char **);
typedef CUresult (*pfn_cuInit)(unsigned int);
typedef CUresult (*pfn_cuDeviceGet)(CUdevice *, int);
typedef CUresult (*pfn_cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
typedef CUresult (*pfn_cuCtxSetCurrent)(CUcontext);
typedef CUresult (*pfn_cuMemAlloc_v2)(CUdeviceptr *, size_t);
typedef CUresult (*pfn_cuMemFree_v2)(CUdeviceptr);
typedef CUresult (*pfn_cuModuleLoadData)(CUmodule *, const void *);
typedef CUresult (*pfn_cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
typedef CUresult (*pfn_cuStreamCreate)(CUstream *, unsigned int);
typedef CUresult (*pfn_cuStreamSynchronize)(CUstream);
typedef CUresult (*pfn_cuStreamDestroy_v2)(CUstream);
typedef CUresult (*pfn_cuLaunchKernel)(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
                                       unsigned int, unsigned int, unsigned int, CUstream, void **, void **);

static struct {
    pfn_cuGetProcAddress_v2 getProcAddress;
    pfn_cuGetErrorName getErrorName;
    pfn_cuInit init;
    pfn_cuDeviceGet deviceGet;
    pfn_cuDevicePrimaryCtxRetain primaryCtxRetain;
    pfn_cuCtxSetCurrent ctxSetCurrent;
    pfn_cuMemAlloc_v2 memAlloc;
    pfn_cuMemFree_v2 memFree;
    pfn_cuModuleLoadData moduleLoadData;
    pfn_cuModuleGetFunction moduleGetFunction;
    pfn_cuStreamCreate streamCreate;
    pfn_cuStreamSynchronize streamSynchronize;
    pfn_cuStreamDestroy_v2 streamDestroy;
    pfn_cuLaunchKernel launchKernel;
} cu;

enum mode { MODE_ALLOC, MODE_LAUNCH, MODE_REFUSED, MODE_INIT };

static const char *const mode_names[] = {"alloc", "launch", "refused", "init"};

static struct {
    enum mode mode;
    int threads;
    long iters;
    size_t size;
    long warmup;
    const char *dump;
} opt = {MODE_ALLOC, 1, 100000, 64 << 10, 1000, NULL};

static CUcontext g_ctx;
static CUfunction g_noop;
static pthread_barrier_t g_start;

static const char noop_ptx[] = ".version 8.0\n.target sm_90\n.address_size 64\n.visible .entry noop()\n{\n\tret;\n}\n";

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "alloc_bench: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

static void check(CUresult rc, const char *what)
{
    if (rc == CUDA_SUCCESS)
        return;
    const char *name = NULL;
    if (!cu.getErrorName || cu.getErrorName(rc, &name) != CUDA_SUCCESS || !name)
        name = "unknown error";
    fprintf(stderr, "alloc_bench: %s failed: %s (%d)\n", what, name, (int)rc);
    exit(1);
}

static void *get_proc(const char *name)
{
    void *pfn = NULL;
    CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    CUresult rc = cu.getProcAddress(name, &pfn, BENCH_CUDA_VERSION, CU_GET_PROC_ADDRESS_DEFAULT, &status);
    if (rc != CUDA_SUCCESS || status != CU_GET_PROC_ADDRESS_SUCCESS || !pfn) {
        fprintf(stderr, "alloc_bench: cuGetProcAddress_v2(%s, %d) failed: rc=%d status=%d\n", name,
                BENCH_CUDA_VERSION, (int)rc, (int)status);
        exit(1);
    }
    return pfn;
}

static void load_driver(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        die("cannot load libcuda.so.1: %s", dlerror());
    *(void **)&cu.getProcAddress = dlsym(h, "cuGetProcAddress_v2");
    if (!cu.getProcAddress)
        die("libcuda.so.1 has no cuGetProcAddress_v2: %s", dlerror());
    *(void **)&cu.getErrorName = get_proc("cuGetErrorName");
    *(void **)&cu.init = get_proc("cuInit");
    *(void **)&cu.deviceGet = get_proc("cuDeviceGet");
    *(void **)&cu.primaryCtxRetain = get_proc("cuDevicePrimaryCtxRetain");
    *(void **)&cu.ctxSetCurrent = get_proc("cuCtxSetCurrent");
    *(void **)&cu.memAlloc = get_proc("cuMemAlloc");
    *(void **)&cu.memFree = get_proc("cuMemFree");
    *(void **)&cu.moduleLoadData = get_proc("cuModuleLoadData");
    *(void **)&cu.moduleGetFunction = get_proc("cuModuleGetFunction");
    *(void **)&cu.streamCreate = get_proc("cuStreamCreate");
    *(void **)&cu.streamSynchronize = get_proc("cuStreamSynchronize");
    *(void **)&cu.streamDestroy = get_proc("cuStreamDestroy");
    *(void **)&cu.launchKernel = get_proc("cuLaunchKernel");
}

static void init_context(void)
{
    CUdevice dev;
    check(cu.init(0), "cuInit");
    check(cu.deviceGet(&dev, 0), "cuDeviceGet");
    check(cu.primaryCtxRetain(&g_ctx, dev), "cuDevicePrimaryCtxRetain");
    check(cu.ctxSetCurrent(g_ctx), "cuCtxSetCurrent");
}

static inline uint32_t clamp32(uint64_t v) { return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v; }

static void run_alloc(uint32_t *out, long iters)
{
    CUdeviceptr p;
    for (long i = 0; i < opt.warmup; i++) {
        check(cu.memAlloc(&p, opt.size), "cuMemAlloc_v2 (warm-up)");
        check(cu.memFree(p), "cuMemFree_v2 (warm-up)");
    }
    pthread_barrier_wait(&g_start);
    for (long i = 0; i < iters; i++) {
        uint64_t t0 = now_ns();
        CUresult ra = cu.memAlloc(&p, opt.size);
        CUresult rf = ra == CUDA_SUCCESS ? cu.memFree(p) : CUDA_SUCCESS;
        uint64_t t1 = now_ns();
        check(ra, "cuMemAlloc_v2");
        check(rf, "cuMemFree_v2");
        out[i] = clamp32(t1 - t0);
    }
}

static void run_refused(uint32_t *out, long iters)
{
    CUdeviceptr p = 0;
    for (long i = 0; i < opt.warmup; i++) {
        CUresult rc = cu.memAlloc(&p, opt.size);
        if (rc == CUDA_SUCCESS)
            die("%s", "an allocation above the cap succeeded: refused mode needs a cap below --size "
                      "(e.g. LD_PRELOAD=libfcsp.so FCSP_MEM_LIMIT=1M --size 64M)");
        if (rc != CUDA_ERROR_OUT_OF_MEMORY)
            check(rc, "cuMemAlloc_v2 (expected CUDA_ERROR_OUT_OF_MEMORY)");
    }
    pthread_barrier_wait(&g_start);
    for (long i = 0; i < iters; i++) {
        uint64_t t0 = now_ns();
        CUresult rc = cu.memAlloc(&p, opt.size);
        uint64_t t1 = now_ns();
        if (rc != CUDA_ERROR_OUT_OF_MEMORY) {
            if (rc == CUDA_SUCCESS)
                die("%s", "an allocation above the cap succeeded");
            check(rc, "cuMemAlloc_v2 (expected CUDA_ERROR_OUT_OF_MEMORY)");
        }
        out[i] = clamp32(t1 - t0);
    }
}

static void run_launch(uint32_t *out, long iters)
{
    CUstream s;
    check(cu.streamCreate(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    for (long i = 0; i < opt.warmup; i++) {
        check(cu.launchKernel(g_noop, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL), "cuLaunchKernel (warm-up)");
        if ((i + 1) % LAUNCH_SYNC_EVERY == 0)
            check(cu.streamSynchronize(s), "cuStreamSynchronize");
    }
    check(cu.streamSynchronize(s), "cuStreamSynchronize");
    pthread_barrier_wait(&g_start);
    for (long i = 0; i < iters; i++) {
        uint64_t t0 = now_ns();
        CUresult rc = cu.launchKernel(g_noop, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL);
        uint64_t t1 = now_ns();
        check(rc, "cuLaunchKernel");
        out[i] = clamp32(t1 - t0);
        if ((i + 1) % LAUNCH_SYNC_EVERY == 0)
            check(cu.streamSynchronize(s), "cuStreamSynchronize");
    }
    check(cu.streamSynchronize(s), "cuStreamSynchronize");
    check(cu.streamDestroy(s), "cuStreamDestroy_v2");
}

static void *worker(void *arg)
{
    uint32_t *out = arg;
    /* The primary context is current per thread. */
    check(cu.ctxSetCurrent(g_ctx), "cuCtxSetCurrent (worker)");
    switch (opt.mode) {
    case MODE_ALLOC: run_alloc(out, opt.iters); break;
    case MODE_REFUSED: run_refused(out, opt.iters); break;
    case MODE_LAUNCH: run_launch(out, opt.iters); break;
    case MODE_INIT: break;
    }
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint32_t percentile(const uint32_t *sorted, size_t n, double q)
{
    size_t idx = (size_t)(q * (double)(n - 1) + 0.5);
    return sorted[idx < n ? idx : n - 1];
}

static int run_init(void)
{
    uint64_t t0 = now_ns();
    load_driver();
    uint64_t t1 = now_ns();
    init_context();
    uint64_t t2 = now_ns();
    CUdeviceptr p;
    check(cu.memAlloc(&p, opt.size), "cuMemAlloc_v2 (first)");
    check(cu.memFree(p), "cuMemFree_v2 (first)");
    uint64_t t3 = now_ns();
    printf("mode=init setup_us=%.1f init_us=%.1f first_alloc_us=%.1f\n", (double)(t1 - t0) / 1e3,
           (double)(t2 - t1) / 1e3, (double)(t3 - t2) / 1e3);
    return 0;
}

static long parse_long(const char *name, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || v < lo || v > hi)
        die("bad value for %s", name);
    /* size suffixes for --size */
    if (*end == 'K' || *end == 'k')
        v <<= 10, end++;
    else if (*end == 'M' || *end == 'm')
        v <<= 20, end++;
    else if (*end == 'G' || *end == 'g')
        v <<= 30, end++;
    if (*end != '\0')
        die("bad value for %s (a number, optionally followed by K, M or G)", name);
    return v;
}

static void usage(void)
{
    fprintf(stderr, "usage: alloc_bench --mode alloc|launch|refused|init [--threads N] [--iters N] "
                    "[--size BYTES[K|M|G]] [--warmup N] [--dump FILE]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--threads") == 0) {
            opt.threads = (int)parse_long(a, v, 1, 1024);
        } else if (strcmp(a, "--iters") == 0) {
            opt.iters = parse_long(a, v, 1, 100000000);
        } else if (strcmp(a, "--size") == 0) {
            opt.size = (size_t)parse_long(a, v, 1, 1L << 40);
        } else if (strcmp(a, "--warmup") == 0) {
            opt.warmup = parse_long(a, v, 0, 100000000);
        } else if (strcmp(a, "--dump") == 0) {
            opt.dump = v;
        } else if (strcmp(a, "--mode") == 0) {
            int found = 0;
            for (int m = 0; m < (int)(sizeof mode_names / sizeof mode_names[0]); m++)
                if (strcmp(v, mode_names[m]) == 0) {
                    opt.mode = (enum mode)m;
                    found = 1;
                }
            if (!found)
                usage();
        } else {
            usage();
        }
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    if (opt.mode == MODE_INIT)
        return run_init();

    load_driver();
    init_context();
    if (opt.mode == MODE_LAUNCH) {
        CUmodule mod;
        check(cu.moduleLoadData(&mod, noop_ptx), "cuModuleLoadData");
        check(cu.moduleGetFunction(&g_noop, mod, "noop"), "cuModuleGetFunction");
    }

    size_t per = (size_t)opt.iters, n = per * (size_t)opt.threads;
    uint32_t *samples = calloc(n, sizeof *samples);
    pthread_t *tids = calloc((size_t)opt.threads, sizeof *tids);
    if (!samples || !tids)
        die("%s", "out of host memory");
    if (pthread_barrier_init(&g_start, NULL, (unsigned)opt.threads) != 0)
        die("%s", "pthread_barrier_init failed");
    for (int t = 0; t < opt.threads; t++)
        if (pthread_create(&tids[t], NULL, worker, samples + (size_t)t * per) != 0)
            die("%s", "pthread_create failed");
    for (int t = 0; t < opt.threads; t++)
        pthread_join(tids[t], NULL);
    pthread_barrier_destroy(&g_start);

    if (opt.dump) {
        FILE *f = fopen(opt.dump, "wb");
        if (!f || fwrite(samples, sizeof *samples, n, f) != n || fclose(f) != 0)
            die("cannot write %s", opt.dump);
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += samples[i];
    qsort(samples, n, sizeof *samples, cmp_u32);
    printf("mode=%s threads=%d n=%zu p50_ns=%" PRIu32 " p99_ns=%" PRIu32 " mean_ns=%.1f min_ns=%" PRIu32
           " max_ns=%" PRIu32 "\n",
           mode_names[opt.mode], opt.threads, n, percentile(samples, n, 0.50), percentile(samples, n, 0.99),
           sum / (double)n, samples[0], samples[n - 1]);
    free(tids);
    free(samples);
    return 0;
}
