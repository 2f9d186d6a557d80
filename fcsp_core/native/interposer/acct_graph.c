/* Graph memory accounting. Allocation nodes (cuGraphAddMemAllocNode, or cuMemAllocAsync captured into a graph)
 * allocate nothing when they are made. A launch takes a graph's allocations from its device's graph memory pool,
 * which grows only past what it reserves and does not hold for live allocations (graphs that free what they
 * allocate share the same memory, launch after launch), and keeps what it grew to, even after the graphs are
 * destroyed, until cuDeviceGraphMemTrim. Allocations no free node of their graph frees outlive the launch.
 * (Measured on an H200, bench/gpu_bypass.sh; the simulated driver does the same, sim/graph_mem.c.)
 *
 * So each device's graph memory is charged what its pool reserves (cuDeviceGetGraphMemAttribute
 * CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT), settled after every launch of a graph with allocation nodes, trim and
 * destruction; and a launch admits, before the driver is asked, what the pool would have to grow by: the graph's
 * allocations plus the outliving ones of other graphs, less what the pool reserves. A launch past the cap fails
 * with CUDA_ERROR_OUT_OF_MEMORY and runs nothing. Outliving allocations count as live until their graph is
 * destroyed (freeing one with cuMemFree(Async) is not followed: the estimate errs toward refusing, the charge
 * itself stays the driver's figure).
 *
 * One lock over all of it, on the graph paths only (instantiate, launch of a graph with allocation nodes,
 * destroy, trim); while no graph with allocation nodes exists a launch costs one atomic load. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "interposer/acct.h"
#include "interposer/admission.h"
#include "interposer/capture_watch.h"
#include "interposer/state.h"
#include "../common/ptr_map.h"

struct gexec_rec {
    int ordinal;
    int out_live; /* its outliving allocations exist (launched, not destroyed) */
    uint64_t bytes; /* its allocation nodes on ordinal */
    uint64_t out_bytes; /* those no free node of the graph frees */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ptr_map g_execs = PTR_MAP_INIT; /* executable graph -> gexec_rec, for those with allocation nodes */
static uint64_t g_charged[FCSP_MAX_ORDINALS]; /* graph memory charged per device (ordinal), under g_mu */
static uint64_t g_live[FCSP_MAX_ORDINALS]; /* outliving allocations per device, under g_mu */
/* How many executable graphs with allocation nodes exist: while none does, a launch skips all of this file. */
static _Atomic int g_nexecs;

/* Caller holds g_mu. */
static void settle(int ordinal)
{
    struct fcsp_dev *d = fcsp_dev_by_ordinal(ordinal);
    fcsp_pfn_cuDeviceGetGraphMemAttribute get = FCSP_REAL(cuDeviceGetGraphMemAttribute);
    cuuint64_t reserved = 0;
    if (d && get && get(ordinal, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, &reserved) == CUDA_SUCCESS)
        fcsp_settle(d, &g_charged[ordinal], reserved);
}

/* Whether a free node of the graph frees dptr. */
static int freed_in(const CUgraphNode *nodes, size_t n, CUdeviceptr dptr)
{
    fcsp_pfn_cuGraphNodeGetType get_type = FCSP_REAL(cuGraphNodeGetType);
    fcsp_pfn_cuGraphMemFreeNodeGetParams get_free = FCSP_REAL(cuGraphMemFreeNodeGetParams);
    for (size_t i = 0; get_type && get_free && i < n; i++) {
        CUgraphNodeType type;
        CUdeviceptr p;
        if (get_type(nodes[i], &type) == CUDA_SUCCESS && type == CU_GRAPH_NODE_TYPE_MEM_FREE &&
            get_free(nodes[i], &p) == CUDA_SUCCESS && p == dptr)
            return 1;
    }
    return 0;
}

/* What graph's allocation nodes total (and the outliving part) on their device r->ordinal; 0 bytes: none, or on
 * several devices (then their memory is charged by each device's reservation at settling, not admitted). */
static void graph_alloc_bytes(CUgraph graph, struct gexec_rec *r)
{
    fcsp_pfn_cuGraphGetNodes get_nodes = FCSP_REAL(cuGraphGetNodes);
    fcsp_pfn_cuGraphNodeGetType get_type = FCSP_REAL(cuGraphNodeGetType);
    fcsp_pfn_cuGraphMemAllocNodeGetParams get_params = FCSP_REAL(cuGraphMemAllocNodeGetParams);
    size_t n = 0;
    *r = (struct gexec_rec){-1, 0, 0, 0};
    if (!get_nodes || !get_type || !get_params || get_nodes(graph, NULL, &n) != CUDA_SUCCESS || n == 0)
        return;
    CUgraphNode *nodes = calloc(n, sizeof *nodes);
    if (nodes == NULL || get_nodes(graph, nodes, &n) != CUDA_SUCCESS) {
        free(nodes);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        CUgraphNodeType type;
        CUDA_MEM_ALLOC_NODE_PARAMS p;
        if (get_type(nodes[i], &type) != CUDA_SUCCESS || type != CU_GRAPH_NODE_TYPE_MEM_ALLOC ||
            get_params(nodes[i], &p) != CUDA_SUCCESS)
            continue;
        if (r->bytes && r->ordinal != p.poolProps.location.id) {
            r->bytes = 0;
            break;
        }
        r->ordinal = p.poolProps.location.id;
        r->bytes += p.bytesize;
        if (!freed_in(nodes, n, p.dptr))
            r->out_bytes += p.bytesize;
    }
    free(nodes);
}

