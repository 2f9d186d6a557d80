/* Internals of the simulated libcuda.so.1 shared between its files. */
#ifndef FCSP_SIM_CUDA_H
#define FCSP_SIM_CUDA_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sim_config.h"
#include "sim_exports.h"
#include "../common/ptr_map.h"
#include "sim_state.h"

#define SIM_DRIVER_VERSION 13000
#define SIM_GRANULARITY (2ULL << 20)
#define SIM_POOL_MIN_GROWTH (32ULL << 20) /* the least a memory pool grows by */
#define SIM_QUEUE_DEPTH 1024

/* ---- init.c: configuration and the node, valid once cuInit succeeded ---- */
extern struct sim_config g_sim_cfg;
extern struct sim_shared *g_sim_sh;
extern int g_sim_slot; /* this process's row in the process table */
extern int g_sim_ngpus;

int sim_is_initialized(void);
CUresult sim_require_init(void);
CUresult sim_check_device(CUdevice dev); /* init + valid ordinal */
CUresult sim_charge(int dev, uint64_t bytes); /* CUDA_SUCCESS or CUDA_ERROR_OUT_OF_MEMORY */
void sim_uncharge(int dev, uint64_t bytes);

/* ---- contexts.c ---- */
/* The current context of the calling thread and its device: CUDA_ERROR_INVALID_CONTEXT without one. */
CUresult sim_current(CUcontext *ctx, int *dev);
/* Device of ctx (NULL: the current context). */
CUresult sim_ctx_device(CUcontext ctx, int *dev);

/* ---- va.c: fake device address space of this process ---- */
enum sim_va_region { SIM_VA_LINEAR, SIM_VA_LOW32, SIM_VA_RESERVE, SIM_VA_HANDLE };
/* Returns an aligned, unused range of the region (for SIM_VA_LINEAR, of GPU dev), or 0 when it is exhausted. */
uint64_t sim_va_alloc(enum sim_va_region region, int dev, uint64_t size, uint64_t align);

/* ---- allocs.c: every live allocation of this process ---- */
enum sim_alloc_kind {
    SIM_ALLOC_MEM,
    SIM_ALLOC_PITCH,
    SIM_ALLOC_MANAGED,
    SIM_ALLOC_ASYNC,
    SIM_ALLOC_ARRAY,
    SIM_ALLOC_MIPMAP
};

struct CUmemPoolHandle_st;

struct sim_alloc {
    uint64_t addr; /* device address, or the array handle */
    uint64_t bytes; /* what it costs on the GPU */
    int dev;
    enum sim_alloc_kind kind;
    CUcontext ctx;
    struct CUmemPoolHandle_st *pool; /* SIM_ALLOC_ASYNC */
    void *host; /* managed memory is host-backed */
};

/* Device pointers (linear, pitch, managed, async) */
extern struct ptr_map g_sim_ptrs;
/* Arrays and mipmapped arrays, by handle */
extern struct ptr_map g_sim_arrays;

/* Charges, records and returns a new allocation; *out gets the address. */
CUresult sim_alloc_linear(int dev, CUcontext ctx, uint64_t bytes, enum sim_alloc_kind kind, int low32,
                          uint64_t *out);
/* Frees a linear/pitch/managed/async allocation by its address (CUDA_ERROR_INVALID_VALUE if unknown). */
CUresult sim_free_linear(uint64_t addr);
/* CUDA_SUCCESS if [addr, addr+len) lies in one live allocation or mapping of this process. */
CUresult sim_check_range(uint64_t addr, uint64_t len);
/* Frees what ctx owns (cuCtxDestroy, cuDevicePrimaryCtxReset). */
void sim_free_context_allocs(CUcontext ctx);

/* ---- pools.c ---- */
CUresult sim_pool_free(struct sim_alloc *a); /* returns an async allocation to its pool */

/* ---- vmm.c ---- */
int sim_vmm_contains(uint64_t addr, uint64_t len);

/* ---- streams.c / exec.c ---- */
struct sim_item;

/* CUstream_st.builtin */
#define SIM_STREAM_CREATED 0
#define SIM_STREAM_LEGACY 1
#define SIM_STREAM_PER_THREAD 2

