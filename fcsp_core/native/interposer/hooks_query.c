/* What the application sees: the cap as total memory, and max(0, min(cap - used, physical free)) as free. A query
 * never fails because usage is above the cap (a lowered cap, or memory charged before it changed): free is then 0. */
#include <limits.h>

#include "interposer/admission.h"
#include "interposer/gpu_map.h"
#include "interposer/hook_lookup.h"
#include "interposer/real_driver.h"
#include "interposer/state.h"

static void apply_cap(struct fcsp_dev *d, uint64_t *free_bytes, uint64_t *total_bytes)
{
    if (!d)
        return;
    /* relaxed: a reading; the cap may change live and the next query shows it */
    uint64_t cap = atomic_load_explicit(&d->limit_bytes, memory_order_relaxed);
    if (!cap)
        return;
    if (cap < *total_bytes)
        *total_bytes = cap;
    uint64_t used = fcsp_tenant_used(d);
    uint64_t room = used >= *total_bytes ? 0 : *total_bytes - used;
    if (room < *free_bytes)
        *free_bytes = room;
}

static struct fcsp_dev *capped_current(void)
{
    return fcsp_mode() == FCSP_MODE_ENFORCE ? fcsp_dev_current() : NULL;
}

static struct fcsp_dev *capped_ordinal(CUdevice dev)
{
    return fcsp_mode() == FCSP_MODE_ENFORCE ? fcsp_dev_by_ordinal(dev) : NULL;
}

/* Both ABIs of cuMemGetInfo (the 32-bit one's figures were clamped to 4 GiB by the driver; ours only lower). */
#define MEM_GET_INFO(real, free, total, T)                                                                          \
    do {                                                                                                            \
        if (!(real))                                                                                                \
            return CUDA_ERROR_NOT_FOUND;                                                                            \
        CUresult rc_ = (real)(free, total);                                                                         \
        if (rc_ != CUDA_SUCCESS || !(free) || !(total))                                                             \
            return rc_;                                                                                             \
        uint64_t f_ = *(free), t_ = *(total);                                                                       \
        apply_cap(capped_current(), &f_, &t_);                                                                      \
        *(free) = (T)f_;                                                                                            \
        *(total) = (T)t_;                                                                                           \
        return rc_;                                                                                                 \
    } while (0)

FCSP_EXPORT CUresult cuMemGetInfo_v2(size_t *free, size_t *total)
{
    fcsp_pfn_cuMemGetInfo_v2 real = FCSP_REAL(cuMemGetInfo_v2);
    MEM_GET_INFO(real, free, total, size_t);
}

FCSP_EXPORT CUresult cuMemGetInfo(unsigned int *free, unsigned int *total)
{
    fcsp_pfn_cuMemGetInfo real = FCSP_REAL(cuMemGetInfo);
    MEM_GET_INFO(real, free, total, unsigned int);
}

/* Both ABIs of cuDeviceTotalMem: the cap of the device's tenant as its total. */
#define DEVICE_TOTAL_MEM(real, bytes, dev, T)                                                                       \
    do {                                                                                                            \
        if (!(real))                                                                                                \
            return CUDA_ERROR_NOT_FOUND;                                                                            \
        CUresult rc_ = (real)(bytes, dev);                                                                          \
        if (rc_ != CUDA_SUCCESS || !(bytes))                                                                        \
            return rc_;                                                                                             \
        uint64_t f_ = 0, t_ = *(bytes);                                                                             \
        apply_cap(capped_ordinal(dev), &f_, &t_);                                                                   \
        *(bytes) = (T)t_;                                                                                           \
        return rc_;                                                                                                 \
    } while (0)

FCSP_EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    fcsp_pfn_cuDeviceTotalMem_v2 real = FCSP_REAL(cuDeviceTotalMem_v2);
    DEVICE_TOTAL_MEM(real, bytes, dev, size_t);
}

FCSP_EXPORT CUresult cuDeviceTotalMem(unsigned int *bytes, CUdevice dev)
{
    fcsp_pfn_cuDeviceTotalMem real = FCSP_REAL(cuDeviceTotalMem);
    DEVICE_TOTAL_MEM(real, bytes, dev, unsigned int);
}

/* NVML: the same view through nvmlDeviceGetMemoryInfo(_v2); used = total - free (reserved 0). */
static void apply_cap_nvml(nvmlDevice_t device, unsigned long long *total, unsigned long long *free_bytes,
                           unsigned long long *used)
{
    struct fcsp_dev *d = fcsp_mode() == FCSP_MODE_ENFORCE ? fcsp_dev_by_nvml(device) : NULL;
    uint64_t f = *free_bytes, t = *total;
    if (!d || !atomic_load_explicit(&d->limit_bytes, memory_order_relaxed))
        return;
    apply_cap(d, &f, &t);
    *total = t;
    *free_bytes = f;
    *used = t - f;
}

FCSP_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    fcsp_pfn_nvmlDeviceGetMemoryInfo real = FCSP_REAL_NVML(nvmlDeviceGetMemoryInfo);
    if (!real)
        return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t rc = real(device, memory);
    if (rc == NVML_SUCCESS && memory)
        apply_cap_nvml(device, &memory->total, &memory->free, &memory->used);
    return rc;
}

FCSP_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    fcsp_pfn_nvmlDeviceGetMemoryInfo_v2 real = FCSP_REAL_NVML(nvmlDeviceGetMemoryInfo_v2);
    if (!real)
        return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t rc = real(device, memory);
    if (rc == NVML_SUCCESS && memory) {
        unsigned long long used = memory->used;
        apply_cap_nvml(device, &memory->total, &memory->free, &used);
        if (used != memory->used) {
            memory->used = used;
            memory->reserved = 0;
        }
    }
    return rc;
}
