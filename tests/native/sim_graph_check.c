/* Stream capture and graphs of the simulated libcuda.so.1: what is recorded, what is refused, handles and their
 * lifetimes, and the simulated time a launched graph takes. Prints one line per check, "ok NAME" or
 * "FAIL NAME: got X, want Y"; exits 1 if any failed. Built and run by tests/test_sim.py with
 * FCSP_SIM_KERNEL_US=spin=2000 (one wave of spin: 2 ms). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fcsp/cuda_abi.h"

#define WAVE_MS 2.0

static void *lib;
static int failed;

#define FN(name, ret, params) static ret(*name) params
FN(cuInit, CUresult, (unsigned int));
FN(cuDevicePrimaryCtxRetain, CUresult, (CUcontext *, CUdevice));
FN(cuCtxSetCurrent, CUresult, (CUcontext));
FN(cuCtxSynchronize, CUresult, (void));
FN(cuMemAlloc_v2, CUresult, (CUdeviceptr *, size_t));
FN(cuMemcpyHtoDAsync_v2, CUresult, (CUdeviceptr, const void *, size_t, CUstream));
FN(cuMemcpyHtoD_v2_ptds, CUresult, (CUdeviceptr, const void *, size_t));
FN(cuMemsetD8Async, CUresult, (CUdeviceptr, unsigned char, size_t, CUstream));
FN(cuModuleLoadData, CUresult, (CUmodule *, const void *));
FN(cuModuleGetFunction, CUresult, (CUfunction *, CUmodule, const char *));
FN(cuLaunchKernel, CUresult, (CUfunction, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int,
                              unsigned int, unsigned int, CUstream, void **, void **));
FN(cuLaunchKernel_ptsz, CUresult, (CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
                                   unsigned int, unsigned int, unsigned int, CUstream, void **, void **));
FN(cuStreamCreate, CUresult, (CUstream *, unsigned int));
FN(cuStreamDestroy_v2, CUresult, (CUstream));
FN(cuStreamSynchronize, CUresult, (CUstream));
FN(cuStreamQuery, CUresult, (CUstream));
FN(cuStreamWaitEvent, CUresult, (CUstream, CUevent, unsigned int));
FN(cuEventCreate, CUresult, (CUevent *, unsigned int));
FN(cuEventRecord, CUresult, (CUevent, CUstream));
FN(cuEventSynchronize, CUresult, (CUevent));
FN(cuEventElapsedTime_v2, CUresult, (float *, CUevent, CUevent));
FN(cuStreamBeginCapture, CUresult, (CUstream));
FN(cuStreamBeginCapture_v2, CUresult, (CUstream, CUstreamCaptureMode));
FN(cuStreamBeginCapture_v2_ptsz, CUresult, (CUstream, CUstreamCaptureMode));
FN(cuStreamEndCapture, CUresult, (CUstream, CUgraph *));
FN(cuStreamEndCapture_ptsz, CUresult, (CUstream, CUgraph *));
FN(cuStreamIsCapturing, CUresult, (CUstream, CUstreamCaptureStatus *));
FN(cuStreamGetCaptureInfo, CUresult, (CUstream, CUstreamCaptureStatus *, cuuint64_t *));
FN(cuStreamGetCaptureInfo_v2, CUresult,
   (CUstream, CUstreamCaptureStatus *, cuuint64_t *, CUgraph *, const CUgraphNode **, size_t *));
FN(cuStreamGetCaptureInfo_v3, CUresult, (CUstream, CUstreamCaptureStatus *, cuuint64_t *, CUgraph *,
                                         const CUgraphNode **, const CUgraphEdgeData **, size_t *));
FN(cuGraphCreate, CUresult, (CUgraph *, unsigned int));
FN(cuGraphAddKernelNode_v2, CUresult,
   (CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const CUDA_KERNEL_NODE_PARAMS_v2 *));
FN(cuGraphKernelNodeGetParams_v2, CUresult, (CUgraphNode, CUDA_KERNEL_NODE_PARAMS_v2 *));
FN(cuGraphGetNodes, CUresult, (CUgraph, CUgraphNode *, size_t *));
FN(cuGraphNodeGetType, CUresult, (CUgraphNode, CUgraphNodeType *));
FN(cuGraphInstantiate_v2, CUresult, (CUgraphExec *, CUgraph, CUgraphNode *, char *, size_t));
FN(cuGraphInstantiateWithFlags, CUresult, (CUgraphExec *, CUgraph, unsigned long long));
FN(cuGraphInstantiateWithParams, CUresult, (CUgraphExec *, CUgraph, CUDA_GRAPH_INSTANTIATE_PARAMS *));
FN(cuGraphLaunch, CUresult, (CUgraphExec, CUstream));
FN(cuGraphExecDestroy, CUresult, (CUgraphExec));
FN(cuGraphDestroy, CUresult, (CUgraph));

#define LOAD(name)                                                                                                 \
    do {                                                                                                           \
        *(void **)&name = dlsym(lib, #name);                                                                       \
        if (name == NULL) {                                                                                        \
            printf("FAIL %s is not exported\n", #name);                                                            \
            return 1;                                                                                              \
        }                                                                                                          \
    } while (0)

static void expect(const char *what, long got, long want)
{
    if (got == want) {
        printf("ok %s\n", what);
    } else {
        printf("FAIL %s: got %ld, want %ld\n", what, got, want);
        failed = 1;
    }
}

static void expect_between(const char *what, double got, double lo, double hi)
{
    if (got >= lo && got <= hi) {
        printf("ok %s (%.3f)\n", what, got);
    } else {
        printf("FAIL %s: got %.3f, want %.3f..%.3f\n", what, got, lo, hi);
        failed = 1;
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static CUfunction spin;

static CUresult launch(CUstream s)
{
    return cuLaunchKernel(spin, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL); /* one wave */
}

