#include "interposer/gpu_map.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "fcsp/fcsp_api.h"
#include "common/region.h"
#include "interposer/real_driver.h"
#include "interposer/state.h"

struct fcsp_dev fcsp_devs[FCSP_MAX_ORDINALS];
_Atomic int fcsp_sm_possible;

/* NVML handles seen by this process, each resolved to a device entry (its own, ordinal from the visible list). */
#define MAX_NVML 16
static struct {
    _Atomic(nvmlDevice_t) handle; /* set (release) once dev is filled */
    struct fcsp_dev dev;
} nvml_devs[MAX_NVML];

static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;

/* Bounded copy of a UUID string (truncating, always terminated). */
static void copy_uuid(char *dst, const char *src)
{
    size_t n = strnlen(src, FCSP_UUID_LEN - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void format_uuid(const CUuuid *u, char *out)
{
    const unsigned char *b = (const unsigned char *)u->bytes;
    snprintf(out, FCSP_UUID_LEN,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
             b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Under map_lock: the region's GPU entry for uuid, claimed if new. -1 if the region is full or locked too long. */
static int region_gpu_index(const char *uuid, uint64_t total, uint32_t sms)
{
    struct fcsp_region *r = fcsp_g.region.r;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < FCSP_MAX_GPUS; i++) {
            struct fcsp_gpu_entry *g = &r->gpus[i];
            /* acquire: pairs with the release store of READY: uuid and sizes are complete */
            if (atomic_load_explicit(&g->state, memory_order_acquire) == FCSP_GPU_READY &&
                strncmp(g->uuid, uuid, FCSP_UUID_LEN) == 0)
                return i;
        }
        if (pass == 1 || fcsp_region_lock(&fcsp_g.region) != FCSP_OK)
            break;
        int found = -1;
        for (int i = 0; i < FCSP_MAX_GPUS && found < 0; i++) {
            struct fcsp_gpu_entry *g = &r->gpus[i];
            uint32_t st = atomic_load_explicit(&g->state, memory_order_acquire);
            if (st == FCSP_GPU_READY && strncmp(g->uuid, uuid, FCSP_UUID_LEN) == 0)
                found = i;
            else if (st == FCSP_GPU_FREE) {
                copy_uuid(g->uuid, uuid);
                g->total_bytes = total;
                g->sm_count = sms;
                /* release: readers that see READY see the fields above */
                atomic_store_explicit(&g->state, FCSP_GPU_READY, memory_order_release);
                fcsp_region_bump_topology(r);
                found = i;
            }
        }
        fcsp_region_unlock(&fcsp_g.region);
        if (found >= 0)
            return found;
    }
    return -1;
}

/* The tenant's caps on GPU g: the policy's when it has an entry (every process of the tenant writes the same),
 * else those of the first of its processes to use the GPU, set once under the region lock. */
static void tenant_caps(struct fcsp_tenant_gpu *tg, const char *uuid, uint64_t env_mem, uint32_t env_sm,
                        uint64_t *mem, uint32_t *sm)
{
    if (fcsp_g.has_policy_entry) {
        fcsp_policy_limits(&fcsp_g.policy_entry, uuid, mem, sm);
        /* relaxed: readers are the exporter (a mirror) and our own later calls; cap_set (release) orders them for
         * joiners that read it with acquire */
        atomic_store_explicit(&tg->limit_bytes, *mem, memory_order_relaxed);
        atomic_store_explicit(&tg->sm_limit_pct, *sm, memory_order_relaxed);
        atomic_store_explicit(&tg->cap_set, 1, memory_order_release);
        return;
    }
    int locked = fcsp_region_lock(&fcsp_g.region) == FCSP_OK;
    /* acquire: pairs with the setter's release store of cap_set, so the caps read below are the tenant's */
    if (locked && !atomic_load_explicit(&tg->cap_set, memory_order_acquire)) {
        atomic_store_explicit(&tg->limit_bytes, env_mem, memory_order_relaxed);
        atomic_store_explicit(&tg->sm_limit_pct, env_sm, memory_order_relaxed);
        /* release: a joiner that sees cap_set sees the caps */
        atomic_store_explicit(&tg->cap_set, 1, memory_order_release);
    }
    if (locked)
        fcsp_region_unlock(&fcsp_g.region);
    *mem = env_mem;
    *sm = env_sm;
    if (atomic_load_explicit(&tg->cap_set, memory_order_acquire)) {
        *mem = atomic_load_explicit(&tg->limit_bytes, memory_order_relaxed);
        *sm = atomic_load_explicit(&tg->sm_limit_pct, memory_order_relaxed);
    }
}

/* This process's caps on d: the tenant's; a process's own environment may lower them for itself (a scheduler's
 * step, a joiner asking for less), never raise them. */
static void compute_limits(struct fcsp_dev *d)
{
    uint64_t env_mem, mem;
    uint32_t env_sm, sm;
    fcsp_env_limits(&fcsp_g.cfg, d->ordinal, d->total_bytes, &env_mem, &env_sm);
    tenant_caps(&fcsp_g.tenant->gpu[d->gpu], d->uuid, env_mem, env_sm, &mem, &sm);
    if (!fcsp_g.has_policy_entry || fcsp_g.cfg.scheduler) {
        mem = fcsp_min_cap(mem, env_mem);
        sm = (uint32_t)fcsp_min_cap(sm, env_sm);
    }
    /* relaxed: admission reads the cap on its own; no other data depends on it */
    atomic_store_explicit(&d->limit_bytes, mem, memory_order_relaxed);
    atomic_store_explicit(&d->sm_limit_pct, sm, memory_order_relaxed);
    if (sm) /* relaxed: launches read it on their own; set before any launch can need it (under map_lock) */
        atomic_store_explicit(&fcsp_sm_possible, 1, memory_order_relaxed);
}

/* Under map_lock, in ENFORCE mode: fill d for a GPU identified by uuid. */
static int fill_dev(struct fcsp_dev *d, const char *uuid, int ordinal, uint64_t total, uint32_t sms)
{
    int gpu = region_gpu_index(uuid, total, sms);
    if (gpu < 0)
        return -1;
    copy_uuid(d->uuid, uuid);
    d->gpu = gpu;
    d->ordinal = ordinal;
    d->total_bytes = total;
    d->sm_count = sms;
    compute_limits(d);
    return 0;
}

struct fcsp_dev *fcsp_dev_slow(CUdevice ordinal)
{
    if ((unsigned)ordinal >= FCSP_MAX_ORDINALS || fcsp_mode() != FCSP_MODE_ENFORCE)
        return NULL;
    struct fcsp_dev *d = &fcsp_devs[ordinal];
    pthread_mutex_lock(&map_lock);
    int st = atomic_load_explicit(&d->state, memory_order_relaxed);
    if (st == FCSP_DEV_UNKNOWN) {
        /* _v2: a MIG instance's own UUID (the plain call gives its GPU's, shared by every instance) */
        fcsp_pfn_cuDeviceGetUuid get_uuid = FCSP_REAL(cuDeviceGetUuid_v2);
        if (!get_uuid)
            get_uuid = FCSP_REAL(cuDeviceGetUuid);
        fcsp_pfn_cuDeviceTotalMem_v2 total_mem = FCSP_REAL(cuDeviceTotalMem_v2);
        fcsp_pfn_cuDeviceGetAttribute attr = FCSP_REAL(cuDeviceGetAttribute);
        CUuuid u;
        size_t total = 0;
        int sms = 0;
        char uuid[FCSP_UUID_LEN];
        if (get_uuid && total_mem && attr && get_uuid(&u, ordinal) == CUDA_SUCCESS &&
            total_mem(&total, ordinal) == CUDA_SUCCESS &&
            attr(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, ordinal) == CUDA_SUCCESS) {
            format_uuid(&u, uuid);
            st = fill_dev(d, uuid, ordinal, total, (uint32_t)sms) == 0 ? FCSP_DEV_READY : FCSP_DEV_FAILED;
        } else {
            st = FCSP_DEV_FAILED;
        }
        if (st == FCSP_DEV_FAILED)
            fcsp_log(FCSP_LOG_WARN, "cannot identify CUDA device %d (a node region tracks %d GPUs): allocations on it "
                                    "are refused", (int)ordinal, FCSP_MAX_GPUS);
        /* release: fast-path readers (acquire) see the filled entry */
        atomic_store_explicit(&d->state, st, memory_order_release);
    }
    pthread_mutex_unlock(&map_lock);
    return st == FCSP_DEV_READY ? d : NULL;
}

struct fcsp_dev *fcsp_dev_current(void)
{
    fcsp_pfn_cuCtxGetDevice get = FCSP_REAL(cuCtxGetDevice);
    CUdevice dev;
    if (!get || get(&dev) != CUDA_SUCCESS)
        return NULL;
    return fcsp_dev_by_ordinal(dev);
}

/* The ordinal CUDA gives the GPU at NVML index nvml_index, from CUDA_VISIBLE_DEVICES (indices or UUID prefixes);
 * -1 if it is hidden from CUDA. Without the variable, CUDA and NVML agree on PCI order. */
static int visible_ordinal(unsigned nvml_index, const char *uuid)
{
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    if (!v)
        return (int)nvml_index;
    int ordinal = 0;
    const char *p = v;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len && p[0] >= '0' && p[0] <= '9') {
            if (strtoul(p, NULL, 10) == nvml_index)
                return ordinal;
        } else if (len >= 4 && strncmp(uuid, p, len) == 0) {
            return ordinal;
        }
        ordinal++;
        if (!end)
            break;
        p = end + 1;
    }
    return -1;
}

