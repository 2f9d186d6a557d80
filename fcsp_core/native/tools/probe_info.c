/* init, device and memory queries, entry point resolution and simulator statistics. */
#include <dlfcn.h>

#include "probe.h"

CUdevice g_dev;
CUcontext g_ctx;

int cmd_init(int dev)
{
    CUresult rc = PROBE_CALL(g_cu.Init, 0);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.DeviceGet, &g_dev, dev);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.PrimaryCtxRetain, &g_ctx, g_dev);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.CtxSetCurrent, g_ctx);
    size_t total = 0;
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.DeviceTotalMem, &total, g_dev);
    if (rc != CUDA_SUCCESS) {
        probe_out("init fail err=%s", probe_err(rc));
        return 1;
    }
    probe_out("init ok dev=%d total_bytes=%zu", dev, total);
    return 0;
}

int cmd_meminfo(void)
{
    size_t free_b = 0, total = 0;
    CUresult rc = PROBE_CALL(g_cu.MemGetInfo, &free_b, &total);
    if (rc != CUDA_SUCCESS) {
        probe_out("meminfo fail err=%s", probe_err(rc));
        return 1;
    }
    probe_out("meminfo free_bytes=%zu total_bytes=%zu", free_b, total);
    return 0;
}

int cmd_totalmem(void)
{
    size_t total = 0;
    CUresult rc = PROBE_CALL(g_cu.DeviceTotalMem, &total, g_dev);
    if (rc != CUDA_SUCCESS) {
        probe_out("totalmem fail err=%s", probe_err(rc));
        return 1;
    }
    probe_out("totalmem total_bytes=%zu", total);
    return 0;
}

int cmd_device(void)
{
    int count = 0, sms = 0, major = 0, minor = 0, tpm = 0;
    char name[128] = "";
    CUuuid uuid;
    CUresult rc = PROBE_CALL(g_cu.DeviceGetCount, &count);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.DeviceGetName, name, (int)sizeof name, g_dev);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.DeviceGetAttribute, &sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, g_dev);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.DeviceGetAttribute, &major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, g_dev);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.DeviceGetAttribute, &minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, g_dev);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.DeviceGetAttribute, &tpm, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, g_dev);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.DeviceGetUuid, &uuid, g_dev);
    if (rc != CUDA_SUCCESS) {
        probe_out("device fail err=%s", probe_err(rc));
        return 1;
    }
    for (char *c = name; *c; c++)
        if (*c == ' ')
            *c = '_'; /* one word per value keeps the output easy to split */
    const unsigned char *u = (const unsigned char *)uuid.bytes;
    probe_out("device ok dev=%d count=%d sms=%d cc=%d.%d threads_per_sm=%d "
              "uuid=GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x name=%s",
              (int)g_dev, count, sms, major, minor, tpm, u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
              u[10], u[11], u[12], u[13], u[14], u[15], name);
    return 0;
}

int cmd_resolve(const char *name)
{
    void *fn = NULL;
    CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SUCCESS;
    CUresult rc = probe_resolve(name, &fn, &status);
    static const char *const status_names[] = {"SUCCESS", "SYMBOL_NOT_FOUND", "VERSION_NOT_SUFFICIENT"};
    const char *st = (unsigned)status < 3 ? status_names[status] : "n/a";
    if (rc != CUDA_SUCCESS || fn == NULL) {
        probe_out("resolve fail name=%s err=%s query=%s", name, probe_err(rc == CUDA_SUCCESS ? CUDA_ERROR_NOT_FOUND : rc),
                  st);
        return 0;
    }
    Dl_info info;
    const char *sym = (dladdr(fn, &info) && info.dli_sname) ? info.dli_sname : "?";
    const char *lib = (info.dli_fname) ? info.dli_fname : "?";
    probe_out("resolve ok name=%s symbol=%s query=%s lib=%s", name, sym, st, lib);
    return 0;
}

int cmd_stats(void)
{
    int (*stats)(int, unsigned long long *, unsigned long long *) = NULL;
    void *fn = dlsym(g_libcuda, "fcspSimStats");
    unsigned long long live = 0, peak = 0;
    if (fn == NULL) {
        probe_out("stats fail err=not_simulated");
        return 1;
    }
    *(void **)&stats = fn;
    if (stats((int)g_dev, &live, &peak) != 0) {
        probe_out("stats fail err=unavailable");
        return 1;
    }
    probe_out("stats ok dev=%d live_bytes=%llu peak_bytes=%llu", (int)g_dev, live, peak);
    return 0;
}