static size_t node_count(CUgraph g)
{
    size_t n = 12345;
    return cuGraphGetNodes(g, NULL, &n) == CUDA_SUCCESS ? n : (size_t)-1;
}

/* Simulated time of launching exec once on s. */
static double graph_ms(CUgraphExec exec, CUstream s)
{
    CUevent a, b;
    float ms = -1;
    cuEventCreate(&a, 0);
    cuEventCreate(&b, 0);
    cuEventRecord(a, s);
    CUresult rc = cuGraphLaunch(exec, s);
    cuEventRecord(b, s);
    cuStreamSynchronize(s);
    cuEventSynchronize(b);
    cuEventElapsedTime_v2(&ms, a, b);
    return rc == CUDA_SUCCESS ? ms : -1;
}

struct end_args {
    CUstream s;
    CUresult rc;
    CUgraph g;
};

static void *end_elsewhere(void *arg)
{
    struct end_args *e = arg;
    e->rc = cuStreamEndCapture(e->s, &e->g);
    return NULL;
}

static CUresult end_on_other_thread(CUstream s, CUgraph *g)
{
    struct end_args e = {s, CUDA_ERROR_UNKNOWN, NULL};
    pthread_t t;
    if (pthread_create(&t, NULL, end_elsewhere, &e) != 0)
        return CUDA_ERROR_UNKNOWN;
    pthread_join(t, NULL);
    *g = e.g;
    return e.rc;
}

static const char ptx[] = ".version 8.0\n.target sm_90\n.visible .entry spin()\n{\n ret;\n}\n";

