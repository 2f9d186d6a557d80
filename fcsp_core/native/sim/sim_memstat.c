/* Live/peak device memory of the simulated GPUs, charged per process. */
#include "sim_state.h"

static int try_charge(struct sim_shared *sh, int slot, int dev, uint64_t bytes)
{
    struct sim_gpu *g = &sh->gpu[dev];
    int ok = 0;
    sim_gpu_lock(g);
    if (bytes <= g->total_bytes && g->live_bytes <= g->total_bytes - bytes) {
        g->live_bytes += bytes;
        if (g->live_bytes > g->peak_bytes)
            g->peak_bytes = g->live_bytes; /* under the same lock as live: the peak is exact */
        if (slot >= 0)
            sh->procs[slot].live_bytes[dev] += bytes;
        ok = 1;
    }
    sim_gpu_unlock(g);
    return ok;
}

int sim_mem_charge(struct sim_shared *sh, int slot, int dev, uint64_t bytes)
{
    if (try_charge(sh, slot, dev, bytes))
        return 0;
    sim_reap_dead(sh); /* memory of dead processes may be what is missing */
    return try_charge(sh, slot, dev, bytes) ? 0 : -1;
}

void sim_mem_uncharge(struct sim_shared *sh, int slot, int dev, uint64_t bytes)
{
    struct sim_gpu *g = &sh->gpu[dev];
    sim_gpu_lock(g);
    g->live_bytes = g->live_bytes >= bytes ? g->live_bytes - bytes : 0;
    if (slot >= 0) {
        uint64_t *mine = &sh->procs[slot].live_bytes[dev];
        *mine = *mine >= bytes ? *mine - bytes : 0;
    }
    sim_gpu_unlock(g);
}

void sim_mem_stats(struct sim_shared *sh, int dev, uint64_t *live, uint64_t *peak)
{
    sim_reap_dead(sh);
    struct sim_gpu *g = &sh->gpu[dev];
    sim_gpu_lock(g);
    if (live)
        *live = g->live_bytes;
    if (peak)
        *peak = g->peak_bytes;
    sim_gpu_unlock(g);
}

void sim_mem_reset_peak(struct sim_shared *sh, int dev)
{
    struct sim_gpu *g = &sh->gpu[dev];
    sim_gpu_lock(g);
    g->peak_bytes = g->live_bytes;
    sim_gpu_unlock(g);
}
