/* Graph memory: allocation nodes (cuGraphAddMemAllocNode, or cuMemAllocAsync captured into a graph) and free
 * nodes, and each device's graph memory pool.
 *
 * As with the driver, an allocation node reserves an address when it is created and costs nothing until an
 * executable graph is launched: the first launch materialises the graph's allocations (charged to the device, or
 * the launch fails with CUDA_ERROR_OUT_OF_MEMORY and nothing runs); the graph keeps that memory for its later
 * launches. Memory an executable graph no longer needs (it was destroyed) stays reserved in the device's graph pool
 * and is reused by the next graph that materialises there; cuDeviceGraphMemTrim gives back the pool's unused
 * memory: what destroyed graphs left, and that of graphs whose free nodes give back everything they allocate
 * (they hold nothing between launches). A graph whose allocations outlive it keeps them until it is destroyed.
 * Simplified: one device per graph's allocation nodes; free nodes of memory allocated outside the graph, and
 * cuMemFree of graph allocations, are not modelled. */
#include <pthread.h>
#include <string.h>

#include "sim_cuda.h"

static pthread_mutex_t g_gmem_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sim_gmem_exec *g_execs; /* registered, through next */
static struct {
    uint64_t used; /* held by executable graphs */
    uint64_t cached; /* reserved for graphs, held by none */
    uint64_t used_high, reserved_high;
} g_dev[SIM_MAX_GPUS];

CUresult sim_gmem_exec_add(struct sim_gmem_exec *e, CUgraphNodeType type, const struct sim_gmem_node *m)
{
    if (type != CU_GRAPH_NODE_TYPE_MEM_ALLOC)
        return CUDA_SUCCESS;
    if (e->bytes > 0 && e->dev != m->dev)
        return CUDA_ERROR_NOT_SUPPORTED;
    e->dev = m->dev;
    e->bytes += m->bytes;
    return CUDA_SUCCESS;
}

void sim_gmem_exec_register(struct sim_gmem_exec *e, int frees_all)
{
    if (e->bytes == 0)
        return;
    pthread_mutex_lock(&g_gmem_mu);
    e->frees_all = frees_all;
    e->next = g_execs;
    g_execs = e;
    pthread_mutex_unlock(&g_gmem_mu);
}

static void note_high(int dev)
{
    uint64_t reserved = g_dev[dev].used + g_dev[dev].cached;
    if (g_dev[dev].used > g_dev[dev].used_high)
        g_dev[dev].used_high = g_dev[dev].used;
    if (reserved > g_dev[dev].reserved_high)
        g_dev[dev].reserved_high = reserved;
}

CUresult sim_gmem_launch(struct sim_gmem_exec *e)
{
    if (e->bytes == 0)
        return CUDA_SUCCESS;
    CUresult rc = CUDA_SUCCESS;
    pthread_mutex_lock(&g_gmem_mu);
    if (!e->materialised) {
        uint64_t reuse = e->bytes < g_dev[e->dev].cached ? e->bytes : g_dev[e->dev].cached;
        if (e->bytes > reuse)
            rc = sim_charge(e->dev, e->bytes - reuse);
        if (rc == CUDA_SUCCESS) {
            g_dev[e->dev].cached -= reuse;
            g_dev[e->dev].used += e->bytes;
            e->materialised = 1;
            note_high(e->dev);
        }
    }
    pthread_mutex_unlock(&g_gmem_mu);
    return rc;
}

void sim_gmem_exec_gone(struct sim_gmem_exec *e)
{
    if (e->bytes == 0)
        return;
    pthread_mutex_lock(&g_gmem_mu);
    for (struct sim_gmem_exec **pp = &g_execs; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    }
    if (e->materialised) {
        g_dev[e->dev].used -= e->bytes;
        g_dev[e->dev].cached += e->bytes;
        e->materialised = 0;
    }
    pthread_mutex_unlock(&g_gmem_mu);
}

/* ---- entry points ---- */