int main(int argc, char **argv)
{
    lib = dlopen(argc > 1 ? argv[1] : "libcuda.so.1", RTLD_NOW);
    if (lib == NULL)
        return 2;
    LOAD(cuInit); LOAD(cuDevicePrimaryCtxRetain); LOAD(cuCtxSetCurrent); LOAD(cuCtxSynchronize);
    LOAD(cuMemAlloc_v2); LOAD(cuMemcpyHtoDAsync_v2); LOAD(cuMemcpyHtoD_v2_ptds); LOAD(cuMemsetD8Async);
    LOAD(cuModuleLoadData); LOAD(cuModuleGetFunction); LOAD(cuLaunchKernel); LOAD(cuLaunchKernel_ptsz);
    LOAD(cuStreamCreate); LOAD(cuStreamDestroy_v2); LOAD(cuStreamSynchronize); LOAD(cuStreamQuery);
    LOAD(cuStreamWaitEvent); LOAD(cuEventCreate); LOAD(cuEventRecord); LOAD(cuEventSynchronize);
    LOAD(cuEventElapsedTime_v2); LOAD(cuStreamBeginCapture); LOAD(cuStreamBeginCapture_v2);
    LOAD(cuStreamBeginCapture_v2_ptsz); LOAD(cuStreamEndCapture); LOAD(cuStreamEndCapture_ptsz);
    LOAD(cuStreamIsCapturing); LOAD(cuStreamGetCaptureInfo); LOAD(cuStreamGetCaptureInfo_v2);
    LOAD(cuStreamGetCaptureInfo_v3); LOAD(cuGraphCreate); LOAD(cuGraphAddKernelNode_v2);
    LOAD(cuGraphKernelNodeGetParams_v2); LOAD(cuGraphGetNodes); LOAD(cuGraphNodeGetType);
    LOAD(cuGraphInstantiate_v2); LOAD(cuGraphInstantiateWithFlags); LOAD(cuGraphInstantiateWithParams);
    LOAD(cuGraphLaunch); LOAD(cuGraphExecDestroy); LOAD(cuGraphDestroy);

    CUcontext ctx;
    CUmodule mod;
    CUstream s, blocking;
    CUevent ev;
    CUdeviceptr buf;
    static char host[1 << 20];
    expect("init", cuInit(0) == CUDA_SUCCESS && cuDevicePrimaryCtxRetain(&ctx, 0) == CUDA_SUCCESS &&
                       cuCtxSetCurrent(ctx) == CUDA_SUCCESS && cuModuleLoadData(&mod, ptx) == CUDA_SUCCESS &&
                       cuModuleGetFunction(&spin, mod, "spin") == CUDA_SUCCESS &&
                       cuStreamCreate(&s, CU_STREAM_NON_BLOCKING) == CUDA_SUCCESS &&
                       cuStreamCreate(&blocking, CU_STREAM_DEFAULT) == CUDA_SUCCESS &&
                       cuEventCreate(&ev, 0) == CUDA_SUCCESS && cuMemAlloc_v2(&buf, sizeof host) == CUDA_SUCCESS,
           1);

    /* beginning and ending */
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_ACTIVE;
    CUgraph g = NULL;
    expect("legacy stream cannot capture", cuStreamBeginCapture_v2(NULL, CU_STREAM_CAPTURE_MODE_GLOBAL),
           CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    expect("CU_STREAM_LEGACY cannot capture", cuStreamBeginCapture_v2(CU_STREAM_LEGACY, CU_STREAM_CAPTURE_MODE_GLOBAL),
           CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    expect("bad mode", cuStreamBeginCapture_v2(s, (CUstreamCaptureMode)7), CUDA_ERROR_INVALID_VALUE);
    expect("not capturing", cuStreamIsCapturing(s, &st) == CUDA_SUCCESS && st == CU_STREAM_CAPTURE_STATUS_NONE, 1);
    expect("end without begin", cuStreamEndCapture(s, &g), CUDA_ERROR_ILLEGAL_STATE);
    expect("begin", cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
    expect("begin twice", cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_ERROR_ILLEGAL_STATE);
    expect("capturing", cuStreamIsCapturing(s, &st) == CUDA_SUCCESS && st == CU_STREAM_CAPTURE_STATUS_ACTIVE, 1);

    /* recording: 10 kernels, a copy, a set; events record nothing */
    double t0 = now_ms();
    CUresult rc = CUDA_SUCCESS;
    for (int i = 0; i < 10 && rc == CUDA_SUCCESS; i++)
        rc = launch(s);
    expect("launches are recorded", rc, CUDA_SUCCESS);
    expect_between("recording costs no simulated time (wall ms)", now_ms() - t0, 0, 10 * WAVE_MS / 2);
    expect("event record while capturing", cuEventRecord(ev, s), CUDA_SUCCESS);
    expect("event wait while capturing", cuStreamWaitEvent(s, ev, 0), CUDA_SUCCESS);
    expect("async copy is recorded", cuMemcpyHtoDAsync_v2(buf, host, sizeof host, s), CUDA_SUCCESS);
    expect("async set is recorded", cuMemsetD8Async(buf, 0, sizeof host, s), CUDA_SUCCESS);
    cuuint64_t id = 0, id2 = 0, id3 = 0;
    CUgraph capg = NULL, capg2 = NULL;
    const CUgraphNode *deps = NULL;
    const CUgraphEdgeData *edges = NULL;
    size_t ndeps = 0;
    expect("capture info v3", cuStreamGetCaptureInfo_v3(s, &st, &id, &capg, &deps, &edges, &ndeps), CUDA_SUCCESS);
    expect("capture info v3 contents", st == CU_STREAM_CAPTURE_STATUS_ACTIVE && id != 0 && capg != NULL &&
                                           ndeps == 1 && deps != NULL && deps[0] != NULL && edges != NULL &&
                                           edges[0].type == 0,
           1);
    CUgraphNodeType type = CU_GRAPH_NODE_TYPE_KERNEL;
    expect("last node is the set", cuGraphNodeGetType(deps[0], &type) == CUDA_SUCCESS && type == CU_GRAPH_NODE_TYPE_MEMSET,
           1);
    expect("capture info v2", cuStreamGetCaptureInfo_v2(s, &st, &id2, &capg2, NULL, &ndeps) == CUDA_SUCCESS &&
                                  id2 == id && capg2 == capg,
           1);
    expect("capture info", cuStreamGetCaptureInfo(s, &st, &id3) == CUDA_SUCCESS && id3 == id, 1);
    expect("edge data needs dependencies", cuStreamGetCaptureInfo_v3(s, &st, NULL, NULL, NULL, &edges, NULL),
           CUDA_ERROR_INVALID_VALUE);
    expect("capture graph cannot be destroyed", cuGraphDestroy(capg), CUDA_ERROR_ILLEGAL_STATE);
    CUgraphExec exec = NULL;
    expect("capture graph cannot be instantiated", cuGraphInstantiateWithFlags(&exec, capg, 0),
           CUDA_ERROR_ILLEGAL_STATE);
    expect("end", cuStreamEndCapture(s, &g) == CUDA_SUCCESS && g == capg, 1);
    expect("no longer capturing", cuStreamIsCapturing(s, &st) == CUDA_SUCCESS && st == CU_STREAM_CAPTURE_STATUS_NONE,
           1);

    /* the graph */
    CUgraphNode nodes[14];
    size_t n = 14;
    expect("nodes", node_count(g), 12);
    expect("get nodes", cuGraphGetNodes(g, nodes, &n) == CUDA_SUCCESS && n == 12 && nodes[11] != NULL &&
                            nodes[12] == NULL && nodes[13] == NULL,
           1);
    CUgraphNodeType t0type = CU_GRAPH_NODE_TYPE_MEMSET, t10 = CU_GRAPH_NODE_TYPE_KERNEL;
    expect("node types", cuGraphNodeGetType(nodes[0], &t0type) == CUDA_SUCCESS &&
                             cuGraphNodeGetType(nodes[10], &t10) == CUDA_SUCCESS &&
                             t0type == CU_GRAPH_NODE_TYPE_KERNEL && t10 == CU_GRAPH_NODE_TYPE_MEMCPY,
           1);
    CUDA_KERNEL_NODE_PARAMS_v2 kp;
    memset(&kp, 0xff, sizeof kp);
    expect("kernel node params", cuGraphKernelNodeGetParams_v2(nodes[0], &kp) == CUDA_SUCCESS && kp.func == spin &&
                                     kp.gridDimX == 1 && kp.blockDimX == 32 && kp.blockDimY == 1 &&
                                     kp.sharedMemBytes == 0 && kp.kern == NULL,
           1);
    expect("copy node has no kernel params", cuGraphKernelNodeGetParams_v2(nodes[10], &kp), CUDA_ERROR_INVALID_VALUE);
    expect("upload needs params", cuGraphInstantiateWithFlags(&exec, g, CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD),
           CUDA_ERROR_INVALID_VALUE);
    expect("instantiate", cuGraphInstantiateWithFlags(&exec, g, 0), CUDA_SUCCESS);
    CUDA_GRAPH_INSTANTIATE_PARAMS ip = {CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD, s, (CUgraphNode)1,
                                        CUDA_GRAPH_INSTANTIATE_ERROR};
    CUgraphExec exec2 = NULL, exec3 = NULL;
    expect("instantiate with params", cuGraphInstantiateWithParams(&exec2, g, &ip) == CUDA_SUCCESS &&
                                          ip.result_out == CUDA_GRAPH_INSTANTIATE_SUCCESS && ip.hErrNode_out == NULL,
           1);
    char log[16] = "junk";
    CUgraphNode err = (CUgraphNode)1;
    expect("instantiate (11.0 form)", cuGraphInstantiate_v2(&exec3, g, &err, log, sizeof log) == CUDA_SUCCESS &&
                                          err == NULL && log[0] == '\0',
           1);
    /* 10 waves of 2 ms, plus a 1 MiB copy and set of ~44 us each */
    expect_between("graph launch takes its kernels' time (ms)", graph_ms(exec, s), 10 * WAVE_MS, 10 * WAVE_MS * 1.2);
    expect("graph destroy", cuGraphDestroy(g), CUDA_SUCCESS);
    expect("graph destroy twice", cuGraphDestroy(g), CUDA_ERROR_INVALID_VALUE);
    expect_between("executable graph outlives its graph (ms)", graph_ms(exec2, s), 10 * WAVE_MS, 10 * WAVE_MS * 1.2);
    expect("exec destroy", cuGraphExecDestroy(exec2), CUDA_SUCCESS);
    expect("exec destroy twice", cuGraphExecDestroy(exec2), CUDA_ERROR_INVALID_VALUE);
    expect("launch destroyed exec", cuGraphLaunch(exec2, s), CUDA_ERROR_INVALID_VALUE);
    expect("launch NULL exec", cuGraphLaunch(NULL, s), CUDA_ERROR_INVALID_VALUE);
    cuGraphExecDestroy(exec3);

    /* a graph launched into a capture is recorded node by node */
    expect("capture a graph launch", cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED) == CUDA_SUCCESS &&
                                         cuGraphLaunch(exec, s) == CUDA_SUCCESS && launch(s) == CUDA_SUCCESS &&
                                         cuStreamEndCapture(s, &g) == CUDA_SUCCESS,
           1);
    expect("graph launch recorded", node_count(g), 13);
    cuGraphDestroy(g);
    cuGraphExecDestroy(exec);

    /* synchronising with a capturing stream invalidates the capture */
    expect("begin (10.0 form)", cuStreamBeginCapture(s), CUDA_SUCCESS);
    expect("launch", launch(s), CUDA_SUCCESS);
    expect("sync while capturing", cuStreamSynchronize(s), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    expect("invalidated", cuStreamIsCapturing(s, &st) == CUDA_SUCCESS && st == CU_STREAM_CAPTURE_STATUS_INVALIDATED, 1);
    expect("launch after invalidation", launch(s), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    g = (CUgraph)1;
    expect("end invalidated", cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    expect("no graph", g == NULL, 1);
    expect("stream usable again", launch(s) == CUDA_SUCCESS && cuStreamSynchronize(s) == CUDA_SUCCESS, 1);
    cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL);
    expect("query while capturing", cuStreamQuery(s), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    expect("end after query", cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL);
    expect("ctx sync while capturing", cuCtxSynchronize(), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    expect("end after ctx sync", cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL);
    expect("bad launch while capturing", cuLaunchKernel(spin, 1, 1, 1, 1025, 1, 1, 0, s, NULL, NULL),
           CUDA_ERROR_INVALID_VALUE);
    expect("end after bad launch", cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    expect("ctx sync", cuCtxSynchronize(), CUDA_SUCCESS);

    /* the legacy stream and a capturing blocking stream */
    expect("begin on a blocking stream", cuStreamBeginCapture_v2(blocking, CU_STREAM_CAPTURE_MODE_GLOBAL),
           CUDA_SUCCESS);
    expect("legacy query", cuStreamIsCapturing(NULL, &st), CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
    expect("legacy launch", launch(NULL), CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
    expect("end implicit", cuStreamEndCapture(blocking, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    expect("begin on a non-blocking stream", cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
    expect("legacy launch beside it", launch(NULL), CUDA_SUCCESS);
    expect("end empty", cuStreamEndCapture(s, &g) == CUDA_SUCCESS && node_count(g) == 0, 1);
    cuGraphDestroy(g);
    expect("legacy sync", cuStreamSynchronize(NULL), CUDA_SUCCESS);

    /* threads */
    cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL);
    expect("end on another thread (global)", end_on_other_thread(s, &g), CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD);
    expect("end on this thread", cuStreamEndCapture(s, &g), CUDA_SUCCESS);
    cuGraphDestroy(g);
    cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED);
    expect("end on another thread (relaxed)", end_on_other_thread(s, &g), CUDA_SUCCESS);
    cuGraphDestroy(g);

    /* the per-thread default stream can capture; its synchronous copies are refused meanwhile */
    expect("per-thread begin", cuStreamBeginCapture_v2_ptsz(NULL, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
    expect("per-thread launch", cuLaunchKernel_ptsz(spin, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL), CUDA_SUCCESS);
    expect("per-thread end", cuStreamEndCapture_ptsz(NULL, &g) == CUDA_SUCCESS && node_count(g) == 1, 1);
    cuGraphDestroy(g);
    cuStreamBeginCapture_v2_ptsz(NULL, CU_STREAM_CAPTURE_MODE_GLOBAL);
    expect("synchronous copy while capturing", cuMemcpyHtoD_v2_ptds(buf, host, 64),
           CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    expect("per-thread end invalidated", cuStreamEndCapture_ptsz(NULL, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);

    /* a graph built by hand */
    CUgraph h, other;
    CUgraphNode a = NULL, b = NULL, foreign = NULL;
    CUDA_KERNEL_NODE_PARAMS_v2 p;
    memset(&p, 0, sizeof p);
    p.func = spin;
    p.gridDimX = p.gridDimY = p.gridDimZ = 1;
    p.blockDimX = 32;
    p.blockDimY = p.blockDimZ = 1;
    expect("create", cuGraphCreate(&h, 0) == CUDA_SUCCESS && cuGraphCreate(&other, 0) == CUDA_SUCCESS, 1);
    expect("create flags", cuGraphCreate(&g, 1), CUDA_ERROR_INVALID_VALUE);
    expect("add", cuGraphAddKernelNode_v2(&a, h, NULL, 0, &p), CUDA_SUCCESS);
    expect("add dependent", cuGraphAddKernelNode_v2(&b, h, &a, 1, &p), CUDA_SUCCESS);
    expect("add elsewhere", cuGraphAddKernelNode_v2(&foreign, other, NULL, 0, &p), CUDA_SUCCESS);
    expect("dependency of another graph", cuGraphAddKernelNode_v2(&b, h, &foreign, 1, &p), CUDA_ERROR_INVALID_VALUE);
    p.blockDimX = 2048;
    expect("bad block", cuGraphAddKernelNode_v2(&b, h, NULL, 0, &p), CUDA_ERROR_INVALID_VALUE);
    p.blockDimX = 32;
    p.func = NULL;
    expect("no function", cuGraphAddKernelNode_v2(&b, h, NULL, 0, &p), CUDA_ERROR_INVALID_VALUE);
    expect("hand-built nodes", node_count(h), 2);
    expect("instantiate hand-built", cuGraphInstantiateWithFlags(&exec, h, 0), CUDA_SUCCESS);
    expect_between("hand-built graph time (ms)", graph_ms(exec, s), 2 * WAVE_MS, 2 * WAVE_MS * 1.3);
    cuGraphExecDestroy(exec);
    CUgraph empty;
    cuGraphCreate(&empty, 0);
    expect("empty graph", cuGraphInstantiateWithFlags(&exec, empty, 0) == CUDA_SUCCESS &&
                              cuGraphLaunch(exec, s) == CUDA_SUCCESS && cuStreamSynchronize(s) == CUDA_SUCCESS,
           1);
    cuGraphExecDestroy(exec);
    expect("destroy graphs", cuGraphDestroy(h) == CUDA_SUCCESS && cuGraphDestroy(other) == CUDA_SUCCESS &&
                                 cuGraphDestroy(empty) == CUDA_SUCCESS,
           1);
    expect("node of a destroyed graph", cuGraphNodeGetType(a, &type), CUDA_ERROR_INVALID_VALUE);

    /* destroying a capturing stream ends its capture */
    CUstream doomed;
    cuStreamCreate(&doomed, CU_STREAM_NON_BLOCKING);
    cuStreamBeginCapture_v2(doomed, CU_STREAM_CAPTURE_MODE_GLOBAL);
    launch(doomed);
    expect("destroy capturing stream", cuStreamDestroy_v2(doomed), CUDA_SUCCESS);
    expect("nothing captures", cuStreamIsCapturing(NULL, &st) == CUDA_SUCCESS && st == CU_STREAM_CAPTURE_STATUS_NONE,
           1);
    expect("final ctx sync", cuCtxSynchronize(), CUDA_SUCCESS);
    return failed;
}
