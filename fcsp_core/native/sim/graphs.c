/* Stream capture and CUDA graphs.
 *
 * A graph is a list of nodes that run one after another in the order they were added (a captured stream's order;
 * the dependencies given to cuGraphAddKernelNode are checked but buy no concurrency): kernel nodes, and copy and
 * memset nodes that take the modelled time of the copy. cuGraphLaunch queues the nodes on the stream exactly as the
 * launches and copies themselves would be queued (sim_kernel_enqueue, sim_exec_enqueue), so a graph's kernels
 * take the same time and share the SM timeline with every other process's work in the same way.
 *
 * Capture: cuStreamBeginCapture on a created or a per-thread default stream (the legacy stream cannot capture), or
 * cuStreamBeginCaptureToGraph into an existing graph (cuStreamEndCapture then hands back that graph).
 * While a stream captures, kernel launches, asynchronous copies and sets and graph launches on it are recorded
 * into the capture graph and cost no simulated time; event records and event waits are accepted and record
 * nothing; synchronising with it (cuStreamSynchronize, cuStreamQuery, a synchronous copy) fails with
 * CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the capture, as cuCtxSynchronize does for every capture on
 * its device; an invalid launch invalidates it too. Using the legacy stream while a blocking stream of its device
 * captures fails with CUDA_ERROR_STREAM_CAPTURE_IMPLICIT and invalidates that capture. Once invalidated, work on
 * the stream fails with CUDA_ERROR_STREAM_CAPTURE_INVALIDATED until cuStreamEndCapture, which then returns that
 * error and no graph.
 *
 * Capture modes, as the real driver enforces them (measured on an H200, driver 580, with fcsp-capture-probe;
 * docs/capture-safety.md has the table): the "potentially unsafe" calls (sim_capture_unsafe_call: cuMemAlloc,
 * cuMemFree, cuEventQuery, cuEventSynchronize, cuStreamQuery and cuStreamSynchronize of a stream that does not
 * capture) are forbidden to a thread whose own mode (cuThreadExchangeStreamCaptureMode; GLOBAL unless exchanged)
 * is not RELAXED while it has a capture of its own that was not begun RELAXED, or, its mode being GLOBAL, while
 * any other thread has a capture begun GLOBAL. A forbidden call fails with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
 * and invalidates the captures that forbade it. Other calls (cuCtxSetCurrent, cuEventRecord on another stream,
 * cuEventElapsedTime, cuMemGetInfo, cuOccupancy*, cuFuncGet*, launches on other streams, ...) are allowed in
 * every mode. Not modelled: captures spanning streams through events.
 *
 * One lock (g_mu) guards the capture state of streams, the graphs and their nodes. Executable graphs are
 * immutable copies, reference-counted so that a launch can queue their nodes without the lock.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sim_cuda.h"

struct CUgraphNode_st {
    uint32_t magic;
    struct CUgraph_st *graph;
    CUgraphNodeType type;
    struct sim_kernel kernel; /* CU_GRAPH_NODE_TYPE_KERNEL */
    int64_t dur_ns; /* CU_GRAPH_NODE_TYPE_MEMCPY, CU_GRAPH_NODE_TYPE_MEMSET */
    struct sim_gmem_node mem; /* CU_GRAPH_NODE_TYPE_MEM_ALLOC, CU_GRAPH_NODE_TYPE_MEM_FREE (graph_mem.c) */
};

struct CUgraph_st {
    uint32_t magic;
    struct CUstream_st *capturing; /* the stream capturing into this graph, or NULL */
    size_t n, cap;
    struct CUgraphNode_st **nodes; /* in the order they run */
};

struct exec_node {
    CUgraphNodeType type;
    struct sim_kernel kernel;
    int64_t dur_ns;
    struct sim_gmem_node mem;
};

struct CUgraphExec_st {
    uint32_t magic;
    size_t n;
    struct exec_node *nodes;
    int refs; /* under g_mu: 1 for the handle, 1 for each launch that is queuing the nodes */
    struct sim_gmem_exec gmem; /* its graph memory (graph_mem.c) */
};

atomic_int g_sim_capturing;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct CUstream_st *g_capturing; /* capturing streams, through cap_next */
static uint64_t g_capture_seq;
static struct ptr_map g_graphs = PTR_MAP_INIT;
static struct ptr_map g_nodes = PTR_MAP_INIT;
static struct ptr_map g_execs = PTR_MAP_INIT;
static const CUgraphEdgeData g_edge_data[1]; /* every captured dependency is a plain one */

/* ---- graphs and nodes (under g_mu) ---- */

