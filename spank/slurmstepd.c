/* Remote context (slurmstepd): root registers the step as a tenant with its caps (task_init_privileged), each task
 * gets the preload and the tenant (task_init), the step's tenant goes when the step ends (exit). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcsp_spank.h"

struct caps {
    char mem[64];        /* "" = no memory cap */
    double mem_fraction; /* > 0: a fraction of each GPU (shards) instead of mem */
    double shard_share;  /* > 0: a shard step; no cap may exceed this fraction of a GPU */
    unsigned long shards;
    uint32_t sm_pct;  /* 0 = none */
    uint32_t sm_mode; /* FCSP_POLICY_SM_TIME or _SPATIAL: written into the policy entry, where the job cannot
                       * change it (spatial can give more than a time share: each MPS client gets the partition) */
    const char *why;  /* "options", "shards", "default" */
};

int fcsp_remote_init(spank_t sp, int ac, char **av)
{
    if (fcsp_args_parse(ac, av) != 0)
        return -1;
    return fcsp_options_register(sp);
}

static int getenv_sp(spank_t sp, const char *name, char *buf, int len)
{
    return spank_getenv(sp, name, buf, len) == ESPANK_SUCCESS && buf[0];
}

/* The step's GPUs as indices NVML knows (Slurm's device minor numbers). */
static int step_gpus(spank_t sp, unsigned *idx, int max)
{
    static const char *const vars[] = {"SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"};
    char buf[512];
    for (size_t v = 0; v < sizeof vars / sizeof vars[0]; v++) {
        if (!getenv_sp(sp, vars[v], buf, sizeof buf))
            continue;
        int n = 0;
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
            char *end;
            unsigned long i = strtoul(tok, &end, 10);
            if (*tok && !*end && i < 64)
                idx[n++] = (unsigned)i;
        }
        if (n > 0)
            return n;
    }
    return 0;
}

/* Shards Slurm granted this step on the node (its gres/shard plugin sets SLURM_SHARDS_ON_NODE, over anything the
 * user exported); 0 when none or the site does not turn shards into caps. */
static unsigned long step_shards(spank_t sp)
{
    char buf[64];
    if (!fcsp_args.shards_per_gpu || !getenv_sp(sp, "SLURM_SHARDS_ON_NODE", buf, sizeof buf))
        return 0;
    char *end;
    unsigned long shards = strtoul(buf, &end, 10);
    return *end ? 0 : shards;
}

static int decide_caps(spank_t sp, int ngpus, struct caps *c);

/* What caps this step gets (decide_caps), and how its SM share is kept: --fcsp-sm-mode, else plugstack sm_mode.
 * Spatial needs a share to partition. 1 = caps, 0 = none, -1 = refused (one line logged). */
static int decide(spank_t sp, int ngpus, struct caps *c)
{
    int d = decide_caps(sp, ngpus, c);
    c->sm_mode = fcsp_args.default_sm_mode;
    if (fcsp_opts.sm_mode[0] && fcsp_sm_mode_parse(fcsp_opts.sm_mode, &c->sm_mode) != 0)
        return -1; /* checked by the option's callback already */
    if (c->sm_mode == FCSP_POLICY_SM_SPATIAL && fcsp_opts.sm_mode[0] && (d == 0 || c->sm_pct == 0)) {
        slurm_error(FCSP_PLUGIN ": --fcsp-sm-mode=spatial needs an SM share to partition (--fcsp-sm, a shard "
                    "request or the site's default_sm)");
        return -1;
    }
    if (c->sm_pct == 0)
        c->sm_mode = FCSP_POLICY_SM_TIME; /* the site's default mode: nothing to partition */
    return d;
}

/* What caps this step gets: a shard step runs under its share (options may only lower it), otherwise explicit
 * options win, then the site's default for GPU steps. 1 = caps, 0 = none, -1 = refused (one line logged). */
