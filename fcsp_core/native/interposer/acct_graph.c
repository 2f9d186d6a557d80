/* Graph memory accounting. Allocation nodes (cuGraphAddMemAllocNode, or cuMemAllocAsync captured into a graph)
 * allocate nothing when they are made: an executable graph's first launch materialises its allocations from the
 * device's graph memory pool, which keeps that memory reserved for later launches until cuDeviceGraphMemTrim
 * (what no graph holds) or the graph's destruction gives it back. The driver reports the pool per device
 * (cuDeviceGetGraphMemAttribute), and each device's graph memory charge is settled on that reservation:
 *   - at instantiation, what the graph's allocation nodes total is noted per device;
 *   - a launch of a graph that has not materialised (since its instantiation or the last trim of its device)
 *     admits what the pool cannot serve from memory it reserves unused (reserved - used), before the driver is
 *     asked: a launch that would pass the cap fails with CUDA_ERROR_OUT_OF_MEMORY and runs nothing;
 *   - after the launch, a trim or an executable graph's destruction, the charge is settled on the reservation.
 * One lock over all of it (the graph paths only: instantiate, launch of a graph with allocation nodes, destroy,
 * trim). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "interposer/acct.h"
#include "interposer/admission.h"
#include "interposer/state.h"
#include "../sim/sim_map.h"

struct gexec_rec {
    int ordinal;
    int materialised;
    uint64_t bytes; /* its allocation nodes on ordinal */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sim_map g_execs = SIM_MAP_INIT; /* executable graph -> gexec_rec, for those with allocation nodes */
static uint64_t g_charged[FCSP_MAX_ORDINALS]; /* graph memory charged per device (ordinal), under g_mu */
/* How many executable graphs with allocation nodes exist: while none does, a launch skips all of this file. */
static _Atomic int g_nexecs;

static uint64_t graph_attr(int ordinal, CUgraphMem_attribute attr, uint64_t fallback)
{
    fcsp_pfn_cuDeviceGetGraphMemAttribute get = FCSP_REAL(cuDeviceGetGraphMemAttribute);
    cuuint64_t v = 0;
    return get && get(ordinal, attr, &v) == CUDA_SUCCESS ? v : fallback;
}

/* Caller holds g_mu. */
static void settle(int ordinal)
{
    struct fcsp_dev *d = fcsp_dev_by_ordinal(ordinal);
    if (d)
        fcsp_settle(d, &g_charged[ordinal],
                    graph_attr(ordinal, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, g_charged[ordinal]));
}

/* What graph's allocation nodes total, and their device (-1: none, or on several devices: then each is charged
 * by its reservation at settling, without admission before the launch). */
static uint64_t graph_alloc_bytes(CUgraph graph, int *ordinal)
{
    fcsp_pfn_cuGraphGetNodes get_nodes = FCSP_REAL(cuGraphGetNodes);
    fcsp_pfn_cuGraphNodeGetType get_type = FCSP_REAL(cuGraphNodeGetType);
    fcsp_pfn_cuGraphMemAllocNodeGetParams get_params = FCSP_REAL(cuGraphMemAllocNodeGetParams);
    size_t n = 0;
    *ordinal = -1;
    if (!get_nodes || !get_type || !get_params || get_nodes(graph, NULL, &n) != CUDA_SUCCESS || n == 0)
        return 0;
    CUgraphNode *nodes = calloc(n, sizeof *nodes);
    if (nodes == NULL)
        return 0;
    uint64_t total = 0;
    if (get_nodes(graph, nodes, &n) == CUDA_SUCCESS) {
        for (size_t i = 0; i < n; i++) {
            CUgraphNodeType type;
            CUDA_MEM_ALLOC_NODE_PARAMS p;
            if (get_type(nodes[i], &type) != CUDA_SUCCESS || type != CU_GRAPH_NODE_TYPE_MEM_ALLOC ||
                get_params(nodes[i], &p) != CUDA_SUCCESS)
                continue;
            if (*ordinal >= 0 && *ordinal != p.poolProps.location.id) {
                total = 0;
                break;
            }
            *ordinal = p.poolProps.location.id;
            total += p.bytesize;
        }
    }
    free(nodes);
    if (total == 0)
        *ordinal = -1;
    return total;
}

