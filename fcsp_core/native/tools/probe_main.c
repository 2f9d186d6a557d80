/* fcsp-probe: options, command parsing and the command loop. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"

static const char g_usage[] =
    "usage: fcsp-probe [--api=proc[:VERSION]|--api=dlsym] [--ptsz] COMMAND [ARGS]... [COMMAND [ARGS]...]...\n"
    "\n"
    "A CUDA driver API program for tests and demos. It dlopen()s libcuda.so.1 and gets its entry points through\n"
    "cuGetProcAddress_v2 with CUDA version 12080 (like the CUDA runtime), or with --api=proc:VERSION (11030 or\n"
    "later; below 12000 through cuGetProcAddress), or with --api=dlsym through dlsym (cuMemAlloc_v2 etc.).\n"
    "--ptsz asks for the per-thread default stream forms (_ptsz/_ptds). Commands run in order; each prints one\n"
    "line to stdout:\n"
    "\n"
    "  init [DEV]              cuInit, retain DEV's primary context (default 0), make it current\n"
    "                            -> init ok dev=0 total_bytes=N\n"
    "  alloc SIZE [KIND]       allocate; KIND: mem (default), pitch, managed, async, pool (a created pool),\n"
    "                          vmm (cuMemCreate + map, rounded up to the granularity), array, array3d, mipmap\n"
    "                            -> alloc ok kind=mem size=N | alloc fail kind=mem size=N err=CUDA_ERROR_...\n"
    "                          (size: the bytes the allocation takes on the device)\n"
    "  free [last|all]         free the newest (default) or every allocation -> free ok count=N\n"
    "  fill [KIND] [CHUNK]     allocate CHUNK (default 64M) until the first failure\n"
    "                            -> fill ok kind=mem allocated_bytes=N count=N err=CUDA_ERROR_OUT_OF_MEMORY\n"
    "  meminfo                 cuMemGetInfo -> meminfo free_bytes=N total_bytes=N\n"
    "  totalmem                cuDeviceTotalMem -> totalmem total_bytes=N\n"
    "  device                  name, SMs, compute capability, UUID of the current device -> device ok ...\n"
    "  launch NAME BLOCKS THREADS COUNT\n"
    "                          launch kernel NAME (spin, noop, work or ncclDevKernel_AllReduce_Sum_f32_RING_LL of\n"
    "                          a built-in PTX module) COUNT times on a stream, synchronise\n"
    "                            -> launch ok name=spin count=N elapsed_ms=F wall_ms=F\n"
    "                          (elapsed: between events around the launches; wall: host time to the end)\n"
    "  launchloop NAME BLOCKS THREADS SECONDS\n"
    "                          launch back to back for SECONDS (e.g. 2 or 0.5) of wall time, synchronising every 64\n"
    "                          launches -> launchloop ok name=spin launches=N wall_ms=F\n"
    "  graph NAME BLOCKS THREADS KERNELS COUNT\n"
    "                          capture KERNELS launches on a stream into a graph, instantiate it, launch it COUNT\n"
    "                          times, synchronise\n"
    "                            -> graph ok name=spin kernels=K count=N elapsed_ms=F wall_ms=F capture_ms=F\n"
    "                          (kernels: the captured graph's nodes; capture: host time of the capture)\n"
    "  graphto NAME BLOCKS THREADS KERNELS COUNT\n"
    "                          the same, captured with cuStreamBeginCaptureToGraph into a graph made with\n"
    "                          cuGraphCreate -> graphto ok ... same_graph=1 (cuStreamEndCapture gave that graph back)\n"
    "  funcname NAME           cuFuncGetName of kernel NAME -> funcname ok entry=NAME name=NAME\n"
    "  sleep MS                -> sleep ok ms=N\n"
    "  stress THREADS ITERS MAXSIZE\n"
    "                          threads allocating/freeing at random (mem, async, vmm, managed; sizes 1..MAXSIZE)\n"
    "                            -> stress ok threads=T iters=I allocs=N refused=N\n"
    "  pooltrim [BYTES]        cuMemPoolTrimTo on the pool of kind pool (default 0)\n"
    "                            -> pooltrim ok keep=N reserved_bytes=N used_bytes=N\n"
    "  resolve NAME            look NAME up like the other entry points\n"
    "                            -> resolve ok name=N symbol=S query=SUCCESS lib=L | resolve fail ... query=...\n"
    "  stats                   the simulator's live and peak bytes of the device (simulated driver only)\n"
    "                            -> stats ok dev=0 live_bytes=N peak_bytes=N\n"
    "  hold                    wait until standard input reaches end of file -> hold ok\n"
    "\n"
    "SIZE: bytes or a number with K, M, G or T (binary), e.g. 123, 64K, 512M, 1.5G.\n"
    "A failing command prints `<cmd> fail err=NAME` and the probe goes on. Exit status: 0 when every command\n"
    "worked (refused allocations count as working), 1 when a command other than alloc/fill failed, 2 on a usage\n"
    "error.\n";

enum cmd_type { C_INIT, C_ALLOC, C_FREE, C_FILL, C_MEMINFO, C_TOTALMEM, C_DEVICE, C_LAUNCH, C_LAUNCHLOOP, C_GRAPH,
                C_FUNCNAME, C_SLEEP, C_STRESS, C_POOLTRIM, C_RESOLVE, C_STATS, C_HOLD };

struct cmd {
    enum cmd_type type;
    const char *name;
    uint64_t a, b, c, d;
    int into_graph; /* graphto: cuStreamBeginCaptureToGraph into a graph of our own */
    double secs;
    enum probe_kind kind;
};

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "fcsp-probe: %s%s%s\n\n%s", what, arg ? ": " : "", arg ? arg : "", g_usage);
    return 2;
}

