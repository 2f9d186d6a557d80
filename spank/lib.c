/* libfcsp.so (one parser, the policy-table writer) and NVML, both dlopen()ed on first use. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "fcsp_spank.h"

static struct fcsp_lib g_lib;
static int g_loaded;

#define LOAD(field, name)                                                                                          \
    do {                                                                                                           \
        *(void **)(&g_lib.field) = dlsym(h, name);                                                                 \
        if (!g_lib.field) {                                                                                        \
            slurm_error(FCSP_PLUGIN ": %s has no %s: reinstall fcsp", fcsp_args.lib, name);                        \
            goto fail;                                                                                             \
        }                                                                                                          \
    } while (0)

const struct fcsp_lib *fcsp_lib_get(void)
{
    if (g_loaded)
        return &g_lib;
    void *h = dlopen(fcsp_args.lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        slurm_error(FCSP_PLUGIN ": cannot load %s (plugstack.conf lib=): %s", fcsp_args.lib, dlerror());
        return NULL;
    }
    LOAD(parse_mem, "fcsp_parse_mem_limit");
    LOAD(parse_sm, "fcsp_parse_sm_limit");
    LOAD(policy_put, "fcsp_policy_put");
    LOAD(policy_remove, "fcsp_policy_remove");
    LOAD(policy_list, "fcsp_policy_list");
    LOAD(policy_init, "fcsp_policy_init");
    LOAD(dir_prepare, "fcsp_region_dir_prepare");
    LOAD(region_open, "fcsp_region_open");
    LOAD(region_close, "fcsp_region_close");
    LOAD(region_reap, "fcsp_region_reap");
    LOAD(tenant_remove, "fcsp_region_tenant_remove");
    LOAD(region_snapshot, "fcsp_region_snapshot");
    g_loaded = 1;
    return &g_lib;
fail:
    memset(&g_lib, 0, sizeof g_lib);
    dlclose(h);
    return NULL;
}

/* The few NVML entry points we need (ABI of nvml.h, v2 names). */
typedef struct nvml_device_st *nvml_device_t;
struct nvml_memory {
    unsigned long long total, free, used;
};

int fcsp_nvml_gpu(unsigned index, struct fcsp_gpu *out, char *err, size_t errlen)
{
    int rc = -1;
    memset(out, 0, sizeof *out);
    out->index = index;
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "cannot load libnvidia-ml.so.1: %s", dlerror());
        return -1;
    }
    int (*init)(void), (*shutdown)(void), (*by_index)(unsigned, nvml_device_t *);
    int (*meminfo)(nvml_device_t, struct nvml_memory *), (*uuid)(nvml_device_t, char *, unsigned);
    *(void **)(&init) = dlsym(h, "nvmlInit_v2");
    *(void **)(&shutdown) = dlsym(h, "nvmlShutdown");
    *(void **)(&by_index) = dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
    *(void **)(&meminfo) = dlsym(h, "nvmlDeviceGetMemoryInfo");
    *(void **)(&uuid) = dlsym(h, "nvmlDeviceGetUUID");
    if (!init || !shutdown || !by_index || !meminfo || !uuid) {
        snprintf(err, errlen, "libnvidia-ml.so.1 lacks an entry point fcsp needs");
        goto out;
    }
    int e = init();
    if (e != 0) {
        snprintf(err, errlen, "nvmlInit_v2 failed (%d)", e);
        goto out;
    }
    nvml_device_t dev;
    struct nvml_memory mem;
    if ((e = by_index(index, &dev)) != 0 || (e = meminfo(dev, &mem)) != 0 ||
        (e = uuid(dev, out->uuid, sizeof out->uuid)) != 0) {
        snprintf(err, errlen, "NVML: GPU %u: error %d", index, e);
        shutdown();
        goto out;
    }
    out->uuid[sizeof out->uuid - 1] = '\0';
    out->total_bytes = mem.total;
    shutdown();
    rc = 0;
out:
    dlclose(h);
    return rc;
}