CUresult fcsp_gmem_instantiated(CUresult rc, CUgraphExec *exec, CUgraph graph)
{
    if (rc != CUDA_SUCCESS || exec == NULL || fcsp_mode() != FCSP_MODE_ENFORCE)
        return rc;
    int ordinal;
    uint64_t bytes = graph_alloc_bytes(graph, &ordinal);
    if (bytes == 0 || (unsigned)ordinal >= FCSP_MAX_ORDINALS)
        return rc;
    struct gexec_rec *r = malloc(sizeof *r);
    if (r == NULL)
        return rc;
    *r = (struct gexec_rec){ordinal, 0, bytes};
    pthread_mutex_lock(&g_mu);
    struct gexec_rec *old = sim_map_take(&g_execs, (uint64_t)(uintptr_t)*exec); /* a handle reused by the driver */
    if (old) {
        free(old);
        atomic_fetch_sub_explicit(&g_nexecs, 1, memory_order_relaxed); /* relaxed: counted under g_mu */
    }
    if (sim_map_put(&g_execs, (uint64_t)(uintptr_t)*exec, r) != 0)
        free(r);
    else /* release: a launch that sees the count (acquire) and then the handle finds the record under g_mu */
        atomic_fetch_add_explicit(&g_nexecs, 1, memory_order_release);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

CUresult fcsp_gmem_launch(fcsp_pfn_cuGraphLaunch real, CUgraphExec exec, CUstream stream)
{
    /* acquire: pairs with the release increment at instantiation */
    if (__builtin_expect(atomic_load_explicit(&g_nexecs, memory_order_acquire) == 0, 1))
        return real(exec, stream);
    pthread_mutex_lock(&g_mu);
    struct gexec_rec *r = sim_map_get(&g_execs, (uint64_t)(uintptr_t)exec);
    int refuse = 0;
    struct fcsp_dev *d = r ? fcsp_dev_to_charge(r->ordinal, &refuse) : NULL;
    if (d == NULL) {
        pthread_mutex_unlock(&g_mu);
        return refuse ? CUDA_ERROR_OUT_OF_MEMORY : real(exec, stream);
    }
    int o = r->ordinal;
    settle(o);
    if (!r->materialised) {
        uint64_t used = graph_attr(o, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT, g_charged[o]);
        uint64_t room = g_charged[o] > used ? g_charged[o] - used : 0;
        uint64_t need = r->bytes > room ? r->bytes - room : 0;
        if (need && fcsp_admit(d, need) != 0) {
            pthread_mutex_unlock(&g_mu);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        g_charged[o] += need;
    }
    CUresult rc = real(exec, stream);
    if (rc == CUDA_SUCCESS)
        r->materialised = 1;
    settle(o);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

CUresult fcsp_gmem_exec_destroy(fcsp_pfn_cuGraphExecDestroy real, CUgraphExec exec)
{
    pthread_mutex_lock(&g_mu);
    CUresult rc = real(exec);
    struct gexec_rec *r = rc == CUDA_SUCCESS ? sim_map_take(&g_execs, (uint64_t)(uintptr_t)exec) : NULL;
    if (r) {
        atomic_fetch_sub_explicit(&g_nexecs, 1, memory_order_relaxed); /* relaxed: counted under g_mu */
        settle(r->ordinal);
        free(r);
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

static int forget_materialised(uint64_t key, void *val, void *arg)
{
    struct gexec_rec *r = val;
    (void)key;
    if (r->ordinal == *(const int *)arg)
        r->materialised = 0;
    return 0;
}

CUresult fcsp_gmem_trim(fcsp_pfn_cuDeviceGraphMemTrim real, CUdevice dev)
{
    pthread_mutex_lock(&g_mu);
    CUresult rc = real(dev);
    if (rc == CUDA_SUCCESS && (unsigned)dev < FCSP_MAX_ORDINALS && fcsp_mode() == FCSP_MODE_ENFORCE) {
        /* a trimmed graph may have to materialise again: its next launch is admitted as a first one */
        sim_map_find(&g_execs, forget_materialised, &dev);
        settle(dev);
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void fcsp_gmem_reset(void)
{
    pthread_mutex_init(&g_mu, NULL);
    g_execs = (struct sim_map)SIM_MAP_INIT;
    atomic_store_explicit(&g_nexecs, 0, memory_order_relaxed); /* relaxed: the child has one thread */
    for (int i = 0; i < FCSP_MAX_ORDINALS; i++)
        g_charged[i] = 0;
}