CUresult fcsp_gmem_instantiated(CUresult rc, CUgraphExec *exec, CUgraph graph)
{
    if (rc != CUDA_SUCCESS || exec == NULL || fcsp_mode() != FCSP_MODE_ENFORCE)
        return rc;
    struct gexec_rec found;
    graph_alloc_bytes(graph, &found);
    if (found.bytes == 0 || (unsigned)found.ordinal >= FCSP_MAX_ORDINALS)
        return rc;
    struct gexec_rec *r = malloc(sizeof *r);
    if (r == NULL)
        return rc;
    *r = found;
    pthread_mutex_lock(&g_mu);
    struct gexec_rec *old = ptr_map_take(&g_execs, (uint64_t)(uintptr_t)*exec); /* a handle reused by the driver */
    if (old) {
        free(old);
        atomic_fetch_sub_explicit(&g_nexecs, 1, memory_order_relaxed); /* relaxed: counted under g_mu */
    }
    if (ptr_map_put(&g_execs, (uint64_t)(uintptr_t)*exec, r) != 0)
        free(r);
    else /* release: a launch that sees the count (acquire) finds the record under g_mu */
        atomic_fetch_add_explicit(&g_nexecs, 1, memory_order_release);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

CUresult fcsp_gmem_launch(fcsp_pfn_cuGraphLaunch real, CUgraphExec exec, CUstream stream, int per_thread)
{
    /* acquire: pairs with the release increment at instantiation */
    if (__builtin_expect(atomic_load_explicit(&g_nexecs, memory_order_acquire) == 0, 1) ||
        fcsp_stream_captures(stream, per_thread))
        return real(exec, stream);
    pthread_mutex_lock(&g_mu);
    struct gexec_rec *r = ptr_map_get(&g_execs, (uint64_t)(uintptr_t)exec);
    int refuse = 0;
    struct fcsp_dev *d = r ? fcsp_dev_to_charge(r->ordinal, &refuse) : NULL;
    if (d == NULL) {
        pthread_mutex_unlock(&g_mu);
        return refuse ? CUDA_ERROR_OUT_OF_MEMORY : real(exec, stream);
    }
    int o = r->ordinal;
    settle(o);
    /* the pool must hold this graph's allocations next to the live outliving ones (a relaunch reuses its own) */
    uint64_t want = g_live[o] - (r->out_live ? r->out_bytes : 0) + r->bytes;
    uint64_t need = want > g_charged[o] ? want - g_charged[o] : 0;
    if (need && fcsp_admit(d, need) != 0) {
        pthread_mutex_unlock(&g_mu);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    g_charged[o] += need;
    CUresult rc = real(exec, stream);
    if (rc == CUDA_SUCCESS && !r->out_live && r->out_bytes) {
        r->out_live = 1;
        g_live[o] += r->out_bytes;
    }
    settle(o);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

CUresult fcsp_gmem_exec_destroy(fcsp_pfn_cuGraphExecDestroy real, CUgraphExec exec)
{
    pthread_mutex_lock(&g_mu);
    CUresult rc = real(exec);
    struct gexec_rec *r = rc == CUDA_SUCCESS ? ptr_map_take(&g_execs, (uint64_t)(uintptr_t)exec) : NULL;
    if (r) {
        atomic_fetch_sub_explicit(&g_nexecs, 1, memory_order_relaxed); /* relaxed: counted under g_mu */
        if (r->out_live)
            g_live[r->ordinal] -= r->out_bytes;
        settle(r->ordinal);
        free(r);
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

CUresult fcsp_gmem_trim(fcsp_pfn_cuDeviceGraphMemTrim real, CUdevice dev)
{
    pthread_mutex_lock(&g_mu);
    CUresult rc = real(dev);
    if (rc == CUDA_SUCCESS && (unsigned)dev < FCSP_MAX_ORDINALS && fcsp_mode() == FCSP_MODE_ENFORCE)
        settle(dev);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void fcsp_gmem_reset(void)
{
    pthread_mutex_init(&g_mu, NULL);
    g_execs = (struct ptr_map)PTR_MAP_INIT;
    atomic_store_explicit(&g_nexecs, 0, memory_order_relaxed); /* relaxed: the child has one thread */
    for (int i = 0; i < FCSP_MAX_ORDINALS; i++)
        g_charged[i] = g_live[i] = 0;
}