struct CUstream_st {
    uint32_t magic;
    int dev;
    CUcontext ctx;
    unsigned int flags;
    int priority;
    int builtin; /* SIM_STREAM_*: created, or the legacy or a per-thread default stream */
    int destroyed;
    struct sim_item *head, *tail; /* work not yet placed on the timeline */
    int pending;
    int has_placed;
    int64_t placed_start, placed_end; /* last placed work */
    struct CUstream_st *next; /* all streams */
    /* stream capture: graphs.c's, under its lock */
    struct CUgraph_st *cap_graph; /* the graph being captured into; NULL: not capturing */
    CUstreamCaptureStatus cap_status;
    CUstreamCaptureMode cap_mode;
    pthread_t cap_thread; /* the thread that began the capture */
    uint64_t cap_id;
    int cap_into_user_graph; /* begun by cuStreamBeginCaptureToGraph */
    CUgraphNode cap_deps[1]; /* what the next captured node depends on (cuStreamGetCaptureInfo) */
    size_t cap_ndeps;
    struct CUstream_st *cap_next; /* all capturing streams */
};

enum sim_event_state { SIM_EVENT_NEVER, SIM_EVENT_PENDING, SIM_EVENT_TIMED };

struct CUevent_st {
    uint32_t magic;
    unsigned int flags;
    enum sim_event_state state;
    int64_t time_ns;
    uint64_t seq; /* bumped by every record */
    int refs; /* queued items that point here */
    int destroyed;
};

/* Resolves a stream handle (NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD or created); per_thread: the _ptsz
 * form was called, so NULL means the per-thread stream. */
CUresult sim_stream_resolve(CUstream h, int per_thread, struct CUstream_st **out);

struct CUstream_st *sim_exec_new_stream(int dev, CUcontext ctx, unsigned int flags, int priority, int builtin);
void sim_exec_destroy_stream(struct CUstream_st *s);
/* Queues work of dur_ns that needs nsms SMs (0: a copy, no SMs). Blocks while the stream has
 * SIM_QUEUE_DEPTH items queued ahead. */
void sim_exec_enqueue(struct CUstream_st *s, int nsms, int64_t dur_ns);
void sim_exec_record(struct CUevent_st *ev, struct CUstream_st *s);
void sim_exec_wait_event(struct CUstream_st *s, struct CUevent_st *ev);
void sim_exec_sync_stream(struct CUstream_st *s);
int sim_exec_stream_busy(struct CUstream_st *s);
void sim_exec_sync_device(int dev);
void sim_exec_sync_event(struct CUevent_st *ev);
int sim_exec_event_busy(struct CUevent_st *ev);
CUresult sim_exec_elapsed(float *ms, struct CUevent_st *a, struct CUevent_st *b);
void sim_exec_destroy_event(struct CUevent_st *ev);

/* ---- launch.c: every kernel launch, plain or a graph's kernel node, goes through sim_kernel_enqueue ---- */
struct sim_kernel {
    CUfunction f;
    unsigned int grid[3], block[3];
    unsigned int shmem;
    int cooperative;
};
/* Checks k for device dev and models it: it occupies *nsms SMs for *dur_ns. */
CUresult sim_kernel_model(const struct sim_kernel *k, int dev, int *nsms, int64_t *dur_ns);
/* Checks and models k and queues it on s's timeline. */
CUresult sim_kernel_enqueue(struct CUstream_st *s, const struct sim_kernel *k);

/* ---- graph_mem.c: graph memory (allocation nodes), materialised at launch ---- */
struct sim_gmem_node {
    int dev;
    uint64_t bytes;
    uint64_t addr; /* the address the allocation node hands out (the free node's: what it frees) */
};
/* What an executable graph allocates. Under graph_mem.c's lock. */
struct sim_gmem_exec {
    int dev;
    uint64_t bytes; /* its allocation nodes, all on dev */
    uint64_t out_bytes; /* those no free node of the graph gives back: they outlive its launch */
    int out_live; /* its outliving allocations exist (launched, not destroyed) */
};
/* Adds an allocation (CU_GRAPH_NODE_TYPE_MEM_ALLOC) node of e; a graph's allocation nodes must all be on one device
 * (CUDA_ERROR_NOT_SUPPORTED otherwise). out: no free node of the graph frees it. */
CUresult sim_gmem_exec_add(struct sim_gmem_exec *e, const struct sim_gmem_node *m, int out);
/* cuGraphLaunch: e's allocations come from its device's graph pool, which grows (charged) only past what it
 * reserves and does not hold for allocations still live. */
CUresult sim_gmem_launch(struct sim_gmem_exec *e);
/* cuGraphExecDestroy: e's outliving allocations go back to the pool, reserved until cuDeviceGraphMemTrim. */
void sim_gmem_exec_gone(struct sim_gmem_exec *e);

