/* Graph memory: allocation nodes (cuGraphAddMemAllocNode, or cuMemAllocAsync captured into a graph) and free
 * nodes, and each device's graph memory pool, as the driver has them (measured on an H200: bench/gpu_bypass.sh):
 *   - an allocation node reserves an address when it is made and costs nothing until a launch;
 *   - a launch takes its allocations from the device's graph pool, which grows (charged to the device, or the
 *     launch fails with CUDA_ERROR_OUT_OF_MEMORY and nothing runs) only past what it already reserves and does not
 *     hold for live allocations: graphs that free what they allocate share the same memory, launch after launch;
 *   - the pool keeps what it grew to (CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT), also after the graphs are
 *     destroyed, until cuDeviceGraphMemTrim gives back what no live allocation holds;
 *   - allocations no free node of their graph frees outlive the launch;
 *   - CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT ("associated with graphs") reads what the pool reserves, as on the H200.
 * Simplified: one device per graph's allocation nodes; an outliving allocation lives until its graph is destroyed
 * (cuMemFree of a graph allocation is not modelled), and relaunching such a graph reuses it. */
#include <pthread.h>
#include <string.h>

#include "sim_cuda.h"

static pthread_mutex_t g_gmem_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint64_t reserved; /* the pool: charged to the device */
    uint64_t live; /* held by outliving allocations */
    uint64_t used_high, reserved_high;
} g_dev[SIM_MAX_GPUS];

CUresult sim_gmem_exec_add(struct sim_gmem_exec *e, const struct sim_gmem_node *m, int out)
{
    if (e->bytes > 0 && e->dev != m->dev)
        return CUDA_ERROR_NOT_SUPPORTED;
    e->dev = m->dev;
    e->bytes += m->bytes;
    if (out)
        e->out_bytes += m->bytes;
    return CUDA_SUCCESS;
}

CUresult sim_gmem_launch(struct sim_gmem_exec *e)
{
    if (e->bytes == 0)
        return CUDA_SUCCESS;
    CUresult rc = CUDA_SUCCESS;
    pthread_mutex_lock(&g_gmem_mu);
    int d = e->dev;
    /* a relaunch reuses its own outliving allocations */
    uint64_t need = g_dev[d].live - (e->out_live ? e->out_bytes : 0) + e->bytes;
    if (need > g_dev[d].reserved && (rc = sim_charge(d, need - g_dev[d].reserved)) == CUDA_SUCCESS)
        g_dev[d].reserved = need;
    if (rc == CUDA_SUCCESS && !e->out_live && e->out_bytes) {
        e->out_live = 1;
        g_dev[d].live += e->out_bytes;
    }
    if (g_dev[d].reserved > g_dev[d].used_high)
        g_dev[d].used_high = g_dev[d].reserved;
    if (g_dev[d].reserved > g_dev[d].reserved_high)
        g_dev[d].reserved_high = g_dev[d].reserved;
    pthread_mutex_unlock(&g_gmem_mu);
    return rc;
}

void sim_gmem_exec_gone(struct sim_gmem_exec *e)
{
    pthread_mutex_lock(&g_gmem_mu);
    if (e->out_live) {
        g_dev[e->dev].live -= e->out_bytes;
        e->out_live = 0;
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
    rc = sim_graph_mem_node_get(hNode, CU_GRAPH_NODE_TYPE_MEM_ALLOC, &m);
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

SIM_EXPORT CUresult cuGraphMemFreeNodeGetParams(CUgraphNode hNode, CUdeviceptr *dptr_out)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (dptr_out == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_gmem_node m;
    rc = sim_graph_mem_node_get(hNode, CU_GRAPH_NODE_TYPE_MEM_FREE, &m);
    if (rc == CUDA_SUCCESS)
        *dptr_out = m.addr;
    return rc;
}

SIM_EXPORT CUresult cuDeviceGraphMemTrim(CUdevice device)
{
    CUresult rc = sim_check_device(device);
    if (rc != CUDA_SUCCESS)
        return rc;
    pthread_mutex_lock(&g_gmem_mu);
    uint64_t give = g_dev[device].reserved - g_dev[device].live;
    g_dev[device].reserved = g_dev[device].live;
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
    /* "associated with graphs": on the H200 always what the pool reserves */
    case CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT: *(cuuint64_t *)value = g_dev[device].reserved; break;
    case CU_GRAPH_MEM_ATTR_USED_MEM_HIGH: *(cuuint64_t *)value = g_dev[device].used_high; break;
    case CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT: *(cuuint64_t *)value = g_dev[device].reserved; break;
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
