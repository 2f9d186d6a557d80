/* Legacy IPC (cuIpcGetMemHandle / cuIpcOpenMemHandle / cuIpcCloseMemHandle). The handle names the exporting
 * process and its allocation; the importer maps the same memory, which stays the exporter's: opening it costs the
 * device nothing more, closing it frees nothing. As with the driver, a process cannot open its own handle. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim_cuda.h"

#define IPC_MAGIC 0x6663737049504321ULL /* "fcspIPC!" */

struct ipc_handle {
    uint64_t magic;
    int32_t pid;
    int32_t dev;
    uint64_t addr, bytes;
};
_Static_assert(sizeof(struct ipc_handle) <= CU_IPC_HANDLE_SIZE, "an IPC handle holds the exporter's allocation");

static struct ptr_map g_opened = PTR_MAP_INIT; /* importer side: address -> struct ipc_handle */

SIM_EXPORT CUresult cuIpcGetMemHandle(CUipcMemHandle *pHandle, CUdeviceptr dptr)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    struct sim_alloc *a = ptr_map_get(&g_sim_ptrs, dptr);
    if (pHandle == NULL || a == NULL || a->kind == SIM_ALLOC_MANAGED || a->kind == SIM_ALLOC_ASYNC)
        return CUDA_ERROR_INVALID_VALUE;
    struct ipc_handle h = {IPC_MAGIC, (int32_t)getpid(), a->dev, a->addr, a->bytes};
    memset(pHandle, 0, sizeof *pHandle);
    memcpy(pHandle->reserved, &h, sizeof h);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int Flags)
{
    int dev;
    CUresult rc = sim_current(NULL, &dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct ipc_handle h;
    memcpy(&h, handle.reserved, sizeof h);
    if (pdptr == NULL || h.magic != IPC_MAGIC || h.bytes == 0 || (Flags & ~CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS))
        return CUDA_ERROR_INVALID_VALUE;
    if (h.pid == (int32_t)getpid())
        return CUDA_ERROR_INVALID_CONTEXT; /* the driver refuses a process its own handle */
    struct ipc_handle *kept = malloc(sizeof *kept);
    if (kept == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *kept = h;
    uint64_t addr = sim_va_alloc(SIM_VA_LINEAR, h.dev, h.bytes, 512);
    if (addr == 0 || ptr_map_put(&g_opened, addr, kept) != 0) {
        free(kept);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *pdptr = addr;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuIpcCloseMemHandle(CUdeviceptr dptr)
{
    CUresult rc = sim_require_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    struct ipc_handle *h = ptr_map_take(&g_opened, dptr);
    if (h == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    free(h);
    return CUDA_SUCCESS;
}