struct fcsp_dev *fcsp_dev_by_nvml(nvmlDevice_t handle)
{
    for (int i = 0; i < MAX_NVML; i++)
        /* acquire: pairs with the release store of the handle after its dev was filled */
        if (atomic_load_explicit(&nvml_devs[i].handle, memory_order_acquire) == handle)
            return &nvml_devs[i].dev;
    if (fcsp_mode() != FCSP_MODE_ENFORCE)
        return NULL;
    fcsp_pfn_nvmlDeviceGetUUID get_uuid = FCSP_REAL_NVML(nvmlDeviceGetUUID);
    fcsp_pfn_nvmlDeviceGetIndex get_index = FCSP_REAL_NVML(nvmlDeviceGetIndex);
    fcsp_pfn_nvmlDeviceGetMemoryInfo mem = FCSP_REAL_NVML(nvmlDeviceGetMemoryInfo);
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    unsigned index = 0;
    nvmlMemory_t m;
    if (!get_uuid || !get_index || !mem || get_uuid(handle, uuid, sizeof uuid) != NVML_SUCCESS ||
        get_index(handle, &index) != NVML_SUCCESS || mem(handle, &m) != NVML_SUCCESS)
        return NULL;
    struct fcsp_dev *out = NULL;
    pthread_mutex_lock(&map_lock);
    for (int i = 0; i < MAX_NVML && !out; i++) {
        nvmlDevice_t h = atomic_load_explicit(&nvml_devs[i].handle, memory_order_relaxed);
        if (h == handle)
            out = &nvml_devs[i].dev;
        else if (!h) {
            struct fcsp_dev *d = &nvml_devs[i].dev;
            if (fill_dev(d, uuid, visible_ordinal(index, uuid), m.total, 0) == 0) {
                atomic_store_explicit(&d->state, FCSP_DEV_READY, memory_order_relaxed);
                /* release: a reader that finds the handle (acquire) sees the filled dev */
                atomic_store_explicit(&nvml_devs[i].handle, handle, memory_order_release);
                out = d;
            }
            break;
        }
    }
    pthread_mutex_unlock(&map_lock);
    return out;
}

