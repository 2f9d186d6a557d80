/* launch, launchloop, graph, funcname: a tiny PTX module with kernels spin, noop, work and an NCCL-like
 * ncclDevKernel_AllReduce_Sum_f32_RING_LL, launched on a stream (directly or as a captured graph) and timed with
 * events. */
#include "probe.h"

#define PROBE_NCCL_KERNEL "ncclDevKernel_AllReduce_Sum_f32_RING_LL"

static const char g_ptx[] = ".version 8.0\n"
                            ".target sm_90\n"
                            ".address_size 64\n"
                            "\n"
                            ".visible .entry spin()\n{\n\tret;\n}\n"
                            ".visible .entry noop()\n{\n\tret;\n}\n"
                            ".visible .entry work(\n\t.param .u64 work_param_0\n)\n{\n\tret;\n}\n"
                            ".visible .entry " PROBE_NCCL_KERNEL "(\n\t.param .u64 args\n)\n{\n\tret;\n}\n";

static CUmodule g_module;
static unsigned long long g_arg;
static void *g_params[] = {&g_arg};

static CUresult get_function(const char *name, CUfunction *f)
{
    CUresult rc = CUDA_SUCCESS;
    if (g_module == NULL)
        rc = PROBE_CALL(g_cu.ModuleLoadData, &g_module, g_ptx);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.ModuleGetFunction, f, g_module, name);
    return rc;
}

static CUresult launch_one(CUfunction f, uint64_t blocks, uint64_t threads, CUstream s)
{
    return PROBE_CALL(g_cu.LaunchKernel, f, (unsigned int)blocks, 1, 1, (unsigned int)threads, 1, 1, 0, s, g_params,
                      NULL);
}

/* A non-blocking stream and two timing events; what is left NULL was not created. */
struct timed_stream {
    CUstream s;
    CUevent start, end;
};

static CUresult timed_stream_create(struct timed_stream *t)
{
    CUresult rc = PROBE_CALL(g_cu.StreamCreate, &t->s, CU_STREAM_NON_BLOCKING);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventCreate, &t->start, CU_EVENT_DEFAULT);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventCreate, &t->end, CU_EVENT_DEFAULT);
    return rc;
}

/* Records the end event, waits for the stream and reads the time between the events. */
static CUresult timed_stream_finish(struct timed_stream *t, float *ms)
{
    CUresult rc = PROBE_CALL(g_cu.EventRecord, t->end, t->s);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.StreamSynchronize, t->s);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventSynchronize, t->end);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventElapsedTime, ms, t->start, t->end);
    return rc;
}

static void timed_stream_destroy(struct timed_stream *t)
{
    if (t->start)
        PROBE_CALL(g_cu.EventDestroy, t->start);
    if (t->end)
        PROBE_CALL(g_cu.EventDestroy, t->end);
    if (t->s)
        PROBE_CALL(g_cu.StreamDestroy, t->s);
}

int cmd_launch(const char *name, uint64_t blocks, uint64_t threads, uint64_t count)
{
    CUfunction f = NULL;
    struct timed_stream t = {0};
    CUresult rc = get_function(name, &f);
    if (rc == CUDA_SUCCESS)
        rc = timed_stream_create(&t);
    double t0 = probe_now_ms();
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventRecord, t.start, t.s);
    for (uint64_t i = 0; rc == CUDA_SUCCESS && i < count; i++)
        rc = launch_one(f, blocks, threads, t.s);
    float ms = 0;
    if (rc == CUDA_SUCCESS)
        rc = timed_stream_finish(&t, &ms);
    double wall = probe_now_ms() - t0;
    timed_stream_destroy(&t);
    if (rc != CUDA_SUCCESS) {
        probe_out("launch fail name=%s err=%s", name, probe_err(rc));
        return 1;
    }
    probe_out("launch ok name=%s count=%llu elapsed_ms=%.3f wall_ms=%.3f", name, (unsigned long long)count, ms, wall);
    return 0;
}