static struct CUgraph_st *graph_get(CUgraph h)
{
    struct CUgraph_st *g = h ? ptr_map_get(&g_graphs, (uint64_t)(uintptr_t)h) : NULL;
    return (g && g->magic == SIM_MAGIC_GRAPH) ? g : NULL;
}

static struct CUgraphNode_st *node_get(CUgraphNode h)
{
    struct CUgraphNode_st *nd = h ? ptr_map_get(&g_nodes, (uint64_t)(uintptr_t)h) : NULL;
    return (nd && nd->magic == SIM_MAGIC_GNODE) ? nd : NULL;
}

static struct CUgraph_st *graph_new(void)
{
    struct CUgraph_st *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->magic = SIM_MAGIC_GRAPH;
    if (ptr_map_put(&g_graphs, (uint64_t)(uintptr_t)g, g) != 0) {
        free(g);
        return NULL;
    }
    return g;
}

static void graph_free(struct CUgraph_st *g)
{
    ptr_map_take(&g_graphs, (uint64_t)(uintptr_t)g);
    for (size_t i = 0; i < g->n; i++) {
        ptr_map_take(&g_nodes, (uint64_t)(uintptr_t)g->nodes[i]);
        g->nodes[i]->magic = 0;
        free(g->nodes[i]);
    }
    free(g->nodes);
    g->magic = 0;
    free(g);
}

static struct CUgraphNode_st *node_add(struct CUgraph_st *g, CUgraphNodeType type, const struct sim_kernel *k,
                                       int64_t dur_ns)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 16;
        struct CUgraphNode_st **nodes = realloc(g->nodes, cap * sizeof *nodes);
        if (nodes == NULL)
            return NULL;
        g->nodes = nodes;
        g->cap = cap;
    }
    struct CUgraphNode_st *nd = calloc(1, sizeof *nd);
    if (nd == NULL)
        return NULL;
    nd->magic = SIM_MAGIC_GNODE;
    nd->graph = g;
    nd->type = type;
    if (k)
        nd->kernel = *k;
    nd->dur_ns = dur_ns;
    if (ptr_map_put(&g_nodes, (uint64_t)(uintptr_t)nd, nd) != 0) {
        free(nd);
        return NULL;
    }
    g->nodes[g->n++] = nd;
    return nd;
}

static void exec_unref(struct CUgraphExec_st *e)
{
    if (--e->refs == 0) {
        free(e->nodes);
        free(e);
    }
}

/* ---- capture (under g_mu) ---- */

static void capture_unlink(struct CUstream_st *s)
{
    for (struct CUstream_st **pp = &g_capturing; *pp; pp = &(*pp)->cap_next) {
        if (*pp == s) {
            *pp = s->cap_next;
            break;
        }
    }
    s->cap_next = NULL;
    s->cap_graph = NULL;
    s->cap_status = CU_STREAM_CAPTURE_STATUS_NONE;
    s->cap_ndeps = 0;
    /* relaxed: the count is a hint (see sim_capture); the state it hints at changed under g_mu */
    atomic_fetch_sub_explicit(&g_sim_capturing, 1, memory_order_relaxed);
}

/* Whether a blocking stream of dev captures (the legacy stream would synchronise with it); invalidate: end their
 * captures' usefulness, as the real driver does for an operation on the legacy stream. */
static int blocking_capture_on(int dev, int invalidate)
{
    int found = 0;
    for (struct CUstream_st *c = g_capturing; c; c = c->cap_next) {
        if (c->dev == dev && !(c->flags & CU_STREAM_NON_BLOCKING)) {
            found = 1;
            if (invalidate)
                c->cap_status = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
        }
    }
    return found;
}

