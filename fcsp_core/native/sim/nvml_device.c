/* NVML device queries over the simulated node: identity, memory, utilisation, processes. */
#include <stdint.h>
#include <string.h>

#include "nvml_sim.h"
#include "sim_clock.h"

#define SIM_DEVICE_NAME "fcsp simulated GPU"

struct nvmlDevice_st {
    unsigned int index;
};

static struct nvmlDevice_st g_devices[SIM_MAX_GPUS] = {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}};

int nvml_sim_index(nvmlDevice_t device, nvmlReturn_t *rc)
{
    struct sim_shared *sh = nvml_sim_node();
    if (sh == NULL) {
        *rc = NVML_ERROR_UNINITIALIZED;
        return -1;
    }
    if (device < &g_devices[0] || device >= &g_devices[SIM_MAX_GPUS] || device->index >= sh->ngpus) {
        *rc = NVML_ERROR_INVALID_ARGUMENT;
        return -1;
    }
    *rc = NVML_SUCCESS;
    return (int)device->index;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount)
{
    struct sim_shared *sh = nvml_sim_node();
    if (sh == NULL)
        return NVML_ERROR_UNINITIALIZED;
    if (deviceCount == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = sh->ngpus;
    return NVML_SUCCESS;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *deviceCount)
{
    return nvmlDeviceGetCount_v2(deviceCount);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    struct sim_shared *sh = nvml_sim_node();
    if (sh == NULL)
        return NVML_ERROR_UNINITIALIZED;
    if (device == NULL || index >= sh->ngpus)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = &g_devices[index];
    return NVML_SUCCESS;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    struct sim_shared *sh = nvml_sim_node();
    if (sh == NULL)
        return NVML_ERROR_UNINITIALIZED;
    if (uuid == NULL || device == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned int d = 0; d < sh->ngpus; d++) {
        char buf[48];
        sim_format_uuid(sh, (int)d, buf);
        if (strcmp(buf, uuid) == 0) {
            *device = &g_devices[d];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    nvmlReturn_t rc;
    int d = nvml_sim_index(device, &rc);
    if (d < 0)
        return rc;
    if (index == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *index = (unsigned int)d;
    return NVML_SUCCESS;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minorNumber)
{
    return nvmlDeviceGetIndex(device, minorNumber);
}

static nvmlReturn_t put_string(char *dst, unsigned int length, const char *src)
{
    if (dst == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    size_t n = strlen(src) + 1;
    if (n > length)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, n);
    return NVML_SUCCESS;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    nvmlReturn_t rc;
    int d = nvml_sim_index(device, &rc);
    if (d < 0)
        return rc;
    char buf[48];
    sim_format_uuid(nvml_sim_node(), d, buf);
    return put_string(uuid, length, buf);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    nvmlReturn_t rc;
    if (nvml_sim_index(device, &rc) < 0)
        return rc;
    return put_string(name, length, SIM_DEVICE_NAME);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor)
{
    nvmlReturn_t rc;
    if (nvml_sim_index(device, &rc) < 0)
        return rc;
    if (major == NULL || minor == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *major = 9;
    *minor = 0;
    return NVML_SUCCESS;
}

static nvmlReturn_t memory(nvmlDevice_t device, uint64_t *total, uint64_t *used)
{
    nvmlReturn_t rc;
    int d = nvml_sim_index(device, &rc);
    if (d < 0)
        return rc;
    struct sim_shared *sh = nvml_sim_node();
    sim_mem_stats(sh, d, used, NULL);
    *total = sh->gpu[d].total_bytes;
    return NVML_SUCCESS;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *mem)
{
    uint64_t total = 0, used = 0;
    if (mem == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t rc = memory(device, &total, &used);
    if (rc != NVML_SUCCESS)
        return rc;
    mem->total = total;
    mem->used = used;
    mem->free = used < total ? total - used : 0;
    return NVML_SUCCESS;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *mem)
{
    uint64_t total = 0, used = 0;
    if (mem == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (mem->version != nvmlMemory_v2)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    nvmlReturn_t rc = memory(device, &total, &used);
    if (rc != NVML_SUCCESS)
        return rc;
    mem->total = total;
    mem->reserved = 0;
    mem->used = used;
    mem->free = used < total ? total - used : 0;
    return NVML_SUCCESS;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization)
{
    nvmlReturn_t rc;
    int d = nvml_sim_index(device, &rc);
    if (d < 0)
        return rc;
    if (utilization == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    struct sim_shared *sh = nvml_sim_node();
    int busy = sim_timeline_busy_sms(sh, d, sim_now_ns());
    utilization->gpu = (unsigned int)(busy * 100 / (int)sh->gpu[d].sms); /* SMs busy right now */
    utilization->memory = 0;
    return NVML_SUCCESS;
}

/* The processes with a context or memory on GPU d: fills up to cap of pids/bytes, returns how many there are.
 * The process table is copied under its lock and checked against /proc outside it: a reader (the node daemon's
 * audit, several times a second) never holds up the processes that register or allocate. A dead process is left
 * out (the driver frees its memory at exit); its slot is released by the next allocation or memory query. */
static unsigned int list_processes(struct sim_shared *sh, int d, unsigned int cap, unsigned int *pids,
                                   unsigned long long *bytes)
{
    struct sim_proc_id {
        int32_t pid;
        uint32_t ctx_mask;
        uint64_t start_time;
        int slot;
    } ids[SIM_MAX_PROCS];
    int nids = 0;
    sim_robust_lock(&sh->procs_mu);
    for (int i = 0; i < SIM_MAX_PROCS; i++) {
        struct sim_proc *p = &sh->procs[i];
        if (p->pid != 0)
            ids[nids++] = (struct sim_proc_id){p->pid, p->ctx_mask, p->start_time, i};
    }
    pthread_mutex_unlock(&sh->procs_mu);
    unsigned int n = 0;
    for (int k = 0; k < nids; k++) {
        sim_gpu_lock(&sh->gpu[d]);
        struct sim_proc *p = &sh->procs[ids[k].slot];
        /* the slot may have changed hands since the copy: count it only while it is still that process's */
        uint64_t live = (p->pid == ids[k].pid && p->start_time == ids[k].start_time) ? p->live_bytes[d] : 0;
        sim_gpu_unlock(&sh->gpu[d]);
        if (!(ids[k].ctx_mask & (1u << d)) && live == 0)
            continue;
        if (!sim_pid_alive(ids[k].pid, ids[k].start_time))
            continue;
        if (n < cap) {
            pids[n] = (unsigned int)ids[k].pid;
            bytes[n] = live;
        }
        n++;
    }
    return n;
}

/* Shared part of the three versions; put(i, pid, bytes) fills entry i of the caller's array. */
static nvmlReturn_t processes(nvmlDevice_t device, unsigned int *infoCount, void *infos,
                              void (*put)(void *infos, unsigned int i, unsigned int pid, unsigned long long bytes))
{
    nvmlReturn_t rc;
    int d = nvml_sim_index(device, &rc);
    if (d < 0)
        return rc;
    if (infoCount == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int pids[SIM_MAX_PROCS];
    unsigned long long bytes[SIM_MAX_PROCS];
    unsigned int n = list_processes(nvml_sim_node(), d, SIM_MAX_PROCS, pids, bytes);
    if (infos == NULL || *infoCount < n) {
        *infoCount = n;
        return n == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned int i = 0; i < n; i++)
        put(infos, i, pids[i], bytes[i]);
    *infoCount = n;
    return NVML_SUCCESS;
}

static void put_v1(void *infos, unsigned int i, unsigned int pid, unsigned long long bytes)
{
    nvmlProcessInfo_v1_t *p = (nvmlProcessInfo_v1_t *)infos + i;
    p->pid = pid;
    p->usedGpuMemory = bytes;
}

static void put_v2(void *infos, unsigned int i, unsigned int pid, unsigned long long bytes)
{
    nvmlProcessInfo_v2_t *p = (nvmlProcessInfo_v2_t *)infos + i;
    p->pid = pid;
    p->usedGpuMemory = bytes;
    p->gpuInstanceId = 0xFFFFFFFFu; /* not a MIG device */
    p->computeInstanceId = 0xFFFFFFFFu;
}

static void put_v3(void *infos, unsigned int i, unsigned int pid, unsigned long long bytes)
{
    nvmlProcessInfo_t *p = (nvmlProcessInfo_t *)infos + i;
    p->pid = pid;
    p->usedGpuMemory = bytes;
    p->gpuInstanceId = 0xFFFFFFFFu;
    p->computeInstanceId = 0xFFFFFFFFu;
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int *infoCount,
                                                              nvmlProcessInfo_v1_t *infos)
{
    return processes(device, infoCount, infos, put_v1);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *infoCount,
                                                                 nvmlProcessInfo_v2_t *infos)
{
    return processes(device, infoCount, infos, put_v2);
}

NVML_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                                 nvmlProcessInfo_t *infos)
{
    return processes(device, infoCount, infos, put_v3);
}