void fcsp_sm_recheck_possible(void)
{
    const struct fcsp_config *c = &fcsp_g.cfg;
    int possible = c->sm_all != 0;
    for (int i = 0; i < FCSP_MAX_GPUS; i++)
        possible |= c->sm_dev[i] != 0;
    if (fcsp_g.has_policy_entry) {
        const struct fcsp_policy_entry *e = &fcsp_g.policy_entry;
        possible |= e->sm_limit_pct != 0;
        for (uint32_t g = 0; g < e->ngpus && g < FCSP_MAX_GPUS; g++)
            possible |= e->gpu[g].sm_limit_pct != 0;
    }
    /* relaxed: a hint read by launches; once set it stays set (a cap removed later costs a cheap per-device
     * check, never a missed cap) */
    if (possible)
        atomic_store_explicit(&fcsp_sm_possible, 1, memory_order_relaxed);
}

void fcsp_devs_apply_policy(const struct fcsp_policy_entry *entry, int has_entry)
{
    pthread_mutex_lock(&map_lock);
    /* policy_entry is read by compute_limits under map_lock only */
    if (has_entry)
        fcsp_g.policy_entry = *entry;
    fcsp_g.has_policy_entry = has_entry;
    fcsp_sm_recheck_possible();
    for (int i = 0; i < FCSP_MAX_ORDINALS; i++)
        if (atomic_load_explicit(&fcsp_devs[i].state, memory_order_acquire) == FCSP_DEV_READY)
            compute_limits(&fcsp_devs[i]);
    for (int i = 0; i < MAX_NVML; i++)
        if (atomic_load_explicit(&nvml_devs[i].handle, memory_order_acquire))
            compute_limits(&nvml_devs[i].dev);
    pthread_mutex_unlock(&map_lock);
}

void fcsp_devs_reset(void)
{
    memset(fcsp_devs, 0, sizeof fcsp_devs);
    memset(nvml_devs, 0, sizeof nvml_devs);
    pthread_mutex_init(&map_lock, NULL);
}