static CUresult capture_node(struct CUstream_st *s, CUgraphNodeType type, const struct sim_kernel *k, int64_t dur)
{
    struct CUgraphNode_st *nd = node_add(s->cap_graph, type, k, dur);
    if (nd == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    s->cap_deps[0] = nd;
    s->cap_ndeps = 1;
    return CUDA_SUCCESS;
}

static CUresult capture_record(struct CUstream_st *s, const struct sim_capture_op *op)
{
    switch (op->kind) {
    case SIM_CAPTURE_KERNEL: {
        int nsms;
        int64_t dur_ns;
        CUresult rc = sim_kernel_model(op->kernel, s->dev, &nsms, &dur_ns); /* a bad launch fails now */
        return rc != CUDA_SUCCESS ? rc : capture_node(s, CU_GRAPH_NODE_TYPE_KERNEL, op->kernel, 0);
    }
    case SIM_CAPTURE_MEMCPY: return capture_node(s, CU_GRAPH_NODE_TYPE_MEMCPY, NULL, op->dur_ns);
    case SIM_CAPTURE_MEMSET: return capture_node(s, CU_GRAPH_NODE_TYPE_MEMSET, NULL, op->dur_ns);
    case SIM_CAPTURE_GRAPH:
        for (size_t i = 0; i < op->exec->n; i++) {
            const struct exec_node *en = &op->exec->nodes[i];
            CUresult rc = capture_node(s, en->type, &en->kernel, en->dur_ns);
            if (rc != CUDA_SUCCESS)
                return rc;
            s->cap_deps[0]->mem = en->mem;
        }
        return CUDA_SUCCESS;
    case SIM_CAPTURE_NOTHING: return CUDA_SUCCESS;
    case SIM_CAPTURE_SYNC: return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    return CUDA_ERROR_INVALID_VALUE;
}

int sim_capture_slow(struct CUstream_st *s, const struct sim_capture_op *op, CUresult *rc)
{
    int done = 1;
    pthread_mutex_lock(&g_mu);
    if (s->builtin == SIM_STREAM_LEGACY) {
        if (blocking_capture_on(s->dev, 1))
            *rc = CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
        else
            done = 0;
    } else if (s->cap_graph == NULL) {
        done = 0;
    } else if (s->cap_status == CU_STREAM_CAPTURE_STATUS_INVALIDATED) {
        *rc = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    } else {
        *rc = capture_record(s, op);
        if (*rc != CUDA_SUCCESS)
            s->cap_status = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
    }
    pthread_mutex_unlock(&g_mu);
    return done;
}

CUresult sim_capture_check_device_sync(int dev)
{
    /* relaxed: a hint, as in sim_capture */
    if (atomic_load_explicit(&g_sim_capturing, memory_order_relaxed) == 0)
        return CUDA_SUCCESS;
    int found = 0;
    pthread_mutex_lock(&g_mu);
    for (struct CUstream_st *c = g_capturing; c; c = c->cap_next) {
        if (c->dev == dev) {
            c->cap_status = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
            found = 1;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return found ? CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED : CUDA_SUCCESS;
}

void sim_capture_stream_destroyed(struct CUstream_st *s)
{
    /* relaxed: a hint, as in sim_capture; the destroying thread began the capture or synchronised with it */
    if (atomic_load_explicit(&g_sim_capturing, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&g_mu);
    struct CUgraph_st *g = s->cap_graph;
    if (g != NULL) {
        capture_unlink(s);
        graph_free(g);
    }
    pthread_mutex_unlock(&g_mu);
}

/* The calling thread's capture mode: what cuThreadExchangeStreamCaptureMode swaps. */
static _Thread_local CUstreamCaptureMode t_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;

CUresult sim_capture_unsafe_slow(void)
{
    if (t_mode == CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_SUCCESS;
    int forbidden = 0;
    pthread_t self = pthread_self();
    pthread_mutex_lock(&g_mu);
    for (struct CUstream_st *c = g_capturing; c; c = c->cap_next) {
        if (c->cap_mode == CU_STREAM_CAPTURE_MODE_RELAXED)
            continue;
        int own = pthread_equal(c->cap_thread, self);
        if (own || (t_mode == CU_STREAM_CAPTURE_MODE_GLOBAL && c->cap_mode == CU_STREAM_CAPTURE_MODE_GLOBAL)) {
            c->cap_status = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
            forbidden = 1;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return forbidden ? CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED : CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode)
{
    if (mode == NULL || (unsigned int)*mode > CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_ERROR_INVALID_VALUE;
    CUstreamCaptureMode old = t_mode;
    t_mode = *mode;
    *mode = old;
    return CUDA_SUCCESS;
}

/* ---- capture entry points ---- */

/* Whether each of the n nodes deps belongs to g (the dependencies of a capture into an existing graph). */
static int nodes_of(struct CUgraph_st *g, const CUgraphNode *deps, size_t n)
{
    if (n && deps == NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        struct CUgraphNode_st *nd = node_get(deps[i]);
        if (nd == NULL || nd->graph != g)
            return 0;
    }
    return 1;
}

/* Begin a capture on h: into a new graph (into = NULL), or after the ndeps nodes deps of the user's graph into
 * (cuStreamBeginCaptureToGraph; the captured nodes run after every node already there, as all of a graph's
 * nodes run in order here, and cuStreamGetCaptureInfo reports the last dependency given). */
static CUresult begin_capture(CUstream h, CUstreamCaptureMode mode, int pt, CUgraph into, const CUgraphNode *deps,
                              size_t ndeps)
{
    struct CUstream_st *s;
    CUresult rc = sim_stream_resolve(h, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    if ((unsigned int)mode > CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_ERROR_INVALID_VALUE;
    if (s->builtin == SIM_STREAM_LEGACY)
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    pthread_mutex_lock(&g_mu);
    struct CUgraph_st *g = NULL;
    if (s->cap_graph != NULL)
        rc = CUDA_ERROR_ILLEGAL_STATE;
    else if (into != NULL && ((g = graph_get(into)) == NULL || !nodes_of(g, deps, ndeps)))
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (into != NULL && g->capturing != NULL)
        rc = CUDA_ERROR_ILLEGAL_STATE; /* one capture into a graph at a time */
    else if (into == NULL && (g = graph_new()) == NULL)
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS) {
        g->capturing = s;
        s->cap_graph = g;
        s->cap_into_user_graph = into != NULL;
        s->cap_status = CU_STREAM_CAPTURE_STATUS_ACTIVE;
        s->cap_mode = mode;
        s->cap_thread = pthread_self();
        s->cap_id = ++g_capture_seq;
        s->cap_ndeps = ndeps ? 1 : 0;
        if (ndeps)
            s->cap_deps[0] = deps[ndeps - 1];
        s->cap_next = g_capturing;
        g_capturing = s;
        /* relaxed: a hint (see sim_capture); the capture state itself is published by g_mu */
        atomic_fetch_add_explicit(&g_sim_capturing, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

SIM_EXPORT CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
{
    return begin_capture(hStream, mode, 0, NULL, NULL, 0);
}

SIM_EXPORT CUresult cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode)
{
    return begin_capture(hStream, mode, 1, NULL, NULL, 0);
}

/* The CUDA 10.0 form, before capture modes: global. */
SIM_EXPORT CUresult cuStreamBeginCapture(CUstream hStream)
{
    return begin_capture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL, 0, NULL, NULL, 0);
}

SIM_EXPORT CUresult cuStreamBeginCapture_ptsz(CUstream hStream)
{
    return begin_capture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL, 1, NULL, NULL, 0);
}

/* CUDA 12.3: capture into the user's graph. Edge data is accepted and not modelled (every edge is plain). */
SIM_EXPORT CUresult cuStreamBeginCaptureToGraph(CUstream hStream, CUgraph hGraph, const CUgraphNode *dependencies,
                                                const CUgraphEdgeData *dependencyData, size_t numDependencies,
                                                CUstreamCaptureMode mode)
{
    (void)dependencyData;
    if (hGraph == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    return begin_capture(hStream, mode, 0, hGraph, dependencies, numDependencies);
}

SIM_EXPORT CUresult cuStreamBeginCaptureToGraph_ptsz(CUstream hStream, CUgraph hGraph,
                                                     const CUgraphNode *dependencies,
                                                     const CUgraphEdgeData *dependencyData, size_t numDependencies,
                                                     CUstreamCaptureMode mode)
{
    (void)dependencyData;
    if (hGraph == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    return begin_capture(hStream, mode, 1, hGraph, dependencies, numDependencies);
}

static CUresult end_capture(CUstream h, CUgraph *phGraph, int pt)
{
    struct CUstream_st *s;
    CUresult rc = sim_stream_resolve(h, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (phGraph == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_mu);
    struct CUgraph_st *g = s->cap_graph;
    if (g == NULL) {
        rc = CUDA_ERROR_ILLEGAL_STATE;
    } else if (s->cap_mode != CU_STREAM_CAPTURE_MODE_RELAXED && !pthread_equal(s->cap_thread, pthread_self())) {
        rc = CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
    } else {
        int invalidated = s->cap_status == CU_STREAM_CAPTURE_STATUS_INVALIDATED;
        int users = s->cap_into_user_graph;
        capture_unlink(s);
        g->capturing = NULL;
        if (invalidated) {
            if (!users) /* the user's own graph stays theirs to destroy (not measured on a real driver) */
                graph_free(g);
            *phGraph = NULL;
            rc = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
        } else {
            *phGraph = g;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

SIM_EXPORT CUresult cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
{
    return end_capture(hStream, phGraph, 0);
}

SIM_EXPORT CUresult cuStreamEndCapture_ptsz(CUstream hStream, CUgraph *phGraph)
{
    return end_capture(hStream, phGraph, 1);
}

/* What cuStreamIsCapturing and cuStreamGetCaptureInfo report; the optional outputs are set while ACTIVE. */
static CUresult capture_info(CUstream h, int pt, CUstreamCaptureStatus *status, cuuint64_t *id, CUgraph *graph,
                             const CUgraphNode **deps, const CUgraphEdgeData **edges, size_t *ndeps)
{
    struct CUstream_st *s;
    CUresult rc = sim_stream_resolve(h, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (status == NULL || (edges != NULL && deps == NULL))
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_mu);
    if (s->builtin == SIM_STREAM_LEGACY && blocking_capture_on(s->dev, 0)) {
        rc = CUDA_ERROR_STREAM_CAPTURE_IMPLICIT; /* the blocking capture is not invalidated by a query */
    } else if (s->cap_graph == NULL) {
        *status = CU_STREAM_CAPTURE_STATUS_NONE;
    } else {
        *status = s->cap_status;
        if (s->cap_status == CU_STREAM_CAPTURE_STATUS_ACTIVE) {
            if (id)
                *id = s->cap_id;
            if (graph)
                *graph = s->cap_graph;
            if (deps)
                *deps = s->cap_deps; /* valid until the next call on the stream, as documented */
            if (edges)
                *edges = g_edge_data;
            if (ndeps)
                *ndeps = s->cap_ndeps;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

SIM_EXPORT CUresult cuStreamIsCapturing(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    return capture_info(hStream, 0, captureStatus, NULL, NULL, NULL, NULL, NULL);
}

SIM_EXPORT CUresult cuStreamIsCapturing_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    return capture_info(hStream, 1, captureStatus, NULL, NULL, NULL, NULL, NULL);
}

SIM_EXPORT CUresult cuStreamGetCaptureInfo(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                           cuuint64_t *id_out)
{
    return capture_info(hStream, 0, captureStatus_out, id_out, NULL, NULL, NULL, NULL);
}

SIM_EXPORT CUresult cuStreamGetCaptureInfo_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                                cuuint64_t *id_out)
{
    return capture_info(hStream, 1, captureStatus_out, id_out, NULL, NULL, NULL, NULL);
}

SIM_EXPORT CUresult cuStreamGetCaptureInfo_v2(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                              cuuint64_t *id_out, CUgraph *graph_out,
                                              const CUgraphNode **dependencies_out, size_t *numDependencies_out)
{
    return capture_info(hStream, 0, captureStatus_out, id_out, graph_out, dependencies_out, NULL,
                        numDependencies_out);
}

SIM_EXPORT CUresult cuStreamGetCaptureInfo_v2_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                                   cuuint64_t *id_out, CUgraph *graph_out,
                                                   const CUgraphNode **dependencies_out,
                                                   size_t *numDependencies_out)
{
    return capture_info(hStream, 1, captureStatus_out, id_out, graph_out, dependencies_out, NULL,
                        numDependencies_out);
}

SIM_EXPORT CUresult cuStreamGetCaptureInfo_v3(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                              cuuint64_t *id_out, CUgraph *graph_out,
                                              const CUgraphNode **dependencies_out,
                                              const CUgraphEdgeData **edgeData_out, size_t *numDependencies_out)
{
    return capture_info(hStream, 0, captureStatus_out, id_out, graph_out, dependencies_out, edgeData_out,
                        numDependencies_out);
}

SIM_EXPORT CUresult cuStreamGetCaptureInfo_v3_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                                   cuuint64_t *id_out, CUgraph *graph_out,
                                                   const CUgraphNode **dependencies_out,
                                                   const CUgraphEdgeData **edgeData_out,
                                                   size_t *numDependencies_out)
{
    return capture_info(hStream, 1, captureStatus_out, id_out, graph_out, dependencies_out, edgeData_out,
                        numDependencies_out);
}

/* ---- building graphs ---- */

SIM_EXPORT CUresult cuGraphCreate(CUgraph *phGraph, unsigned int flags)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (phGraph == NULL || flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_mu);
    struct CUgraph_st *g = graph_new();
    pthread_mutex_unlock(&g_mu);
    if (g == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *phGraph = g;
    return CUDA_SUCCESS;
}

/* A new node of graph h after deps (g_mu held). INVALID_VALUE for an unknown graph or a dependency in another
 * graph, OUT_OF_MEMORY when it cannot be added. */
static CUresult node_add_after(CUgraph h, const CUgraphNode *deps, size_t ndeps, CUgraphNodeType type,
                               const struct sim_kernel *k, struct CUgraphNode_st **out)
{
    struct CUgraph_st *g = graph_get(h);
    if (g == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < ndeps; i++) {
        struct CUgraphNode_st *d = node_get(deps[i]);
        if (d == NULL || d->graph != g)
            return CUDA_ERROR_INVALID_VALUE;
    }
    *out = node_add(g, type, k, 0);
    return *out ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

/* The v1 and v2 parameters share their first members; kern (v2) is not supported: the simulator has no
 * libraries, so func must be set. */
static CUresult add_kernel_node(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *deps, size_t ndeps,
                                const CUDA_KERNEL_NODE_PARAMS_v1 *p)
{
    int dev;
    CUresult rc = sim_current(NULL, &dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (phGraphNode == NULL || p == NULL || (ndeps > 0 && deps == NULL) || p->func == NULL ||
        (p->kernelParams != NULL && p->extra != NULL))
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_kernel k = {p->func,
                           {p->gridDimX, p->gridDimY, p->gridDimZ},
                           {p->blockDimX, p->blockDimY, p->blockDimZ},
                           p->sharedMemBytes,
                           0};
    int nsms;
    int64_t dur_ns;
    rc = sim_kernel_model(&k, dev, &nsms, &dur_ns);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUgraphNode_st *nd = NULL;
    pthread_mutex_lock(&g_mu);
    rc = node_add_after(hGraph, deps, ndeps, CU_GRAPH_NODE_TYPE_KERNEL, &k, &nd);
    pthread_mutex_unlock(&g_mu);
    if (rc == CUDA_SUCCESS)
        *phGraphNode = nd;
    return rc;
}

SIM_EXPORT CUresult cuGraphAddKernelNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                         size_t numDependencies, const CUDA_KERNEL_NODE_PARAMS_v1 *nodeParams)
{
    return add_kernel_node(phGraphNode, hGraph, dependencies, numDependencies, nodeParams);
}

SIM_EXPORT CUresult cuGraphAddKernelNode_v2(CUgraphNode *phGraphNode, CUgraph hGraph,
                                            const CUgraphNode *dependencies, size_t numDependencies,
                                            const CUDA_KERNEL_NODE_PARAMS_v2 *nodeParams)
{
    if (nodeParams == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_KERNEL_NODE_PARAMS_v1 p;
    memcpy(&p, nodeParams, sizeof p); /* v2 starts with v1's members */
    return add_kernel_node(phGraphNode, hGraph, dependencies, numDependencies, &p);
}

static CUresult kernel_node_params(CUgraphNode hNode, CUDA_KERNEL_NODE_PARAMS_v1 *p)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (p == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_mu);
    struct CUgraphNode_st *nd = node_get(hNode);
    if (nd == NULL || nd->type != CU_GRAPH_NODE_TYPE_KERNEL) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        const struct sim_kernel *k = &nd->kernel;
        memset(p, 0, sizeof *p); /* arguments are not kept: kernels do not run */
        p->func = k->f;
        p->gridDimX = k->grid[0];
        p->gridDimY = k->grid[1];
        p->gridDimZ = k->grid[2];
        p->blockDimX = k->block[0];
        p->blockDimY = k->block[1];
        p->blockDimZ = k->block[2];
        p->sharedMemBytes = k->shmem;
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

SIM_EXPORT CUresult cuGraphKernelNodeGetParams(CUgraphNode hNode, CUDA_KERNEL_NODE_PARAMS_v1 *nodeParams)
{
    return kernel_node_params(hNode, nodeParams);
}

SIM_EXPORT CUresult cuGraphKernelNodeGetParams_v2(CUgraphNode hNode, CUDA_KERNEL_NODE_PARAMS_v2 *nodeParams)
{
    if (nodeParams == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_KERNEL_NODE_PARAMS_v1 p;
    CUresult rc = kernel_node_params(hNode, &p);
    if (rc == CUDA_SUCCESS) {
        memset(nodeParams, 0, sizeof *nodeParams);
        memcpy(nodeParams, &p, sizeof p);
    }
    return rc;
}

SIM_EXPORT CUresult cuGraphGetNodes(CUgraph hGraph, CUgraphNode *nodes, size_t *numNodes)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (numNodes == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_mu);
    struct CUgraph_st *g = graph_get(hGraph);
    if (g == NULL) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else if (nodes == NULL) {
        *numNodes = g->n;
    } else {
        /* as documented: up to *numNodes handles, the rest of a longer array NULL, the count actually given */
        size_t i = 0;
        for (; i < *numNodes && i < g->n; i++)
            nodes[i] = g->nodes[i];
        for (size_t j = i; j < *numNodes; j++)
            nodes[j] = NULL;
        *numNodes = i;
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

SIM_EXPORT CUresult cuGraphNodeGetType(CUgraphNode hNode, CUgraphNodeType *type)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (type == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_mu);
    struct CUgraphNode_st *nd = node_get(hNode);
    if (nd == NULL)
        rc = CUDA_ERROR_INVALID_VALUE;
    else
        *type = nd->type;
    pthread_mutex_unlock(&g_mu);
    return rc;
}

SIM_EXPORT CUresult cuGraphDestroy(CUgraph hGraph)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_mu);
    struct CUgraph_st *g = graph_get(hGraph);
    if (g == NULL)
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (g->capturing != NULL)
        rc = CUDA_ERROR_ILLEGAL_STATE; /* a capture still records into it */
    else
        graph_free(g);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

/* ---- graph memory nodes (their memory: graph_mem.c) ---- */

CUresult sim_graph_add_mem_node(CUgraphNode *out, CUgraph h, const CUgraphNode *deps, size_t ndeps,
                                CUgraphNodeType type, const struct sim_gmem_node *m)
{
    struct CUgraphNode_st *nd = NULL;
    pthread_mutex_lock(&g_mu);
    CUresult rc = node_add_after(h, deps, ndeps, type, NULL, &nd);
    if (rc == CUDA_SUCCESS) {
        nd->mem = *m;
        *out = nd;
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

CUresult sim_graph_mem_node_get(CUgraphNode h, CUgraphNodeType type, struct sim_gmem_node *out)
{
    pthread_mutex_lock(&g_mu);
    struct CUgraphNode_st *nd = node_get(h);
    CUresult rc = nd && nd->type == type ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        *out = nd->mem;
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int sim_capture_mem(struct CUstream_st *s, CUgraphNodeType type, struct sim_gmem_node *m, CUresult *rc)
{
    /* relaxed: a hint, as in sim_capture */
    if (atomic_load_explicit(&g_sim_capturing, memory_order_relaxed) == 0)
        return 0;
    int done = 1;
    pthread_mutex_lock(&g_mu);
    if (s->cap_graph == NULL) {
        done = 0;
    } else if (s->cap_status == CU_STREAM_CAPTURE_STATUS_INVALIDATED) {
        *rc = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    } else {
        if (type == CU_GRAPH_NODE_TYPE_MEM_ALLOC)
            m->addr = sim_va_alloc(SIM_VA_LINEAR, m->dev, m->bytes, 512);
        *rc = m->addr ? capture_node(s, type, NULL, 0) : CUDA_ERROR_OUT_OF_MEMORY;
        if (*rc == CUDA_SUCCESS)
            s->cap_deps[0]->mem = *m;
        else
            s->cap_status = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
    }
    pthread_mutex_unlock(&g_mu);
    return done;
}

/* Whether a free node of e frees addr. */
static int freed_in(const struct CUgraphExec_st *e, uint64_t addr)
{
    for (size_t j = 0; j < e->n; j++)
        if (e->nodes[j].type == CU_GRAPH_NODE_TYPE_MEM_FREE && e->nodes[j].mem.addr == addr)
            return 1;
    return 0;
}

/* ---- executable graphs ---- */

static CUresult instantiate(CUgraphExec *phGraphExec, CUgraph hGraph)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (phGraphExec == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct CUgraphExec_st *e = calloc(1, sizeof *e);
    if (e == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_lock(&g_mu);
    struct CUgraph_st *g = graph_get(hGraph);
    if (g == NULL)
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (g->capturing != NULL)
        rc = CUDA_ERROR_ILLEGAL_STATE; /* not instantiable before cuStreamEndCapture */
    else if (g->n > 0 && (e->nodes = calloc(g->n, sizeof *e->nodes)) == NULL)
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS) {
        /* a copy: the graph may change or go, the executable graph stays as it was instantiated */
        e->magic = SIM_MAGIC_GEXEC;
        e->n = g->n;
        e->refs = 1;
        for (size_t i = 0; i < g->n; i++) {
            e->nodes[i].type = g->nodes[i]->type;
            e->nodes[i].kernel = g->nodes[i]->kernel;
            e->nodes[i].dur_ns = g->nodes[i]->dur_ns;
            e->nodes[i].mem = g->nodes[i]->mem;
        }
        for (size_t i = 0; rc == CUDA_SUCCESS && i < e->n; i++)
            if (e->nodes[i].type == CU_GRAPH_NODE_TYPE_MEM_ALLOC)
                rc = sim_gmem_exec_add(&e->gmem, &e->nodes[i].mem, !freed_in(e, e->nodes[i].mem.addr));
        if (rc == CUDA_SUCCESS && ptr_map_put(&g_execs, (uint64_t)(uintptr_t)e, e) != 0)
            rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    pthread_mutex_unlock(&g_mu);
    if (rc != CUDA_SUCCESS) {
        free(e->nodes);
        free(e);
        return rc;
    }
    *phGraphExec = e;
    return CUDA_SUCCESS;
}

static CUresult instantiate_legacy(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode,
                                   char *logBuffer, size_t bufferSize)
{
    CUresult rc = instantiate(phGraphExec, hGraph);
    if (phErrorNode)
        *phErrorNode = NULL;
    if (logBuffer && bufferSize > 0)
        logBuffer[0] = '\0';
    return rc;
}

SIM_EXPORT CUresult cuGraphInstantiate(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode,
                                       char *logBuffer, size_t bufferSize)
{
    return instantiate_legacy(phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize);
}

SIM_EXPORT CUresult cuGraphInstantiate_v2(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode,
                                          char *logBuffer, size_t bufferSize)
{
    return instantiate_legacy(phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize);
}

/* Flags are accepted and change nothing (no graph allocations, no device launch, one priority). */
static CUresult check_flags(unsigned long long flags, int upload_ok)
{
    unsigned long long known = CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH |
                               CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH |
                               CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY;
    if (upload_ok)
        known |= CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD;
    if ((flags & ~known) != 0 || ((flags & CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH) &&
                                  (flags & CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH)))
        return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph, unsigned long long flags)
{
    CUresult rc = check_flags(flags, 0);
    return rc != CUDA_SUCCESS ? rc : instantiate(phGraphExec, hGraph);
}

static CUresult instantiate_with_params(CUgraphExec *phGraphExec, CUgraph hGraph,
                                        CUDA_GRAPH_INSTANTIATE_PARAMS *params, int pt)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (params == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    params->hErrNode_out = NULL;
    rc = check_flags(params->flags, 1);
    if (rc == CUDA_SUCCESS && (params->flags & CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD)) {
        struct CUstream_st *s; /* uploading costs nothing here; the stream must exist */
        rc = sim_stream_resolve(params->hUploadStream, pt, &s);
    }
    if (rc == CUDA_SUCCESS)
        rc = instantiate(phGraphExec, hGraph);
    params->result_out = rc == CUDA_SUCCESS ? CUDA_GRAPH_INSTANTIATE_SUCCESS : CUDA_GRAPH_INSTANTIATE_ERROR;
    return rc;
}

SIM_EXPORT CUresult cuGraphInstantiateWithParams(CUgraphExec *phGraphExec, CUgraph hGraph,
                                                 CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
    return instantiate_with_params(phGraphExec, hGraph, instantiateParams, 0);
}

SIM_EXPORT CUresult cuGraphInstantiateWithParams_ptsz(CUgraphExec *phGraphExec, CUgraph hGraph,
                                                      CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
    return instantiate_with_params(phGraphExec, hGraph, instantiateParams, 1);
}

SIM_EXPORT CUresult cuGraphExecDestroy(CUgraphExec hGraphExec)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_mu);
    struct CUgraphExec_st *e = hGraphExec ? ptr_map_take(&g_execs, (uint64_t)(uintptr_t)hGraphExec) : NULL;
    if (e == NULL) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        e->magic = 0;
        sim_gmem_exec_gone(&e->gmem);
        exec_unref(e); /* launches still queuing its nodes finish first */
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

/* Queues every node on the stream, in order, the way the launch or copy itself would be queued. */
static CUresult graph_launch(CUgraphExec hGraphExec, CUstream hStream, int pt)
{
    struct CUstream_st *s;
    CUresult rc = sim_stream_resolve(hStream, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_mu);
    struct CUgraphExec_st *e = hGraphExec ? ptr_map_get(&g_execs, (uint64_t)(uintptr_t)hGraphExec) : NULL;
    if (e != NULL)
        e->refs++;
    pthread_mutex_unlock(&g_mu);
    if (e == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_capture_op op = {SIM_CAPTURE_GRAPH, NULL, 0, e};
    if (!sim_capture(s, &op, &rc)) {
        /* every kernel's module must still be loaded: the graph runs whole or not at all */
        for (size_t i = 0; rc == CUDA_SUCCESS && i < e->n; i++)
            if (e->nodes[i].type == CU_GRAPH_NODE_TYPE_KERNEL)
                rc = sim_function_check(e->nodes[i].kernel.f);
        if (rc == CUDA_SUCCESS)
            rc = sim_gmem_launch(&e->gmem); /* its allocations exist from here on, or it does not run */
        for (size_t i = 0; rc == CUDA_SUCCESS && i < e->n; i++) {
            if (e->nodes[i].type == CU_GRAPH_NODE_TYPE_KERNEL)
                rc = sim_kernel_enqueue(s, &e->nodes[i].kernel);
            else
                sim_exec_enqueue(s, 0, e->nodes[i].dur_ns);
        }
    }
    pthread_mutex_lock(&g_mu);
    exec_unref(e);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

SIM_EXPORT CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
    return graph_launch(hGraphExec, hStream, 0);
}

SIM_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
    return graph_launch(hGraphExec, hStream, 1);
}