SIM_EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                           size_t numDependencies, CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (phGraphNode == NULL || nodeParams == NULL || nodeParams->bytesize == 0 ||
        (numDependencies > 0 && dependencies == NULL) ||
        nodeParams->poolProps.allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
        nodeParams->poolProps.location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        nodeParams->poolProps.handleTypes != CU_MEM_HANDLE_TYPE_NONE)
        return CUDA_ERROR_INVALID_VALUE;
    int dev = nodeParams->poolProps.location.id;
    if (sim_check_device(dev) != CUDA_SUCCESS)
        return CUDA_ERROR_INVALID_DEVICE;
    struct sim_gmem_node m = {dev, nodeParams->bytesize, 0};
    m.addr = sim_va_alloc(SIM_VA_LINEAR, dev, m.bytes, 512); /* the address is fixed now; memory comes at launch */
    if (m.addr == 0)
        return CUDA_ERROR_OUT_OF_MEMORY;
    rc = sim_graph_add_mem_node(phGraphNode, hGraph, dependencies, numDependencies, CU_GRAPH_NODE_TYPE_MEM_ALLOC, &m);
    if (rc == CUDA_SUCCESS)
        nodeParams->dptr = m.addr;
    return rc;
}

SIM_EXPORT CUresult cuGraphAddMemFreeNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                          size_t numDependencies, CUdeviceptr dptr)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (phGraphNode == NULL || dptr == 0 || (numDependencies > 0 && dependencies == NULL))
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_gmem_node m = {0, 0, dptr};
    return sim_graph_add_mem_node(phGraphNode, hGraph, dependencies, numDependencies, CU_GRAPH_NODE_TYPE_MEM_FREE,
                                  &m);
}

SIM_EXPORT CUresult cuGraphMemAllocNodeGetParams(CUgraphNode hNode, CUDA_MEM_ALLOC_NODE_PARAMS *params_out)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (params_out == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_gmem_node m;
    rc = sim_graph_mem_node_get(hNode, &m);
    if (rc != CUDA_SUCCESS)
        return rc;
    memset(params_out, 0, sizeof *params_out);
    params_out->poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    params_out->poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    params_out->poolProps.location.id = m.dev;
    params_out->bytesize = m.bytes;
    params_out->dptr = m.addr;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGraphMemTrim(CUdevice device)
{
    CUresult rc = sim_check_device(device);
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_gmem_mu);
    uint64_t give = g_dev[device].cached;
    g_dev[device].cached = 0;
    for (struct sim_gmem_exec *e = g_execs; e; e = e->next) {
        if (e->dev == device && e->materialised && e->frees_all) {
            e->materialised = 0;
            g_dev[device].used -= e->bytes;
            give += e->bytes;
        }
    }
    if (give)
        sim_uncharge(device, give);
    pthread_mutex_unlock(&g_gmem_mu);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGetGraphMemAttribute(CUdevice device, CUgraphMem_attribute attr, void *value)
{
    CUresult rc = sim_check_device(device);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (value == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_gmem_mu);
    switch (attr) {
    case CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT: *(cuuint64_t *)value = g_dev[device].used; break;
    case CU_GRAPH_MEM_ATTR_USED_MEM_HIGH: *(cuuint64_t *)value = g_dev[device].used_high; break;
    case CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT:
        *(cuuint64_t *)value = g_dev[device].used + g_dev[device].cached;
        break;
    case CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH: *(cuuint64_t *)value = g_dev[device].reserved_high; break;
    default: rc = CUDA_ERROR_INVALID_VALUE; break;
    }
    pthread_mutex_unlock(&g_gmem_mu);
    return rc;
}

SIM_EXPORT CUresult cuDeviceSetGraphMemAttribute(CUdevice device, CUgraphMem_attribute attr, void *value)
{
    CUresult rc = sim_check_device(device);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (value == NULL || *(cuuint64_t *)value != 0) /* only the high-water marks, only to zero */
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_gmem_mu);
    if (attr == CU_GRAPH_MEM_ATTR_USED_MEM_HIGH)
        g_dev[device].used_high = 0;
    else if (attr == CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH)
        g_dev[device].reserved_high = 0;
    else
        rc = CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_unlock(&g_gmem_mu);
    return rc;
}
