/* Submit side (srun: local context; sbatch, salloc: allocator context), after every option is parsed
 * (init_post_opt): a shard request's options may only lower its share. What the submit side can see of the
 * request: --gres on its own command line, else the tool's input variable (SLURM_GRES for srun, SBATCH_GRES,
 * SALLOC_GRES), else (srun inside a job) the shards the job holds (SLURM_SHARDS_ON_NODE). A request it cannot see
 * (an #SBATCH line, an abbreviated option) is refused on the node instead (slurmstepd.c), with the same line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcsp_spank.h"

/* The --gres value on this process's command line (the last one wins, as for Slurm), up to the job's own
 * argv for srun; 1 if found. */
static int cmdline_gres(spank_t sp, char *out, size_t len)
{
    static char args[65536];
    int found = 0, job_argc = 0;
    char **job_argv = NULL;
    FILE *f = fopen("/proc/self/cmdline", "re");
    if (!f)
        return 0;
    size_t n = fread(args, 1, sizeof args - 1, f);
    fclose(f);
    args[n] = '\0';
    int argc = 0;
    for (size_t i = 0; i < n; i += strlen(args + i) + 1)
        argc++;
    /* srun: the command and its arguments are the job's argv, never srun's options */
    if (spank_context() == S_CTX_LOCAL && spank_get_item(sp, S_JOB_ARGV, &job_argc, &job_argv) != ESPANK_SUCCESS)
        job_argc = 0;
    int last = argc - job_argc;
    const char *arg = args;
    for (int i = 0; i < last && arg < args + n; i++, arg += strlen(arg) + 1) {
        if (i == 0)
            continue;
        if (!strcmp(arg, "--"))
            break;
        if (!strncmp(arg, "--gres=", 7)) {
            snprintf(out, len, "%s", arg + 7);
            found = 1;
        } else if (!strcmp(arg, "--gres") && i + 1 < last) {
            arg += strlen(arg) + 1;
            i++;
            snprintf(out, len, "%s", arg);
            found = 1;
        }
    }
    return found;
}

/* Shards this submission asks for: >0, 0 (none), -1 (cannot tell). */
static long requested_shards(spank_t sp)
{
    char gres[1024];
    const char *env = NULL;
    if (cmdline_gres(sp, gres, sizeof gres))
        return fcsp_gres_shards(gres);
    if (spank_context() == S_CTX_LOCAL) {
        env = getenv("SLURM_GRES");
    } else {
        char comm[32] = "";
        FILE *f = fopen("/proc/self/comm", "re");
        if (f) {
            if (!fgets(comm, sizeof comm, f))
                comm[0] = '\0';
            fclose(f);
        }
        env = getenv(!strncmp(comm, "salloc", 6) ? "SALLOC_GRES" : "SBATCH_GRES");
    }
    if (env && env[0])
        return fcsp_gres_shards(env);
    /* srun inside a job without --gres: the step gets the job's GRES */
    const char *held = getenv("SLURM_SHARDS_ON_NODE");
    if (spank_context() == S_CTX_LOCAL && getenv("SLURM_JOB_ID") && held && held[0]) {
        char *end;
        long v = strtol(held, &end, 10);
        return *end || v < 0 ? -1 : v;
    }
    return 0;
}

int fcsp_submit_check(spank_t sp)
{
    if (!fcsp_args.shards_per_gpu || (!fcsp_opts.off && !fcsp_opts.mem[0] && !fcsp_opts.sm[0]))
        return 0;
    long shards = requested_shards(sp);
    if (shards <= 0)
        return 0; /* no shards, or a request this side cannot read: the node decides */
    /* The most a step of N shards can hold of any one GPU (how they spread is known only on the node). */
    unsigned long on_one = (unsigned long)shards < fcsp_args.shards_per_gpu ? (unsigned long)shards
                                                                             : fcsp_args.shards_per_gpu;
    return fcsp_shard_check_opts((unsigned long)shards, fcsp_shard_share(on_one, fcsp_args.shards_per_gpu, 1));
}