static int is_uint(const char *s)
{
    uint64_t v;
    return s && probe_parse_uint(s, &v) == 0;
}

static int is_size(const char *s)
{
    uint64_t v;
    return s && probe_parse_size(s, &v) == 0;
}

/* Seconds: a number above 0 and at most a day (2, 0.5). */
static int parse_seconds(const char *s, double *out)
{
    if (s == NULL || !(isdigit((unsigned char)*s) || *s == '.'))
        return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v > 0 && v <= 86400))
        return -1;
    *out = v;
    return 0;
}

/* Parses argv[*i..] into c, advancing *i. Returns 0, or 2 after printing a usage error. */
static int parse_cmd(char **argv, int argc, int *i, struct cmd *c)
{
    const char *w = argv[(*i)++];
    const char *n1 = *i < argc ? argv[*i] : NULL;
    memset(c, 0, sizeof *c);
    c->kind = K_MEM;
    if (strcmp(w, "init") == 0) {
        c->type = C_INIT;
        if (is_uint(n1))
            probe_parse_uint(argv[(*i)++], &c->a);
    } else if (strcmp(w, "alloc") == 0) {
        c->type = C_ALLOC;
        if (!is_size(n1))
            return usage_error("alloc needs a SIZE", n1);
        probe_parse_size(argv[(*i)++], &c->a);
        if (*i < argc && probe_kind_parse(argv[*i], &c->kind) == 0)
            (*i)++;
    } else if (strcmp(w, "free") == 0) {
        c->type = C_FREE;
        if (n1 && (strcmp(n1, "all") == 0 || strcmp(n1, "last") == 0)) {
            c->a = strcmp(n1, "all") == 0;
            (*i)++;
        }
    } else if (strcmp(w, "fill") == 0) {
        c->type = C_FILL;
        c->b = 64ULL << 20;
        if (n1 && probe_kind_parse(n1, &c->kind) == 0)
            n1 = ++(*i) < argc ? argv[*i] : NULL;
        if (is_size(n1)) {
            probe_parse_size(n1, &c->b);
            (*i)++;
        }
        if (c->b == 0)
            return usage_error("fill needs a CHUNK above 0", NULL);
    } else if (strcmp(w, "meminfo") == 0) {
        c->type = C_MEMINFO;
    } else if (strcmp(w, "totalmem") == 0) {
        c->type = C_TOTALMEM;
    } else if (strcmp(w, "device") == 0) {
        c->type = C_DEVICE;
    } else if (strcmp(w, "launch") == 0) {
        c->type = C_LAUNCH;
        if (*i + 4 > argc || !is_uint(argv[*i + 1]) || !is_uint(argv[*i + 2]) || !is_uint(argv[*i + 3]))
            return usage_error("launch needs NAME BLOCKS THREADS COUNT", NULL);
        c->name = argv[(*i)++];
        probe_parse_uint(argv[(*i)++], &c->a);
        probe_parse_uint(argv[(*i)++], &c->b);
        probe_parse_uint(argv[(*i)++], &c->c);
    } else if (strcmp(w, "launchloop") == 0) {
        c->type = C_LAUNCHLOOP;
        if (*i + 4 > argc || !is_uint(argv[*i + 1]) || !is_uint(argv[*i + 2]) ||
            parse_seconds(argv[*i + 3], &c->secs) != 0)
            return usage_error("launchloop needs NAME BLOCKS THREADS SECONDS", NULL);
        c->name = argv[(*i)++];
        probe_parse_uint(argv[(*i)++], &c->a);
        probe_parse_uint(argv[(*i)++], &c->b);
        (*i)++;
    } else if (strcmp(w, "graph") == 0 || strcmp(w, "graphto") == 0) {
        c->type = C_GRAPH;
        c->into_graph = w[5] == 't';
        if (*i + 5 > argc || !is_uint(argv[*i + 1]) || !is_uint(argv[*i + 2]) || !is_uint(argv[*i + 3]) ||
            !is_uint(argv[*i + 4]))
            return usage_error(c->into_graph ? "graphto needs NAME BLOCKS THREADS KERNELS COUNT"
                                             : "graph needs NAME BLOCKS THREADS KERNELS COUNT",
                               NULL);
        c->name = argv[(*i)++];
        probe_parse_uint(argv[(*i)++], &c->a);
        probe_parse_uint(argv[(*i)++], &c->b);
        probe_parse_uint(argv[(*i)++], &c->c);
        probe_parse_uint(argv[(*i)++], &c->d);
    } else if (strcmp(w, "funcname") == 0) {
        c->type = C_FUNCNAME;
        if (n1 == NULL)
            return usage_error("funcname needs a NAME", NULL);
        c->name = argv[(*i)++];
    } else if (strcmp(w, "sleep") == 0) {
        c->type = C_SLEEP;
        if (!is_uint(n1))
            return usage_error("sleep needs MS", n1);
        probe_parse_uint(argv[(*i)++], &c->a);
    } else if (strcmp(w, "stress") == 0) {
        c->type = C_STRESS;
        if (*i + 3 > argc || !is_uint(argv[*i]) || !is_uint(argv[*i + 1]) || !is_size(argv[*i + 2]))
            return usage_error("stress needs THREADS ITERS MAXSIZE", NULL);
        probe_parse_uint(argv[(*i)++], &c->a);
        probe_parse_uint(argv[(*i)++], &c->b);
        probe_parse_size(argv[(*i)++], &c->c);
        if (c->a == 0 || c->a > 64 || c->c == 0)
            return usage_error("stress needs 1..64 THREADS and a MAXSIZE above 0", NULL);
    } else if (strcmp(w, "pooltrim") == 0) {
        c->type = C_POOLTRIM;
        if (is_size(n1))
            probe_parse_size(argv[(*i)++], &c->a);
    } else if (strcmp(w, "resolve") == 0) {
        c->type = C_RESOLVE;
        if (n1 == NULL)
            return usage_error("resolve needs a NAME", NULL);
        c->name = argv[(*i)++];
    } else if (strcmp(w, "stats") == 0) {
        c->type = C_STATS;
    } else if (strcmp(w, "hold") == 0) {
        c->type = C_HOLD;
    } else {
        return usage_error("unknown command", w);
    }
    return 0;
}

