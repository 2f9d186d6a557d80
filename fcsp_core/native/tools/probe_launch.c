/* launch: a tiny PTX module with kernels spin, noop and work, launched on a stream and timed with events. */
#include "probe.h"

static const char g_ptx[] = ".version 8.0\n"
                            ".target sm_90\n"
                            ".address_size 64\n"
                            "\n"
                            ".visible .entry spin()\n{\n\tret;\n}\n"
                            ".visible .entry noop()\n{\n\tret;\n}\n"
                            ".visible .entry work(\n\t.param .u64 work_param_0\n)\n{\n\tret;\n}\n";

static CUmodule g_module;

int cmd_launch(const char *name, uint64_t blocks, uint64_t threads, uint64_t count)
{
    CUresult rc = CUDA_SUCCESS;
    if (g_module == NULL)
        rc = PROBE_CALL(g_cu.ModuleLoadData, &g_module, g_ptx);
    CUfunction f = NULL;
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.ModuleGetFunction, &f, g_module, name);
    CUstream s = NULL;
    CUevent start = NULL, end = NULL;
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.StreamCreate, &s, CU_STREAM_NON_BLOCKING);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventCreate, &start, CU_EVENT_DEFAULT);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventCreate, &end, CU_EVENT_DEFAULT);
    double t0 = probe_now_ms();
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventRecord, start, s);
    unsigned long long arg = 0;
    void *params[] = {&arg};
    for (uint64_t i = 0; rc == CUDA_SUCCESS && i < count; i++)
        rc = PROBE_CALL(g_cu.LaunchKernel, f, (unsigned int)blocks, 1, 1, (unsigned int)threads, 1, 1, 0, s, params,
                        NULL);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventRecord, end, s);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.StreamSynchronize, s);
    double wall = probe_now_ms() - t0;
    float ms = 0;
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventSynchronize, end);
    if (rc == CUDA_SUCCESS)
        rc = PROBE_CALL(g_cu.EventElapsedTime, &ms, start, end);
    if (start)
        PROBE_CALL(g_cu.EventDestroy, start);
    if (end)
        PROBE_CALL(g_cu.EventDestroy, end);
    if (s)
        PROBE_CALL(g_cu.StreamDestroy, s);
    if (rc != CUDA_SUCCESS) {
        probe_out("launch fail name=%s err=%s", name, probe_err(rc));
        return 1;
    }
    probe_out("launch ok name=%s count=%llu elapsed_ms=%.3f wall_ms=%.3f", name, (unsigned long long)count, ms, wall);
    return 0;
}
