/* The roads past a memory cap (issue 12), each walked on whatever libcuda.so.1 the process loads: the real driver
 * (bench/gpu_bypass.sh on a GPU machine) or the simulated one (tests/test_interposer_roads.py). After every step it
 * prints one line:
 *
 *   step road=R what=W rc=CUDA_... fcsp=BYTES dev=BYTES devtotal=BYTES
 *
 * fcsp: what this process's cap still leaves, as the application sees it (cuMemGetInfo total - free: the tenant's
 * charge under fcsp, the device's used memory without it); dev: the device's own figure for this process (NVML
 * per-process used memory); devtotal: NVML's used memory of the whole device. Both are NVML's own functions,
 * looked up past fcsp (glibc's dlsym on NVML's handle), so both are the driver's truth.
 *
 *   gpu_bypass ROAD [SIZE_MIB|COUNT]   ROAD: vmm vmm-retain pool graph stream ipc (SIZE_MIB: the unit, default
 *                                      512) or granularity (COUNT 1-byte allocations, default 100000); probes of
 *                                      the driver's rules: pool-rules (when pools give memory back), module
 *                                      (a PTX module with a SIZE_MIB __device__ array, then one of twice that)
 *   vmm-share[-crash|-fd-only]         VMM memory exported to a POSIX fd by a child process, passed over a unix
 *                                      socket (SCM_RIGHTS), imported and mapped here; the exporter then lets go
 *                                      and exits (crash: exits holding it; fd-only: lets go and exits before
 *                                      the import, the fd in flight alone keeping the memory)
 *   gpu_bypass module-file PATH        a module image file (PTX, cubin, fatbin) as a module and as a library
 *
 * Exit status 0 when the road ran (refusals are results, not failures), 1 on a setup failure, 2 on bad usage. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fcsp/cuda_abi.h"
#include "fcsp/nvml_abi.h"

extern char **environ;

#define MiB (1ull << 20)

#define CUDA_FNS(X)                                                                                                 \
    X(cuInit, (unsigned int))                                                                                       \
    X(cuGetErrorName, (CUresult, const char **))                                                                    \
    X(cuDeviceGetCount, (int *))                                                                                    \
    X(cuDevicePrimaryCtxRetain, (CUcontext *, CUdevice))                                                            \
    X(cuCtxSetCurrent, (CUcontext))                                                                                 \
    X(cuCtxSynchronize, (void))                                                                                     \
    X(cuMemGetInfo_v2, (size_t *, size_t *))                                                                        \
    X(cuMemAlloc_v2, (CUdeviceptr *, size_t))                                                                       \
    X(cuMemFree_v2, (CUdeviceptr))                                                                                  \
    X(cuMemCreate, (CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long))        \
    X(cuMemRelease, (CUmemGenericAllocationHandle))                                                                 \
    X(cuMemAddressReserve, (CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long))                        \
    X(cuMemAddressFree, (CUdeviceptr, size_t))                                                                      \
    X(cuMemMap, (CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long))                    \
    X(cuMemUnmap, (CUdeviceptr, size_t))                                                                            \
    X(cuMemRetainAllocationHandle, (CUmemGenericAllocationHandle *, void *))                                        \
    X(cuMemSetAccess, (CUdeviceptr, size_t, const CUmemAccessDesc *, size_t))                                       \
    X(cuMemGetAllocationGranularity, (size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags))     \
    X(cuStreamCreate, (CUstream *, unsigned int))                                                                   \
    X(cuStreamSynchronize, (CUstream))                                                                              \
    X(cuMemAllocAsync, (CUdeviceptr *, size_t, CUstream))                                                           \
    X(cuMemAllocFromPoolAsync, (CUdeviceptr *, size_t, CUmemoryPool, CUstream))                                     \
    X(cuMemFreeAsync, (CUdeviceptr, CUstream))                                                                      \
    X(cuMemPoolCreate, (CUmemoryPool *, const CUmemPoolProps *))                                                    \
    X(cuMemPoolDestroy, (CUmemoryPool))                                                                             \
    X(cuMemPoolTrimTo, (CUmemoryPool, size_t))                                                                      \
    X(cuMemPoolSetAttribute, (CUmemoryPool, CUmemPool_attribute, void *))                                          \
    X(cuMemPoolGetAttribute, (CUmemoryPool, CUmemPool_attribute, void *))                                          \
    X(cuDeviceGetDefaultMemPool, (CUmemoryPool *, CUdevice))                                                        \
    X(cuGraphCreate, (CUgraph *, unsigned int))                                                                     \
    X(cuGraphDestroy, (CUgraph))                                                                                    \
    X(cuGraphAddMemAllocNode, (CUgraphNode *, CUgraph, const CUgraphNode *, size_t, CUDA_MEM_ALLOC_NODE_PARAMS *))  \
    X(cuGraphAddMemFreeNode, (CUgraphNode *, CUgraph, const CUgraphNode *, size_t, CUdeviceptr))                    \
    X(cuGraphInstantiateWithFlags, (CUgraphExec *, CUgraph, unsigned long long))                                    \
    X(cuGraphLaunch, (CUgraphExec, CUstream))                                                                       \
    X(cuGraphExecDestroy, (CUgraphExec))                                                                            \
    X(cuDeviceGraphMemTrim, (CUdevice))                                                                             \
    X(cuDeviceGetGraphMemAttribute, (CUdevice, CUgraphMem_attribute, void *))                                       \
    X(cuStreamBeginCapture_v2, (CUstream, CUstreamCaptureMode))                                                     \
    X(cuStreamEndCapture, (CUstream, CUgraph *))                                                                    \
    X(cuIpcGetMemHandle, (CUipcMemHandle *, CUdeviceptr))                                                           \
    X(cuIpcOpenMemHandle_v2, (CUdeviceptr *, CUipcMemHandle, unsigned int))                                         \
    X(cuIpcCloseMemHandle, (CUdeviceptr))                                                                           \
    X(cuModuleLoadData, (CUmodule *, const void *))                                                                 \
    X(cuModuleUnload, (CUmodule))                                                                                   \
    X(cuModuleLoad, (CUmodule *, const char *))                                                                     \
    X(cuLibraryLoadFromFile,                                                                                        \
      (CUlibrary *, const char *, CUjit_option *, void **, unsigned int, CUlibraryOption *, void **, unsigned int)) \
    X(cuLibraryUnload, (CUlibrary))                                                                                 \
    X(cuMemExportToShareableHandle, (void *, CUmemGenericAllocationHandle, CUmemAllocationHandleType, unsigned long long)) \
    X(cuMemImportFromShareableHandle, (CUmemGenericAllocationHandle *, void *, CUmemAllocationHandleType))

#define DECLARE(name, params) static CUresult(*name) params;
CUDA_FNS(DECLARE)

static nvmlReturn_t (*nvml_init)(void);
static nvmlReturn_t (*nvml_handle)(unsigned int, nvmlDevice_t *);
static nvmlReturn_t (*nvml_procs)(nvmlDevice_t, unsigned int *, nvmlProcessInfo_v1_t *);
static nvmlReturn_t (*nvml_mem)(nvmlDevice_t, nvmlMemory_t *);

static const char *g_road;
static CUcontext g_ctx[2];

static const char *err(CUresult rc)
{
    const char *s = NULL;
    return cuGetErrorName && cuGetErrorName(rc, &s) == CUDA_SUCCESS && s ? s : "CUDA_ERROR_UNKNOWN";
}

/* NVML's figure for this process on dev (0 when it lists none) and the device's used memory. */
static void device_used(int dev, uint64_t *mine, uint64_t *total)
{
    nvmlDevice_t h;
    nvmlProcessInfo_v1_t p[64];
    unsigned int n = 64;
    nvmlMemory_t m;
    *mine = *total = 0;
    if (!nvml_handle || nvml_handle((unsigned)dev, &h) != NVML_SUCCESS)
        return;
    if (nvml_procs(h, &n, p) == NVML_SUCCESS)
        for (unsigned int i = 0; i < n; i++)
            if (p[i].pid == (unsigned int)getpid())
                *mine = p[i].usedGpuMemory;
    if (nvml_mem(h, &m) == NVML_SUCCESS)
        *total = m.used;
}