static int decide_caps(spank_t sp, int ngpus, struct caps *c)
{
    char err[256];
    memset(c, 0, sizeof *c);
    c->shards = step_shards(sp);
    if (c->shards > 0) {
        c->shard_share = fcsp_shard_share(c->shards, fcsp_args.shards_per_gpu, ngpus);
        if (fcsp_shard_check_opts(c->shards, c->shard_share) != 0)
            return -1;
        snprintf(c->mem, sizeof c->mem, "%s", fcsp_opts.mem);
        if (!c->mem[0])
            c->mem_fraction = c->shard_share;
        c->sm_pct = fcsp_opts.sm[0] ? (uint32_t)strtoul(fcsp_opts.sm, NULL, 10) : fcsp_share_sm_pct(c->shard_share);
        c->why = "shards";
        return 1;
    }
    if (fcsp_opts.off && fcsp_args.allow_opt_out)
        return 0;
    if (fcsp_opts.mem[0] || fcsp_opts.sm[0]) {
        snprintf(c->mem, sizeof c->mem, "%s", fcsp_opts.mem);
        c->sm_pct = fcsp_opts.sm[0] ? (uint32_t)strtoul(fcsp_opts.sm, NULL, 10) : 0;
        c->why = "options";
        return 1;
    }
    if (ngpus > 0 && fcsp_args.default_gpu_cap && (fcsp_args.default_mem[0] || fcsp_args.default_sm[0])) {
        const struct fcsp_lib *lib = fcsp_lib_get();
        if (!lib)
            return -1;
        snprintf(c->mem, sizeof c->mem, "%s", fcsp_args.default_mem);
        if (fcsp_args.default_sm[0] && lib->parse_sm(fcsp_args.default_sm, &c->sm_pct, err, sizeof err) != FCSP_OK) {
            slurm_error(FCSP_PLUGIN ": plugstack.conf default_sm: %s", err);
            return -1;
        }
        c->why = "default";
        return 1;
    }
    return 0;
}

static int register_tenant(spank_t sp, const char *tenant, const struct caps *c, const unsigned *gpus, int ngpus)
{
    const struct fcsp_lib *lib = fcsp_lib_get();
    char err[512];
    uint64_t bytes = 0;
    double pct = 0;
    uint32_t uid = 0;
    if (!lib)
        return -1;
    if (c->mem[0] && lib->parse_mem(c->mem, &bytes, &pct, err, sizeof err) != FCSP_OK) {
        slurm_error(FCSP_PLUGIN ": --fcsp-mem=%s: %s", c->mem, err);
        return -1;
    }
    if (c->mem_fraction > 0)
        pct = c->mem_fraction * 100.0;
    struct fcsp_policy_in in;
    memset(&in, 0, sizeof in);
    snprintf(in.tenant, sizeof in.tenant, "%s", tenant);
    in.uid = spank_get_item(sp, S_JOB_UID, &uid) == ESPANK_SUCCESS ? (int64_t)uid : -1;
    in.mem_limit_bytes = bytes;
    in.sm_limit_pct = c->sm_pct;
    in.sm_mode = c->sm_mode;
    for (int g = 0; g < ngpus && g < 16; g++) {
        struct fcsp_gpu gpu;
        if (fcsp_nvml_gpu(gpus[g], &gpu, err, sizeof err) != 0) {
            if (pct > 0 || c->shard_share > 0) { /* a share of the GPU needs its size */
                slurm_error(FCSP_PLUGIN ": %s: cannot size GPU %u for a %.4g%% memory cap: %s", tenant, gpus[g],
                            pct > 0 ? pct : c->shard_share * 100.0, err);
                return -1;
            }
            continue; /* byte caps hold without NVML: the step-wide values below */
        }
        uint64_t share_bytes = (uint64_t)((double)gpu.total_bytes * c->shard_share);
        if (c->shard_share > 0 && bytes > share_bytes) {
            slurm_error(FCSP_PLUGIN ": --fcsp-mem=%s is more than this step's shard share (%lu shard%s, %.4g%% of "
                        "GPU %u = %llu MiB, %u shards per GPU): a shard step's --fcsp-mem and --fcsp-sm may only "
                        "lower it", c->mem, c->shards, c->shards == 1 ? "" : "s", c->shard_share * 100.0, gpus[g],
                        (unsigned long long)(share_bytes >> 20), fcsp_args.shards_per_gpu);
            return -1;
        }
        struct fcsp_policy_gpu_in *pg = &in.gpu[in.ngpus++];
        snprintf(pg->uuid, sizeof pg->uuid, "%s", gpu.uuid);
        pg->mem_limit_bytes = pct > 0 ? (uint64_t)((double)gpu.total_bytes * pct / 100.0) : bytes;
        pg->sm_limit_pct = c->sm_pct;
        if (pct > 0 && (in.mem_limit_bytes == 0 || pg->mem_limit_bytes < in.mem_limit_bytes))
            in.mem_limit_bytes = pg->mem_limit_bytes; /* a GPU missing from the list gets the smallest */
    }
    if (c->shard_share > 0 && bytes > 0 && in.ngpus == 0) {
        slurm_error(FCSP_PLUGIN ": %s: --fcsp-mem=%s cannot be checked against the shard share without the step's "
                    "GPUs (none in SLURM_STEP_GPUS, SLURM_JOB_GPUS or CUDA_VISIBLE_DEVICES)", tenant, c->mem);
        return -1;
    }
    if (pct > 0 && in.mem_limit_bytes == 0) {
        slurm_error(FCSP_PLUGIN ": %s: a %.4g%% memory cap needs the step's GPUs (none in SLURM_STEP_GPUS, "
                    "SLURM_JOB_GPUS or CUDA_VISIBLE_DEVICES)", tenant, pct);
        return -1;
    }
    if (lib->dir_prepare(fcsp_args.region_dir, err, sizeof err) != FCSP_OK ||
        lib->policy_init(fcsp_args.region_dir, err, sizeof err) != FCSP_OK ||
        lib->policy_put(fcsp_args.region_dir, &in, err, sizeof err) != FCSP_OK) {
        slurm_error(FCSP_PLUGIN ": cannot register tenant %s in %s: %s", tenant, fcsp_args.region_dir, err);
        return -1;
    }
    return 0;
}

