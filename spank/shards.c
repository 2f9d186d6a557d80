/* Shards are an upper bound: a --gres=shard:N step runs under N/shards_per_gpu of each of its GPUs, and its
 * --fcsp-mem/--fcsp-sm may only lower that share. Shared by the submit side (srun, sbatch, salloc: what the
 * command line and environment show) and the node side (slurmstepd: what Slurm granted). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcsp_spank.h"

long fcsp_gres_shards(const char *gres)
{
    char buf[1024];
    long total = 0;
    if (!gres || snprintf(buf, sizeof buf, "%s", gres) >= (int)sizeof buf)
        return -1;
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (!strncmp(item, "gres/", 5)) /* the TRES spelling, gres/shard:2 */
            item += 5;
        size_t n = strcspn(item, ":");
        if (n != 5 || strncmp(item, "shard", 5))
            continue; /* gpu, none, another gres */
        const char *count = strrchr(item, ':');
        if (!count) {
            total += 1; /* "shard": one */
            continue;
        }
        char *end;
        long v = strtol(count + 1, &end, 10);
        if (end == count + 1 || *end) {
            if (count != item + 5)
                return -1; /* "shard:type:what": not a count */
            v = 1;         /* "shard:type": one of that type */
        }
        if (v < 0 || v > 1000000)
            return -1;
        total += v;
    }
    return total;
}

double fcsp_shard_share(unsigned long shards, unsigned shards_per_gpu, int ngpus)
{
    if (shards == 0 || shards_per_gpu == 0)
        return 0;
    if (ngpus < 1)
        ngpus = 1;
    /* Slurm's environment says how many shards the step holds on the node and on which GPUs, not how many on
     * each. Every GPU of the list holds at least one, and none more than shards_per_gpu, so each holds at least
     * shards - (ngpus - 1) * shards_per_gpu: that is the share fcsp can promise on every one of them. */
    long spill = (long)shards - (long)(ngpus - 1) * (long)shards_per_gpu;
    long least = spill > 1 ? spill : 1;
    if (least > (long)shards_per_gpu)
        least = (long)shards_per_gpu;
    return (double)least / (double)shards_per_gpu;
}

uint32_t fcsp_share_sm_pct(double share)
{
    uint32_t pct = (uint32_t)ceil(share * 100.0 - 1e-9);
    return pct < 1 ? 1 : pct > 100 ? 100 : pct;
}

int fcsp_shard_check_opts(unsigned long shards, double share)
{
    char err[256];
    uint64_t bytes;
    double pct = 0;
    uint32_t sm;
    const struct fcsp_lib *lib;
    if (fcsp_opts.off) {
        slurm_error(FCSP_PLUGIN ": --fcsp-off: this step holds %lu shard%s (%.4g%% of a GPU, %u shards per GPU) "
                    "and runs under that share; ask for --gres=gpu to run without fcsp caps",
                    shards, shards == 1 ? "" : "s", share * 100.0, fcsp_args.shards_per_gpu);
        return -1;
    }
    if (!fcsp_opts.mem[0] && !fcsp_opts.sm[0])
        return 0;
    if (!(lib = fcsp_lib_get()))
        return -1;
    if (fcsp_opts.mem[0] && lib->parse_mem(fcsp_opts.mem, &bytes, &pct, err, sizeof err) == FCSP_OK &&
        pct > share * 100.0 + 1e-9) {
        slurm_error(FCSP_PLUGIN ": --fcsp-mem=%s is more than this step's shard share (%lu shard%s, %.4g%% of a "
                    "GPU, %u shards per GPU): a shard step's --fcsp-mem and --fcsp-sm may only lower it",
                    fcsp_opts.mem, shards, shards == 1 ? "" : "s", share * 100.0, fcsp_args.shards_per_gpu);
        return -1;
    }
    if (fcsp_opts.sm[0] && lib->parse_sm(fcsp_opts.sm, &sm, err, sizeof err) == FCSP_OK &&
        sm > fcsp_share_sm_pct(share)) {
        slurm_error(FCSP_PLUGIN ": --fcsp-sm=%s is more than this step's shard share (%lu shard%s, %u%% of a "
                    "GPU's SMs, %u shards per GPU): a shard step's --fcsp-mem and --fcsp-sm may only lower it",
                    fcsp_opts.sm, shards, shards == 1 ? "" : "s", fcsp_share_sm_pct(share), fcsp_args.shards_per_gpu);
        return -1;
    }
    return 0;
}