static void step_on(int dev, const char *what, CUresult rc)
{
    size_t free_b = 0, total_b = 0;
    if (cuCtxSetCurrent(g_ctx[dev]) == CUDA_SUCCESS)
        cuMemGetInfo_v2(&free_b, &total_b);
    uint64_t mine, total;
    device_used(dev, &mine, &total);
    printf("step road=%s what=%s dev_index=%d rc=%s fcsp=%" PRIu64 " dev=%" PRIu64 " devtotal=%" PRIu64 "\n", g_road,
           what, dev, err(rc), (uint64_t)(total_b - free_b), mine, total);
    fflush(stdout);
    cuCtxSetCurrent(g_ctx[0]);
}

static void step(const char *what, CUresult rc)
{
    step_on(0, what, rc);
}

static int setup(int ndev_wanted)
{
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (cuda == NULL) {
        fprintf(stderr, "gpu_bypass: cannot load libcuda.so.1: %s\n", dlerror());
        return -1;
    }
#define RESOLVE(name, params)                                                                                       \
    if ((name = (CUresult(*) params)dlsym(cuda, #name)) == NULL) {                                                  \
        fprintf(stderr, "gpu_bypass: libcuda.so.1 has no %s\n", #name);                                             \
        return -1;                                                                                                  \
    }
    CUDA_FNS(RESOLVE)
    /* NVML's own functions, looked up in its handle with glibc's dlsym (a preloaded fcsp wraps dlsym and exports
     * NVML wrappers; a handle lookup starts at the library itself): the driver's figures, whatever is preloaded */
    void *(*sym)(void *, const char *) = (void *(*)(void *, const char *))dlvsym(RTLD_DEFAULT, "dlsym", "GLIBC_2.34");
    if (sym == NULL)
        sym = (void *(*)(void *, const char *))dlvsym(RTLD_DEFAULT, "dlsym", "GLIBC_2.2.5");
    void *nvml = sym ? dlopen("libnvidia-ml.so.1", RTLD_NOW) : NULL;
    if (nvml) {
        nvml_init = (nvmlReturn_t(*)(void))sym(nvml, "nvmlInit_v2");
        nvml_handle = (nvmlReturn_t(*)(unsigned int, nvmlDevice_t *))sym(nvml, "nvmlDeviceGetHandleByIndex_v2");
        nvml_procs = (nvmlReturn_t(*)(nvmlDevice_t, unsigned int *, nvmlProcessInfo_v1_t *))sym(
            nvml, "nvmlDeviceGetComputeRunningProcesses");
        nvml_mem = (nvmlReturn_t(*)(nvmlDevice_t, nvmlMemory_t *))sym(nvml, "nvmlDeviceGetMemoryInfo");
        if (!nvml_init || !nvml_handle || !nvml_procs || !nvml_mem || nvml_init() != NVML_SUCCESS)
            nvml_handle = NULL;
    }
    if (nvml_handle == NULL)
        fprintf(stderr, "gpu_bypass: NVML unavailable: dev and devtotal read 0\n");
    int n = 0;
    if (cuInit(0) != CUDA_SUCCESS || cuDeviceGetCount(&n) != CUDA_SUCCESS || n < ndev_wanted) {
        fprintf(stderr, "gpu_bypass: need %d device(s), found %d\n", ndev_wanted, n);
        return -1;
    }
    for (int d = 0; d < ndev_wanted; d++)
        if (cuDevicePrimaryCtxRetain(&g_ctx[d], d) != CUDA_SUCCESS)
            return -1;
    return cuCtxSetCurrent(g_ctx[0]) == CUDA_SUCCESS ? 0 : -1;
}

/* ---- roads ---- */

/* Pinned device memory on GPU 0, shareable as types says; *unit rounded up to the driver's granularity. */
static int vmm_prop(CUmemAllocationProp *prop, CUmemAllocationHandleType types, uint64_t *unit)
{
    *prop = (CUmemAllocationProp){0};
    prop->type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop->requestedHandleTypes = types;
    prop->location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop->location.id = 0;
    size_t gran = 0;
    if (cuMemGetAllocationGranularity(&gran, prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM) != CUDA_SUCCESS || !gran)
        return 1;
    *unit = (*unit + gran - 1) / gran * gran;
    return 0;
}

/* cuMemCreate -> cuMemMap -> cuMemRelease, eight times: the handles are gone, the memory is not. */
static int road_vmm(uint64_t unit)
{
    CUmemAllocationProp prop;
    if (vmm_prop(&prop, CU_MEM_HANDLE_TYPE_NONE, &unit) != 0)
        return 1;
    enum { N = 8 };
    CUdeviceptr base;
    if (cuMemAddressReserve(&base, N * unit, 0, 0, 0) != CUDA_SUCCESS)
        return 1;
    int mapped[N] = {0};
    for (int i = 0; i < N; i++) {
        CUmemGenericAllocationHandle h;
        CUresult rc = cuMemCreate(&h, unit, &prop, 0);
        if (rc == CUDA_SUCCESS) {
            rc = cuMemMap(base + i * unit, unit, 0, h, 0);
            CUmemAccessDesc acc = {{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
            if (rc == CUDA_SUCCESS) {
                mapped[i] = 1;
                cuMemSetAccess(base + i * unit, unit, &acc, 1);
            }
            cuMemRelease(h); /* as CUDA's samples do: the mapping keeps the memory */
        }
        step("create-map-release", rc);
    }
    for (int i = 0; i < N; i++) {
        if (!mapped[i])
            continue;
        step("unmap", cuMemUnmap(base + i * unit, unit));
    }
    cuMemAddressFree(base, N * unit);
    step("end", CUDA_SUCCESS);
    return 0;
}

/* A handle retained from its mapping (cuMemRetainAllocationHandle) is one more reference: the memory stays until
 * every reference is released and the mapping is gone, in any order. */
static int road_vmm_retain(uint64_t unit)
{
    CUmemAllocationProp prop;
    if (vmm_prop(&prop, CU_MEM_HANDLE_TYPE_NONE, &unit) != 0)
        return 1;
    CUdeviceptr base;
    CUmemGenericAllocationHandle h, h2;
    if (cuMemAddressReserve(&base, unit, 0, 0, 0) != CUDA_SUCCESS || cuMemCreate(&h, unit, &prop, 0) != CUDA_SUCCESS)
        return 1;
    step("create", CUDA_SUCCESS);
    step("map", cuMemMap(base, unit, 0, h, 0));
    step("release", cuMemRelease(h));
    step("retain", cuMemRetainAllocationHandle(&h2, (void *)(uintptr_t)base));
    step("unmap", cuMemUnmap(base, unit));
    step("release-retained", cuMemRelease(h2));
    cuMemAddressFree(base, unit);
    step("end", CUDA_SUCCESS);
    return 0;
}

static CUresult pool_cycle(CUmemoryPool pool, uint64_t unit, CUstream s)
{
    CUdeviceptr p;
    CUresult rc = pool ? cuMemAllocFromPoolAsync(&p, unit, pool, s) : cuMemAllocAsync(&p, unit, s);
    if (rc == CUDA_SUCCESS) {
        cuMemFreeAsync(p, s);
        cuStreamSynchronize(s);
    }
    return rc;
}

/* Pools that keep what they are given back: six created pools and the default pool, each allocating and freeing
 * one unit, then a plain allocation; then trims. */
static int road_pool(uint64_t unit)
{
    enum { NPOOLS = 6 };
    CUstream s;
    if (cuStreamCreate(&s, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS)
        return 1;
    cuuint64_t keep_all = UINT64_MAX;
    CUmemoryPool pools[NPOOLS] = {0};
    for (int i = 0; i < NPOOLS; i++) {
        CUmemPoolProps props = {0};
        props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
        props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        props.location.id = 0;
        if (cuMemPoolCreate(&pools[i], &props) != CUDA_SUCCESS ||
            cuMemPoolSetAttribute(pools[i], CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep_all) != CUDA_SUCCESS)
            return 1;
        step("pool-alloc-free", pool_cycle(pools[i], unit, s));
    }
    CUmemoryPool def;
    if (cuDeviceGetDefaultMemPool(&def, 0) != CUDA_SUCCESS ||
        cuMemPoolSetAttribute(def, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep_all) != CUDA_SUCCESS)
        return 1;
    step("default-pool-alloc-free", pool_cycle(NULL, unit, s));
    CUdeviceptr p;
    CUresult rc = cuMemAlloc_v2(&p, unit);
    step("plain-alloc", rc);
    if (rc == CUDA_SUCCESS)
        cuMemFree_v2(p);
    for (int i = 0; i < NPOOLS; i++)
        step("pool-trim", cuMemPoolTrimTo(pools[i], 0));
    step("default-pool-trim", cuMemPoolTrimTo(def, 0));
    rc = cuMemAlloc_v2(&p, unit);
    step("plain-alloc-after-trim", rc);
    if (rc == CUDA_SUCCESS)
        cuMemFree_v2(p);
    /* a pool destroyed while it keeps memory gives it back */
    step("pool-alloc-free", pool_cycle(pools[0], unit, s));
    for (int i = 0; i < NPOOLS; i++)
        step("pool-destroy", cuMemPoolDestroy(pools[i]));
    cuuint64_t zero = 0;
    cuMemPoolSetAttribute(def, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &zero);
    step("end", CUDA_SUCCESS);
    return 0;
}

/* A graph of one allocation node, and a free node after it unless the allocation is to outlive the graph's
 * launch (*dptr: its address). */
static CUresult graph_of(uint64_t unit, int outlive, CUgraphExec *exec, CUgraph *graph, CUdeviceptr *dptr)
{
    CUresult rc = cuGraphCreate(graph, 0);
    if (rc != CUDA_SUCCESS)
        return rc;
    CUDA_MEM_ALLOC_NODE_PARAMS ap;
    memset(&ap, 0, sizeof ap);
    ap.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    ap.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    ap.poolProps.location.id = 0;
    ap.bytesize = unit;
    CUgraphNode a, f;
    if ((rc = cuGraphAddMemAllocNode(&a, *graph, NULL, 0, &ap)) != CUDA_SUCCESS ||
        (!outlive && (rc = cuGraphAddMemFreeNode(&f, *graph, &a, 1, ap.dptr)) != CUDA_SUCCESS))
        return rc;
    *dptr = ap.dptr;
    return cuGraphInstantiateWithFlags(exec, *graph, 0);
}

static void graph_step(const char *what, CUresult rc)
{
    cuuint64_t reserved = 0;
    cuDeviceGetGraphMemAttribute(0, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, &reserved);
    cuuint64_t used = 0;
    cuDeviceGetGraphMemAttribute(0, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT, &used);
    printf("graphmem what=%s reserved=%" PRIu64 " used=%" PRIu64 "\n", what, (uint64_t)reserved, (uint64_t)used);
    step(what, rc);
}

/* Graph memory: four graphs that allocate and free one unit each (they share the pool's memory), two whose unit
 * outlives the launch (they do not), then cuMemAllocAsync captured. */
static int road_graph(uint64_t unit)
{
    enum { NGRAPHS = 4, NOUT = 2 };
    CUstream s;
    if (cuStreamCreate(&s, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS)
        return 1;
    CUgraphExec execs[NGRAPHS] = {0};
    CUgraph graphs[NGRAPHS] = {0};
    CUdeviceptr dptr;
    for (int i = 0; i < NGRAPHS; i++) {
        if (graph_of(unit, 0, &execs[i], &graphs[i], &dptr) != CUDA_SUCCESS)
            return 1;
        graph_step("instantiate", CUDA_SUCCESS);
    }
    for (int i = 0; i < NGRAPHS; i++) {
        CUresult rc = cuGraphLaunch(execs[i], s);
        cuStreamSynchronize(s);
        graph_step("launch", rc);
    }
    graph_step("relaunch-first", cuGraphLaunch(execs[0], s));
    cuStreamSynchronize(s);
    graph_step("trim", cuDeviceGraphMemTrim(0));
    CUresult rc = cuGraphLaunch(execs[NGRAPHS - 1], s);
    cuStreamSynchronize(s);
    graph_step("launch-last-after-trim", rc);
    for (int i = 0; i < NGRAPHS; i++) {
        cuGraphExecDestroy(execs[i]);
        cuGraphDestroy(graphs[i]);
    }
    graph_step("destroy", CUDA_SUCCESS);
    graph_step("trim", cuDeviceGraphMemTrim(0));
    /* allocations that outlive their launch hold the pool's memory: the next graph cannot share it */
    CUgraphExec oexecs[NOUT];
    CUgraph ographs[NOUT];
    CUdeviceptr optr[NOUT];
    int olive[NOUT] = {0};
    for (int i = 0; i < NOUT; i++)
        if (graph_of(unit, 1, &oexecs[i], &ographs[i], &optr[i]) != CUDA_SUCCESS)
            return 1;
    for (int i = 0; i < NOUT; i++) {
        rc = cuGraphLaunch(oexecs[i], s);
        cuStreamSynchronize(s);
        olive[i] = rc == CUDA_SUCCESS;
        graph_step("outliving-launch", rc);
    }
    for (int i = 0; i < NOUT; i++) {
        if (olive[i]) /* the driver frees it into the graph pool (the simulator frees it with its graph) */
            cuMemFreeAsync(optr[i], s);
        cuStreamSynchronize(s);
        cuGraphExecDestroy(oexecs[i]);
        cuGraphDestroy(ographs[i]);
    }
    graph_step("outliving-freed-destroyed", CUDA_SUCCESS);
    graph_step("trim", cuDeviceGraphMemTrim(0));
    /* captured: cuMemAllocAsync + cuMemFreeAsync on a capturing stream become graph memory nodes */
    CUgraph g;
    CUgraphExec e;
    CUdeviceptr p = 0;
    if (cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED) != CUDA_SUCCESS)
        return 1;
    CUresult arc = cuMemAllocAsync(&p, unit, s);
    if (arc == CUDA_SUCCESS)
        cuMemFreeAsync(p, s);
    if (cuStreamEndCapture(s, &g) != CUDA_SUCCESS || cuGraphInstantiateWithFlags(&e, g, 0) != CUDA_SUCCESS)
        return 1;
    graph_step("capture", arc);
    rc = cuGraphLaunch(e, s);
    cuStreamSynchronize(s);
    graph_step("captured-launch", rc);
    cuGraphExecDestroy(e);
    cuGraphDestroy(g);
    graph_step("captured-trim", cuDeviceGraphMemTrim(0));
    step("end", CUDA_SUCCESS);
    return 0;
}

/* Stream-ordered allocation on GPU0's stream and pool while GPU1's context is current. */
static int road_stream(uint64_t unit)
{
    CUstream s0;
    if (cuCtxSetCurrent(g_ctx[0]) != CUDA_SUCCESS || cuStreamCreate(&s0, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS)
        return 1;
    CUmemoryPool pool0;
    if (cuDeviceGetDefaultMemPool(&pool0, 0) != CUDA_SUCCESS)
        return 1;
    CUdeviceptr p[8];
    int n = 0;
    for (int i = 0; i < 4; i++) {
        cuCtxSetCurrent(g_ctx[1]);
        CUresult rc = (i % 2 ? cuMemAllocFromPoolAsync(&p[n], unit, pool0, s0) : cuMemAllocAsync(&p[n], unit, s0));
        if (rc == CUDA_SUCCESS)
            n++;
        step_on(0, i % 2 ? "gpu0-pool-from-gpu1" : "gpu0-stream-from-gpu1", rc);
        step_on(1, "gpu1", CUDA_SUCCESS);
    }
    cuCtxSetCurrent(g_ctx[1]);
    for (int i = 0; i < n; i++)
        cuMemFreeAsync(p[i], s0);
    cuStreamSynchronize(s0);
    step_on(0, "freed", CUDA_SUCCESS);
    step("end", CUDA_SUCCESS);
    return 0;
}

/* Legacy IPC: a child process opens this process's allocation; the memory stays this process's. */
/* ---- VMM memory shared between processes through a POSIX fd (cuMemExportToShareableHandle) ---- */

#define SHARE_SOCK 3 /* the exporter's end of the socket to the importer */

static int send_fd(int sock, int fd)
{
    char byte = 'f';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS; /* the kernel installs a new fd of the same open file description in the receiver */
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    int fd = -1;
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static int wait_byte(int sock)
{
    char c;
    return read(sock, &c, 1) == 1 ? 0 : -1;
}

static int say_byte(int sock)
{
    return write(sock, "x", 1) == 1 ? 0 : -1;
}

/* Reserves unit bytes of address space and maps h there, readable and writable. */
static CUresult map_whole(CUdeviceptr *va, uint64_t unit, CUmemGenericAllocationHandle h)
{
    CUresult rc = cuMemAddressReserve(va, unit, 0, 0, 0);
    if (rc != CUDA_SUCCESS)
        return rc;
    rc = cuMemMap(*va, unit, 0, h, 0);
    CUmemAccessDesc acc = {{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    if (rc == CUDA_SUCCESS)
        rc = cuMemSetAccess(*va, unit, &acc, 1);
    return rc;
}

/* How the exporter leaves: lets go (unmap, release) once the importer has mapped the memory, exits holding it
 * (as if killed), or lets go before the importer even imported (only the fd in flight keeps the memory). */
enum share_mode { SHARE_LET_GO, SHARE_CRASH, SHARE_FD_ONLY };

static enum share_mode share_mode_of(const char *road, const char *prefix)
{
    const char *tail = road + strlen(prefix);
    return strcmp(tail, "-crash") == 0 ? SHARE_CRASH : strcmp(tail, "-fd-only") == 0 ? SHARE_FD_ONLY : SHARE_LET_GO;
}

static const char *share_tail(enum share_mode mode)
{
    return mode == SHARE_CRASH ? "-crash" : mode == SHARE_FD_ONLY ? "-fd-only" : "";
}

/* The exporter (a child of the importer, its socket on fd 3): creates and maps unit bytes, exports them to an fd,
 * sends it, and leaves as mode says. */
static int road_vmm_share_export(uint64_t unit, enum share_mode mode)
{
    CUmemAllocationProp prop;
    if (vmm_prop(&prop, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, &unit) != 0)
        return 1;
    CUmemGenericAllocationHandle h;
    CUresult rc = cuMemCreate(&h, unit, &prop, 0);
    step("export-create", rc);
    if (rc != CUDA_SUCCESS)
        return 1;
    CUdeviceptr va;
    step("export-map", map_whole(&va, unit, h));
    int fd = -1;
    rc = cuMemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
    step("export", rc);
    if (rc != CUDA_SUCCESS)
        return 1;
    if (mode == SHARE_FD_ONLY) {
        cuMemUnmap(va, unit);
        step("export-let-go", cuMemRelease(h));
        cuMemAddressFree(va, unit);
    }
    if (send_fd(SHARE_SOCK, fd) != 0)
        return 1;
    close(fd);
    if (mode == SHARE_FD_ONLY)
        return 0;
    if (wait_byte(SHARE_SOCK) != 0)
        return 1;
    step("export-imported", CUDA_SUCCESS);
    if (mode == SHARE_CRASH)
        _exit(0); /* as if killed: no unmap, no release */
    cuMemUnmap(va, unit);
    step("export-let-go", cuMemRelease(h));
    cuMemAddressFree(va, unit);
    return say_byte(SHARE_SOCK) == 0 && wait_byte(SHARE_SOCK) == 0 ? 0 : 1;
}

/* The importer: starts the exporter, imports its fd, maps the memory, closes the fd, and walks on while the
 * exporter lets go and exits (or lets go first, or exits holding it): the memory stays while this process holds
 * it, or while the fd is open. */
static int road_vmm_share(uint64_t unit, const char *self, enum share_mode mode)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return 1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], SHARE_SOCK); /* dup2 clears close-on-exec on the copy */
    char mib[32];
    snprintf(mib, sizeof mib, "%" PRIu64, (uint64_t)(unit / MiB));
    char child_road[64];
    snprintf(child_road, sizeof child_road, "vmm-share-export%s", share_tail(mode));
    char *argv[] = {(char *)self, child_road, mib, NULL};
    pid_t pid;
    int spawned = posix_spawn(&pid, self, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    if (spawned != 0)
        return 1;
    int status = 1, fd = recv_fd(sv[0]);
    if (mode == SHARE_FD_ONLY) {
        waitpid(pid, &status, 0);
        step("exporter-exited-fd-held", CUDA_SUCCESS);
    }
    CUmemGenericAllocationHandle h;
    CUresult rc = fd >= 0 ? cuMemImportFromShareableHandle(&h, (void *)(intptr_t)fd,
                                                           CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
                          : CUDA_ERROR_INVALID_VALUE;
    step("import", rc);
    CUdeviceptr va = 0;
    if (rc == CUDA_SUCCESS) {
        step("import-map", map_whole(&va, (unit + 2 * MiB - 1) / (2 * MiB) * (2 * MiB), h));
        close(fd);
        step("import-fd-closed", CUDA_SUCCESS);
    }
    if (mode != SHARE_FD_ONLY) {
        say_byte(sv[0]);
        if (mode == SHARE_LET_GO && wait_byte(sv[0]) == 0) {
            step("exporter-let-go", CUDA_SUCCESS);
            say_byte(sv[0]);
        }
        waitpid(pid, &status, 0);
        step("exporter-exited", CUDA_SUCCESS);
    }
    if (rc == CUDA_SUCCESS) {
        uint64_t mapped = (unit + 2 * MiB - 1) / (2 * MiB) * (2 * MiB);
        step("import-unmap", cuMemUnmap(va, mapped));
        step("import-release", cuMemRelease(h));
        cuMemAddressFree(va, mapped);
    }
    close(sv[0]);
    step("end", CUDA_SUCCESS);
    return rc == CUDA_SUCCESS && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

static int road_ipc(uint64_t unit, const char *self)
{
    CUdeviceptr p;
    CUresult rc = cuMemAlloc_v2(&p, unit);
    step("export-alloc", rc);
    if (rc != CUDA_SUCCESS)
        return 1;
    CUipcMemHandle h;
    if (cuIpcGetMemHandle(&h, p) != CUDA_SUCCESS)
        return 1;
    char hex[2 * CU_IPC_HANDLE_SIZE + 1];
    for (int i = 0; i < CU_IPC_HANDLE_SIZE; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)h.reserved[i]);
    char *argv[] = {(char *)self, "ipc-import", hex, NULL};
    pid_t pid;
    int status = 1;
    if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0 || waitpid(pid, &status, 0) != pid)
        return 1;
    step("after-import", CUDA_SUCCESS);
    cuMemFree_v2(p);
    step("end", CUDA_SUCCESS);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

static int road_ipc_import(const char *hex)
{
    CUipcMemHandle h;
    if (strlen(hex) != 2 * CU_IPC_HANDLE_SIZE)
        return 2;
    for (int i = 0; i < CU_IPC_HANDLE_SIZE; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return 2;
        h.reserved[i] = (char)v;
    }
    CUdeviceptr p;
    CUresult rc = cuIpcOpenMemHandle_v2(&p, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
    step("import-open", rc);
    if (rc == CUDA_SUCCESS)
        step("import-close", cuIpcCloseMemHandle(p));
    return rc == CUDA_SUCCESS ? 0 : 1;
}

/* Many 1-byte allocations: how the driver rounds them, next to fcsp's charge. */
static int road_granularity(uint64_t count)
{
    CUdeviceptr *p = calloc(count, sizeof *p);
    if (p == NULL)
        return 1;
    uint64_t n = 0;
    CUresult rc = CUDA_SUCCESS;
    while (n < count && (rc = cuMemAlloc_v2(&p[n], 1)) == CUDA_SUCCESS)
        n++;
    printf("granularity allocated=%" PRIu64 " asked=%" PRIu64 "\n", n, count);
    step("tiny-allocs", rc);
    for (uint64_t i = 0; i < n; i++)
        cuMemFree_v2(p[i]);
    free(p);
    step("end", CUDA_SUCCESS);
    return 0;
}

static void pool_report(const char *what, CUmemoryPool pool)
{
    cuuint64_t reserved = 0, used = 0;
    cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &reserved);
    cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used);
    printf("poolmem what=%s reserved=%" PRIu64 " used=%" PRIu64 "\n", what, (uint64_t)reserved, (uint64_t)used);
    step(what, CUDA_SUCCESS);
}

/* When does a pool give memory back? (release threshold 0 and maximal; free, synchronisation, trim) and how does
 * a pool round what it reserves? */
static int road_pool_rules(uint64_t unit)
{
    CUstream s;
    CUmemoryPool def;
    if (cuStreamCreate(&s, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS || cuDeviceGetDefaultMemPool(&def, 0) != CUDA_SUCCESS)
        return 1;
    cuuint64_t zero = 0, keep_all = UINT64_MAX;
    cuMemPoolSetAttribute(def, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &zero);
    CUdeviceptr p;
    if (cuMemAllocAsync(&p, unit, s) != CUDA_SUCCESS)
        return 1;
    pool_report("t0-allocated", def);
    cuMemFreeAsync(p, s);
    pool_report("t0-freed-before-sync", def);
    cuStreamSynchronize(s);
    pool_report("t0-after-sync", def);
    if (cuMemAllocAsync(&p, 1, s) != CUDA_SUCCESS)
        return 1;
    pool_report("t0-one-byte", def);
    cuMemFreeAsync(p, s);
    cuStreamSynchronize(s);
    cuMemPoolSetAttribute(def, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep_all);
    if (cuMemAllocAsync(&p, unit, s) != CUDA_SUCCESS)
        return 1;
    cuMemFreeAsync(p, s);
    cuStreamSynchronize(s);
    pool_report("tmax-after-sync", def);
    cuCtxSynchronize();
    pool_report("tmax-after-ctx-sync", def);
    cuMemPoolTrimTo(def, 0);
    pool_report("tmax-after-trim", def);
    cuMemPoolSetAttribute(def, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &zero);
    step("end", CUDA_SUCCESS);
    return 0;
}

/* A PTX module with a __device__ array of bytes bytes. */
static CUresult load_ptx_array(CUmodule *m, uint64_t bytes)
{
    char ptx[512];
    snprintf(ptx, sizeof ptx,
             ".version 8.0\n.target sm_90\n.address_size 64\n.visible .global .align 8 .b8 big[%" PRIu64
             "];\n.visible .entry touch()\n{\n\tret;\n}\n",
             bytes);
    return cuModuleLoadData(m, ptx);
}

/* Modules whose PTX declares a large __device__ array: what loading one costs the device, and a second one twice
 * as large (past a cap of up to three units: refused before the driver loads it). */
static int road_module(uint64_t unit)
{
    CUmodule m, big;
    CUresult rc = load_ptx_array(&m, unit);
    step("load", rc);
    CUresult rc2 = load_ptx_array(&big, 2 * unit);
    step("load-past-cap", rc2);
    if (rc2 == CUDA_SUCCESS)
        step("unload-past-cap", cuModuleUnload(big));
    if (rc == CUDA_SUCCESS)
        step("unload", cuModuleUnload(m));
    step("end", CUDA_SUCCESS);
    return 0;
}

/* A module image from a file (PTX, cubin or fatbin), loaded as a module (cuModuleLoad) and as a library
 * (cuLibraryLoadFromFile, with the context current). */
static int road_module_file(const char *path)
{
    CUmodule m;
    CUresult rc = cuModuleLoad(&m, path);
    step("load", rc);
    if (rc == CUDA_SUCCESS)
        step("unload", cuModuleUnload(m));
    CUlibrary lib;
    rc = cuLibraryLoadFromFile(&lib, path, NULL, NULL, 0, NULL, NULL, 0);
    step("library-load", rc);
    if (rc == CUDA_SUCCESS)
        step("library-unload", cuLibraryUnload(lib));
    step("end", CUDA_SUCCESS);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: gpu_bypass vmm|vmm-retain|pool|pool-rules|module|graph|stream|ipc|vmm-share[-crash|-fd-only]|granularity [SIZE_MIB|COUNT], or module-file PATH\n");
        return 2;
    }
    g_road = argv[1];
    uint64_t arg = argc == 3 ? strtoull(argv[2], NULL, 10) : 0;
    uint64_t unit = (arg ? arg : 512) * MiB;
    int ndev = strcmp(g_road, "stream") == 0 ? 2 : 1;
    if (setup(ndev) != 0)
        return 1;
    if (strcmp(g_road, "ipc-import") != 0)
        step("start", CUDA_SUCCESS);
    if (strcmp(g_road, "pool-rules") == 0)
        return road_pool_rules(unit);
    if (strcmp(g_road, "module") == 0)
        return road_module(unit);
    if (strcmp(g_road, "module-file") == 0 && argc == 3)
        return road_module_file(argv[2]);
    if (strcmp(g_road, "vmm") == 0)
        return road_vmm(unit);
    if (strcmp(g_road, "vmm-retain") == 0)
        return road_vmm_retain(unit);
    if (strcmp(g_road, "pool") == 0)
        return road_pool(unit);
    if (strcmp(g_road, "graph") == 0)
        return road_graph(unit);
    if (strcmp(g_road, "stream") == 0)
        return road_stream(unit);
    if (strcmp(g_road, "ipc") == 0)
        return road_ipc(unit, "/proc/self/exe");
    if (strncmp(g_road, "vmm-share-export", 16) == 0)
        return road_vmm_share_export(unit, share_mode_of(g_road, "vmm-share-export"));
    if (strncmp(g_road, "vmm-share", 9) == 0)
        return road_vmm_share(unit, "/proc/self/exe", share_mode_of(g_road, "vmm-share"));
    if (strcmp(g_road, "ipc-import") == 0 && argc == 3)
        return road_ipc_import(argv[2]);
    if (strcmp(g_road, "granularity") == 0)
        return road_granularity(arg ? arg : 100000);
    fprintf(stderr, "gpu_bypass: unknown road %s\n", g_road);
    return 2;
}