static int cmd_sleep(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    probe_out("sleep ok ms=%llu", (unsigned long long)ms);
    return 0;
}

static int cmd_hold(void)
{
    char buf[256];
    while (read(STDIN_FILENO, buf, sizeof buf) > 0) {
    }
    probe_out("hold ok");
    return 0;
}

static int run(const struct cmd *c)
{
    switch (c->type) {
    case C_INIT: return cmd_init((int)c->a);
    case C_ALLOC: return cmd_alloc(c->a, c->kind);
    case C_FREE: return cmd_free((int)c->a);
    case C_FILL: return cmd_fill(c->kind, c->b);
    case C_MEMINFO: return cmd_meminfo();
    case C_TOTALMEM: return cmd_totalmem();
    case C_DEVICE: return cmd_device();
    case C_LAUNCH: return cmd_launch(c->name, c->a, c->b, c->c);
    case C_LAUNCHLOOP: return cmd_launchloop(c->name, c->a, c->b, c->secs);
    case C_GRAPH: return cmd_graph(c->name, c->a, c->b, c->c, c->d, c->into_graph);
    case C_FUNCNAME: return cmd_funcname(c->name);
    case C_SLEEP: return cmd_sleep(c->a);
    case C_STRESS: return cmd_stress(c->a, c->b, c->c);
    case C_POOLTRIM: return cmd_pooltrim(c->a);
    case C_RESOLVE: return cmd_resolve(c->name);
    case C_STATS: return cmd_stats();
    case C_HOLD: return cmd_hold();
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct probe_options opt = {0, 12080, 0};
    int i = 1;
    for (; i < argc && strncmp(argv[i], "-", 1) == 0; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(g_usage, stdout);
            return 0;
        } else if (strcmp(a, "--api=dlsym") == 0) {
            opt.use_dlsym = 1;
        } else if (strcmp(a, "--api=proc") == 0) {
            opt.use_dlsym = 0;
        } else if (strncmp(a, "--api=proc:", 11) == 0) {
            uint64_t v;
            if (probe_parse_uint(a + 11, &v) != 0 || v < 11030 || v > 99999)
                return usage_error("--api=proc:VERSION needs a CUDA version of 11030 or later", a);
            opt.use_dlsym = 0;
            opt.cuda_version = (int)v;
        } else if (strcmp(a, "--ptsz") == 0) {
            opt.per_thread = 1;
        } else {
            return usage_error("unknown option", a);
        }
    }
    if (i >= argc)
        return usage_error("no command", NULL);
    struct cmd *cmds = calloc((size_t)argc, sizeof *cmds);
    if (cmds == NULL)
        return 1;
    int n = 0;
    while (i < argc) {
        int rc = parse_cmd(argv, argc, &i, &cmds[n]);
        if (rc != 0) {
            free(cmds);
            return rc;
        }
        n++;
    }
    if (probe_load(&opt) != 0) {
        free(cmds);
        return 1;
    }
    int failed = 0;
    for (int k = 0; k < n; k++)
        failed |= run(&cmds[k]);
    free(cmds);
    return failed ? 1 : 0;
}