int fcsp_remote_task_init_privileged(spank_t sp, int ac, char **av)
{
    unsigned gpus[16];
    char tenant[64];
    struct caps c;
    int ngpus = step_gpus(sp, gpus, 16);
    int d = decide(sp, ngpus, &c);
    if (d <= 0)
        return d;
    if (fcsp_tenant_name(sp, tenant, sizeof tenant) != 0)
        return -1;
    /* every task writes the same entry (idempotent): whichever runs first registers the step */
    return register_tenant(sp, tenant, &c, gpus, ngpus);
}

int fcsp_remote_task_init(spank_t sp, int ac, char **av)
{
    unsigned gpus[16];
    char tenant[64], preload[4096];
    struct caps c;
    int d = decide(sp, step_gpus(sp, gpus, 16), &c);
    if (d <= 0)
        return d;
    if (fcsp_tenant_name(sp, tenant, sizeof tenant) != 0)
        return -1;
    preload[0] = '\0';
    if (getenv_sp(sp, "LD_PRELOAD", preload, sizeof preload) && !strstr(preload, fcsp_args.lib)) {
        size_t n = strlen(preload);
        if (n + 1 + strlen(fcsp_args.lib) + 1 > sizeof preload) {
            slurm_error(FCSP_PLUGIN ": LD_PRELOAD is too long to add %s", fcsp_args.lib);
            return -1;
        }
        snprintf(preload + n, sizeof preload - n, ":%s", fcsp_args.lib);
    } else if (!preload[0]) {
        snprintf(preload, sizeof preload, "%s", fcsp_args.lib);
    }
    if (spank_setenv(sp, "LD_PRELOAD", preload, 1) != ESPANK_SUCCESS ||
        spank_setenv(sp, "FCSP_TENANT", tenant, 1) != ESPANK_SUCCESS ||
        spank_setenv(sp, "FCSP_SCHEDULER", "slurm", 1) != ESPANK_SUCCESS ||
        spank_setenv(sp, "FCSP_REGION_DIR", fcsp_args.region_dir, 1) != ESPANK_SUCCESS) {
        slurm_error(FCSP_PLUGIN ": cannot set the task's environment");
        return -1;
    }
    /* The mode the policy entry holds, so the task's environment tells the truth (a job's own spatial under a
     * time entry would only be ignored by libfcsp); a time step keeps the job's hard/borrow choice. */
    char mode[16];
    const char *want = NULL;
    if (c.sm_mode == FCSP_POLICY_SM_SPATIAL)
        want = "spatial";
    else if (getenv_sp(sp, "FCSP_SM_MODE", mode, sizeof mode) && !strcmp(mode, "spatial"))
        want = "hard";
    if (want && spank_setenv(sp, "FCSP_SM_MODE", want, 1) != ESPANK_SUCCESS) {
        slurm_error(FCSP_PLUGIN ": cannot set the task's FCSP_SM_MODE");
        return -1;
    }
    return 0;
}

int fcsp_remote_exit(spank_t sp, int ac, char **av)
{
    char tenant[64];
    if (fcsp_tenant_name(sp, tenant, sizeof tenant) != 0)
        return 0;
    fcsp_cleanup_prefix(tenant); /* harmless when the step had no tenant */
    return 0;
}
