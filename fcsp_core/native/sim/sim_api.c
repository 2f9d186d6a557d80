/* Simulator-only entry points for tests: live and peak device memory of the node. */
#include <stdlib.h>

#include "sim_cuda.h"

/* The attached node, or the one in $FCSP_SIM_DIR mapped for this call only (*tmp set). */
static struct sim_shared *node(int *tmp)
{
    *tmp = 0;
    if (sim_is_initialized())
        return g_sim_sh;
    struct sim_shared *sh = NULL;
    const char *dir = getenv("FCSP_SIM_DIR");
    if (dir == NULL || dir[0] == '\0' || sim_state_map_existing(dir, &sh) != 0)
        return NULL;
    *tmp = 1;
    return sh;
}

SIM_EXPORT int fcspSimStats(int dev, unsigned long long *live_bytes, unsigned long long *peak_bytes)
{
    int tmp;
    struct sim_shared *sh = node(&tmp);
    if (sh == NULL)
        return -1;
    int rc = -1;
    if (dev >= 0 && (uint32_t)dev < sh->ngpus) {
        uint64_t live, peak;
        sim_mem_stats(sh, dev, &live, &peak);
        if (live_bytes)
            *live_bytes = live;
        if (peak_bytes)
            *peak_bytes = peak;
        rc = 0;
    }
    if (tmp)
        sim_state_unmap(sh);
    return rc;
}

SIM_EXPORT int fcspSimResetPeak(int dev)
{
    int tmp;
    struct sim_shared *sh = node(&tmp);
    if (sh == NULL)
        return -1;
    int rc = -1;
    if (dev >= 0 && (uint32_t)dev < sh->ngpus) {
        sim_mem_reset_peak(sh, dev);
        rc = 0;
    }
    if (tmp)
        sim_state_unmap(sh);
    return rc;
}