int cmd_launchloop(const char *name, uint64_t blocks, uint64_t threads, double seconds)
{
    CUfunction f = NULL;
    CUstream s = NULL;
    CUresult rc = get_function(name, &f);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.StreamCreate, &s, CU_STREAM_NON_BLOCKING);
    double t0 = probe_now_ms(), deadline = t0 + seconds * 1e3;
    unsigned long long n = 0;
    while (rc == CUDA_SUCCESS && probe_now_ms() < deadline) {
        rc = launch_one(f, blocks, threads, s);
        if (rc == CUDA_SUCCESS && ++n % 64 == 0)
            rc = PROBE_CALL(g_cu.StreamSynchronize, s); /* a short queue: launches track what the GPU gets done */
    }
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.StreamSynchronize, s);
    double wall = probe_now_ms() - t0;
    if (s)
        PROBE_CALL(g_cu.StreamDestroy, s);
    if (rc != CUDA_SUCCESS) {
        probe_out("launchloop fail name=%s launches=%llu err=%s", name, n, probe_err(rc));
        return 1;
    }
    probe_out("launchloop ok name=%s launches=%llu wall_ms=%.3f", name, n, wall);
    return 0;
}

static CUresult instantiate(CUgraphExec *exec, CUgraph graph)
{
    if (g_cu.GraphInstantiateWithFlags)
        return g_cu.GraphInstantiateWithFlags(exec, graph, 0);
    return PROBE_CALL(g_cu.GraphInstantiate, exec, graph, NULL, NULL, 0); /* CUDA before 11.4 */
}

int cmd_graph(const char *name, uint64_t blocks, uint64_t threads, uint64_t kernels, uint64_t count, int into_graph)
{
    const char *cmd = into_graph ? "graphto" : "graph";
    CUfunction f = NULL;
    struct timed_stream t = {0};
    CUgraph graph = NULL, mine = NULL;
    CUgraphExec exec = NULL;
    size_t nodes = 0;
    CUresult rc = get_function(name, &f);
    if (rc == CUDA_SUCCESS)
        rc = timed_stream_create(&t);
    if (rc == CUDA_SUCCESS && into_graph)
        rc = PROBE_CALL(g_cu.GraphCreate, &mine, 0);
    double c0 = probe_now_ms();
    if (rc == CUDA_SUCCESS)
        rc = into_graph ? PROBE_CALL(g_cu.StreamBeginCaptureToGraph, t.s, mine, NULL, NULL, 0,
                                     CU_STREAM_CAPTURE_MODE_GLOBAL)
                        : PROBE_CALL(g_cu.StreamBeginCapture, t.s, CU_STREAM_CAPTURE_MODE_GLOBAL);
    if (rc == CUDA_SUCCESS) {
        for (uint64_t i = 0; rc == CUDA_SUCCESS && i < kernels; i++)
            rc = launch_one(f, blocks, threads, t.s);
        CUresult end = PROBE_CALL(g_cu.StreamEndCapture, t.s, &graph); /* ends the capture even after a failure */
        if (rc == CUDA_SUCCESS)
            rc = end;
    }
    int same_graph = into_graph && graph == mine;
    if (same_graph)
        graph = NULL; /* one handle: destroyed once, as mine */
    double capture_ms = probe_now_ms() - c0;
    CUgraph captured = same_graph ? mine : graph;
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.GraphGetNodes, captured, NULL, &nodes);
    if (rc == CUDA_SUCCESS)
        rc = instantiate(&exec, captured);
    double t0 = probe_now_ms();
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventRecord, t.start, t.s);
    for (uint64_t i = 0; rc == CUDA_SUCCESS && i < count; i++)
        rc = PROBE_CALL(g_cu.GraphLaunch, exec, t.s);
    float ms = 0;
    if (rc == CUDA_SUCCESS)
        rc = timed_stream_finish(&t, &ms);
    double wall = probe_now_ms() - t0;
    if (exec)
        PROBE_CALL(g_cu.GraphExecDestroy, exec);
    if (graph)
        PROBE_CALL(g_cu.GraphDestroy, graph);
    if (mine)
        PROBE_CALL(g_cu.GraphDestroy, mine);
    timed_stream_destroy(&t);
    if (rc != CUDA_SUCCESS) {
        probe_out("%s fail name=%s err=%s", cmd, name, probe_err(rc));
        return 1;
    }
    probe_out("%s ok name=%s kernels=%zu count=%llu elapsed_ms=%.3f wall_ms=%.3f capture_ms=%.3f same_graph=%d", cmd,
              name, nodes, (unsigned long long)count, ms, wall, capture_ms, same_graph);
    return 0;
}

int cmd_funcname(const char *name)
{
    CUfunction f = NULL;
    const char *got = NULL;
    CUresult rc = get_function(name, &f);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.FuncGetName, &got, f);
    if (rc != CUDA_SUCCESS || got == NULL) {
        probe_out("funcname fail entry=%s err=%s", name, probe_err(rc));
        return 1;
    }
    probe_out("funcname ok entry=%s name=%s", name, got);
    return 0;
}
