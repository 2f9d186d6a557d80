/* Accounting of memory the driver keeps beyond one allocation call and its free: VMM handles released while mapped
 * (acct_vmm.c), memory pools' reservations (acct_pool.c) and graph memory (acct_graph.c). All of it is process-local
 * bookkeeping on those paths only, under their own locks; cuMemAlloc/cuMemFree never touch it. */
#ifndef FCSP_ACCT_H
#define FCSP_ACCT_H

#include <stdint.h>

#include "fcsp/cuda_abi.h"
#include "interposer/gpu_map.h"
#include "interposer/real_driver.h"

/* The device to charge an allocation on ordinal to; NULL, with *refuse set, for a device of the driver that fcsp
 * cannot identify (the node region tracks 16 GPUs, a process 64 ordinals): a process that asked for caps is refused
 * there (CUDA_ERROR_OUT_OF_MEMORY) rather than left uncapped. *refuse stays 0 where the driver itself would fail
 * (no such device). */
struct fcsp_dev *fcsp_dev_to_charge(CUdevice ordinal, int *refuse);
/* The same for the current context's device (no context: NULL, not refused: the driver answers). */
struct fcsp_dev *fcsp_dev_current_to_charge(int *refuse);

/* Make *charged (what this process has charged on d for one reservation) equal reserved, what the driver reports
 * it holds: give back the surplus, charge the shortfall (memory the driver already holds is charged, cap or not). */
void fcsp_settle(struct fcsp_dev *d, uint64_t *charged, uint64_t reserved);

/* ---- VMM: a physical allocation is charged from cuMemCreate until it has neither a reference nor a mapping ---- */
/* A handle of size bytes just created and charged on ordinal: 0, or -1 if it cannot be tracked. */
int fcsp_vmm_created(CUmemGenericAllocationHandle handle, uint64_t size, int ordinal);
CUresult fcsp_vmm_release(fcsp_pfn_cuMemRelease real, CUmemGenericAllocationHandle handle);
CUresult fcsp_vmm_retain(fcsp_pfn_cuMemRetainAllocationHandle real, CUmemGenericAllocationHandle *handle,
                         void *addr);
CUresult fcsp_vmm_map(fcsp_pfn_cuMemMap real, CUdeviceptr ptr, size_t size, size_t offset,
                      CUmemGenericAllocationHandle handle, unsigned long long flags);
CUresult fcsp_vmm_unmap(fcsp_pfn_cuMemUnmap real, CUdeviceptr ptr, size_t size);

/* ---- pools: what a pool keeps reserved is charged, not only what it hands out ---- */
/* The stream-ordered allocation call: cuMemAllocAsync (pool NULL: the current pool of the stream's device) or
 * cuMemAllocFromPoolAsync; per_thread: the _ptsz form. */
struct fcsp_pool_call {
    void *real;
    int from_pool;
    int per_thread;
};
CUresult fcsp_pool_alloc(const struct fcsp_pool_call *c, CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                         CUstream stream);
/* cuMemFreeAsync of dptr: 1 and *rc if dptr came from fcsp_pool_alloc (the call is made), 0 otherwise. */
int fcsp_pool_free(CUresult (*real)(CUdeviceptr, CUstream), CUdeviceptr dptr, CUstream stream, CUresult *rc);
CUresult fcsp_pool_created(CUresult rc, CUmemoryPool *pool, const CUmemPoolProps *props);
CUresult fcsp_pool_trimmed(CUresult rc, CUmemoryPool pool);
CUresult fcsp_pool_destroy(fcsp_pfn_cuMemPoolDestroy real, CUmemoryPool pool);

/* ---- graph memory: charged from the launch that materialises it until trim or destruction gives it back ---- */
CUresult fcsp_gmem_instantiated(CUresult rc, CUgraphExec *exec, CUgraph graph);
/* A graph launch (per_thread: through cuGraphLaunch_ptsz); one into a capturing stream allocates nothing now. */
CUresult fcsp_gmem_launch(fcsp_pfn_cuGraphLaunch real, CUgraphExec exec, CUstream stream, int per_thread);
CUresult fcsp_gmem_exec_destroy(fcsp_pfn_cuGraphExecDestroy real, CUgraphExec exec);
CUresult fcsp_gmem_trim(fcsp_pfn_cuDeviceGraphMemTrim real, CUdevice dev);

/* Fork child: forget the parent's bookkeeping (each file's part, then all of it). */
void fcsp_vmm_reset(void);
void fcsp_pool_reset(void);
void fcsp_gmem_reset(void);
void fcsp_module_reset(void); /* hooks_module.c */
void fcsp_acct_reset(void);

#endif
