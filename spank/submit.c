/* Submit side (srun: local context; sbatch, salloc: allocator context), after every option is parsed
 * (init_post_opt): a shard request's options may only lower its share. What the submit side can see of the
 * request: --gres on its own command line, else the tool's input variable (SLURM_GRES for srun, SBATCH_GRES,
 * SALLOC_GRES), else (srun inside a job) the shards the job holds (SLURM_SHARDS_ON_NODE). A request it cannot see
 * (an #SBATCH line, an abbreviated option, an option after one this file does not know takes a value) is
 * refused on the node instead (slurmstepd.c), with the same line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcsp_spank.h"

/* Options of srun/sbatch/salloc that take their value as the next word ("-n 4", "--ntasks 4"). The scan below
 * stops at the first word that is not an option (the command or script: its own arguments are never read as a
 * shard request); a value-taking option missing here only makes it stop early, and the node checks anyway. */
static const char short_with_value[] = "AaBbCcDdeFGiJLMmNnopqrSTtwx";
static const char *const long_with_value[] = {
    "account", "array", "chdir", "constraint", "cpus-per-gpu", "cpus-per-task", "dependency", "error", "exclude",
    "export", "gpus", "gpus-per-node", "gpus-per-task", "job-name", "licenses", "mem", "mem-per-cpu",
    "mem-per-gpu", "nodelist", "nodes", "ntasks", "ntasks-per-node", "output", "partition", "qos", "reservation",
    "time", "tres-per-task",
};

static int takes_value(const char *arg)
{
    if (arg[1] != '-')
        return arg[2] == '\0' && strchr(short_with_value, arg[1]) != NULL;
    if (strchr(arg, '='))
        return 0;
    for (size_t i = 0; i < sizeof long_with_value / sizeof long_with_value[0]; i++)
        if (!strcmp(arg + 2, long_with_value[i]))
            return 1;
    return 0;
}

/* The --gres value among this process's options (the last one wins, as for Slurm); 1 if found. */
static int cmdline_gres(char *out, size_t len)
{
    static char args[65536];
    int found = 0;
    FILE *f = fopen("/proc/self/cmdline", "re");
    if (!f)
        return 0;
    size_t n = fread(args, 1, sizeof args - 1, f);
    fclose(f);
    args[n] = '\0';
    const char *end = args + n;
    const char *arg = args + strlen(args) + 1; /* past the program's name */
    while (arg < end) {
        const char *next = arg + strlen(arg) + 1;
        if (arg[0] != '-' || !arg[1] || !strcmp(arg, "--"))
            break; /* the command or script, or the end of the options */
        if (!strncmp(arg, "--gres=", 7)) {
            snprintf(out, len, "%s", arg + 7);
            found = 1;
        } else if (!strcmp(arg, "--gres") && next < end) {
            snprintf(out, len, "%s", next);
            found = 1;
            next += strlen(next) + 1;
        } else if (takes_value(arg) && next < end) {
            next += strlen(next) + 1;
        }
        arg = next;
    }
    return found;
}

/* Shards this submission asks for: >0, 0 (none), -1 (cannot tell). */
static long requested_shards(spank_t sp)
{
    char gres[1024];
    const char *env = NULL;
    if (cmdline_gres(gres, sizeof gres))
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