/* ---- graphs.c: stream capture and graphs ---- */
enum sim_capture_kind {
    SIM_CAPTURE_KERNEL, /* recorded as a kernel node */
    SIM_CAPTURE_MEMCPY, /* recorded as a copy node taking dur_ns */
    SIM_CAPTURE_MEMSET, /* recorded as a memset node taking dur_ns */
    SIM_CAPTURE_GRAPH, /* a graph launch: its nodes are recorded */
    SIM_CAPTURE_NOTHING, /* event record, event wait: accepted, nothing recorded */
    SIM_CAPTURE_SYNC /* waits for the stream (synchronize, query, synchronous copy): refused */
};
struct sim_capture_op {
    enum sim_capture_kind kind;
    const struct sim_kernel *kernel;
    int64_t dur_ns;
    CUgraphExec exec;
};
/* Graph memory nodes: add one to a graph (explicit cuGraphAddMem*Node), read an allocation node's parameters. */
CUresult sim_graph_add_mem_node(CUgraphNode *out, CUgraph h, const CUgraphNode *deps, size_t ndeps,
                                CUgraphNodeType type, const struct sim_gmem_node *m);
CUresult sim_graph_mem_node_get(CUgraphNode h, CUgraphNodeType type, struct sim_gmem_node *out);
/* cuMemAllocAsync / cuMemFreeAsync on a capturing stream: 1 and *rc when recorded as an allocation node (m->addr
 * set) or a free node of m->addr (or refused: an invalidated capture); 0 when s does not capture. */
int sim_capture_mem(struct CUstream_st *s, CUgraphNodeType type, struct sim_gmem_node *m, CUresult *rc);
/* Streams capturing in this process (begun and not yet ended). Only a hint that lets operations skip the lock
 * while nothing captures: the capture state itself is read under graphs.c's lock. */
extern atomic_int g_sim_capturing;
int sim_capture_slow(struct CUstream_st *s, const struct sim_capture_op *op, CUresult *rc);
/* Stream capture's say in an operation on s. 0: the operation goes ahead as usual. 1: it is done, *rc is its
 * result: recorded into the capture graph, refused (a synchronising operation on a capturing stream invalidates
 * the capture), or the legacy stream used while a blocking stream of its context captures. */
static inline int sim_capture(struct CUstream_st *s, const struct sim_capture_op *op, CUresult *rc)
{
    /* relaxed: a capture begun by this thread, or by one it synchronised with, is seen (coherence of the
     * increment that happened before); for racing threads the order is unspecified with the real driver too */
    if (atomic_load_explicit(&g_sim_capturing, memory_order_relaxed) == 0)
        return 0;
    return sim_capture_slow(s, op, rc);
}
/* cuCtxSynchronize: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (invalidating them) while streams of dev capture. */
CUresult sim_capture_check_device_sync(int dev);
/* cuStreamDestroy: a capture in progress on s ends, its graph is freed. */
void sim_capture_stream_destroyed(struct CUstream_st *s);
CUresult sim_capture_unsafe_slow(void);
/* A "potentially unsafe" call (cuMemAlloc, cuMemFree, cuEventQuery, cuEventSynchronize, cuStreamQuery and
 * cuStreamSynchronize of a stream that does not capture): CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, invalidating the
 * captures that forbid it, while the calling thread may not make one (see graphs.c), else CUDA_SUCCESS. */
static inline CUresult sim_capture_unsafe_call(void)
{
    /* relaxed: as in sim_capture */
    if (atomic_load_explicit(&g_sim_capturing, memory_order_relaxed) == 0)
        return CUDA_SUCCESS;
    return sim_capture_unsafe_slow();
}

/* ---- events.c ---- */
CUresult sim_event_check(CUevent ev); /* init + a live event of this process */

/* ---- modules.c ---- */
struct CUfunc_st {
    uint32_t magic;
    CUmodule mod;
    char name[SIM_KERNEL_NAME_MAX];
    double wave_us;
};
CUresult sim_function_check(CUfunction f);

#define SIM_MAGIC_CTX 0x43545821u
#define SIM_MAGIC_STREAM 0x53545221u
#define SIM_MAGIC_EVENT 0x45564e21u
#define SIM_MAGIC_POOL 0x504f4f21u
#define SIM_MAGIC_MODULE 0x4d4f4421u
#define SIM_MAGIC_FUNC 0x46554e21u
#define SIM_MAGIC_GRAPH 0x47524621u
#define SIM_MAGIC_GNODE 0x474e4f21u
#define SIM_MAGIC_GEXEC 0x47455821u

#endif
