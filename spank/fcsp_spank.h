/* fcsp SPANK plugin: state and helpers shared by the per-context files.
 *
 * dispatch.c routes each SPANK callback by context to srun.c (local), alloc.c (sbatch/salloc),
 * slurmstepd.c (remote) or slurmd.c (slurmd and prolog/epilog). args.c parses plugstack.conf arguments,
 * options.c holds the --fcsp-* options, lib.c loads libfcsp.so (the one parser and the policy-table writer)
 * and NVML. */
#ifndef FCSP_SPANK_H
#define FCSP_SPANK_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include <slurm/spank.h>

#include "fcsp/fcsp_api.h"

#define FCSP_PLUGIN "fcsp"
#define FCSP_TENANT_PREFIX "slurm-"

struct fcsp_args {
    char lib[PATH_MAX];        /* libfcsp.so */
    char region_dir[PATH_MAX]; /* the node region and policy table */
    char default_mem[64];      /* cap of a GPU step without options ("" = none) */
    char default_sm[16];
    uint32_t default_sm_mode;  /* FCSP_POLICY_SM_TIME or _SPATIAL: a capped step without --fcsp-sm-mode */
    int default_gpu_cap;       /* a GPU step without fcsp options gets the default caps */
    int allow_opt_out;         /* --fcsp-off is honoured */
    unsigned shards_per_gpu;   /* gres/shard count per GPU (0: shards are not turned into caps) */
    char fcsp_cmd[PATH_MAX];   /* the fcsp command, to start the node daemon ("" = never) */
};

struct fcsp_opts {
    char mem[64]; /* as given ("" = not given) */
    char sm[16];
    char sm_mode[8]; /* "time", "spatial" ("" = not given) */
    int off;
};

extern struct fcsp_args fcsp_args;
extern struct fcsp_opts fcsp_opts;

/* args.c: parse plugstack.conf arguments into fcsp_args (defaults first); -1 (and an error logged) on an unknown
 * key or a bad value. */
int fcsp_args_parse(int ac, char **av);

/* options.c: register --fcsp-mem, --fcsp-sm, --fcsp-sm-mode, --fcsp-off; the callbacks validate (remote=0: at
 * submit). */
int fcsp_options_register(spank_t sp);
/* "time" or "spatial" into FCSP_POLICY_SM_*; -1 (nothing logged) on anything else. */
int fcsp_sm_mode_parse(const char *text, uint32_t *mode);
#define FCSP_SM_MODE_ACCEPTED "time (SM time slices) or spatial (an MPS partition, on nodes running fcsp node --mps)"

/* lib.c: libfcsp.so entry points, loaded once from fcsp_args.lib. Typed from libfcsp's own declarations
 * (fcsp_api.h), so a signature change there breaks this build instead of drifting silently. */
struct fcsp_lib {
    __typeof__(fcsp_parse_mem_limit) *parse_mem;
    __typeof__(fcsp_parse_sm_limit) *parse_sm;
    __typeof__(fcsp_policy_put) *policy_put;
    __typeof__(fcsp_policy_remove) *policy_remove;
    __typeof__(fcsp_policy_list) *policy_list;
    __typeof__(fcsp_policy_init) *policy_init;
    __typeof__(fcsp_region_dir_prepare) *dir_prepare;
    __typeof__(fcsp_region_open) *region_open;
    __typeof__(fcsp_region_close) *region_close;
    __typeof__(fcsp_region_reap) *region_reap;
    __typeof__(fcsp_region_tenant_remove) *tenant_remove;
    __typeof__(fcsp_region_snapshot) *region_snapshot;
};
const struct fcsp_lib *fcsp_lib_get(void);

/* One GPU as NVML sees it. */
struct fcsp_gpu {
    unsigned index;
    uint64_t total_bytes;
    char uuid[48];
};
/* NVML facts of the GPU at index; 0 or -1 (why in err). */
int fcsp_nvml_gpu(unsigned index, struct fcsp_gpu *out, char *err, size_t errlen);

/* shards.c: shards as an upper bound. Shards named in a gres string ("gpu:1,shard:2", "shard:type:2"): the
 * count, 0 when none, -1 when unreadable. */
long fcsp_gres_shards(const char *gres);
/* The share of each GPU (0..1) a step holding `shards` shards spread over ngpus GPUs can be promised. */
double fcsp_shard_share(unsigned long shards, unsigned shards_per_gpu, int ngpus);
/* SM percentage of a share, rounded up (1..100). */
uint32_t fcsp_share_sm_pct(double share);
/* Refuse (one line logged, -1) --fcsp-off, or an --fcsp-mem percentage or --fcsp-sm above the share. Byte caps
 * are checked where the GPU's size is known (the node). */
int fcsp_shard_check_opts(unsigned long shards, double share);
/* submit.c: the submit side's check of fcsp options against the shards it can see requested. */
int fcsp_submit_check(spank_t sp);

/* slurmstepd.c / slurmd.c helpers (common.c) */
int fcsp_tenant_name(spank_t sp, char *buf, size_t len);
/* Reap dead processes, then remove the policy entries and tenants whose name starts with prefix. */
int fcsp_cleanup_prefix(const char *prefix);
/* Start `fcsp node` on the region when no daemon holds its pid file. */
void fcsp_ensure_daemon(void);

/* per-context entry points */
int fcsp_local_init(spank_t sp, int ac, char **av);
int fcsp_alloc_init(spank_t sp, int ac, char **av);
int fcsp_remote_init(spank_t sp, int ac, char **av);
int fcsp_remote_task_init_privileged(spank_t sp, int ac, char **av);
int fcsp_remote_task_init(spank_t sp, int ac, char **av);
int fcsp_remote_exit(spank_t sp, int ac, char **av);
int fcsp_slurmd_init(spank_t sp, int ac, char **av);
int fcsp_job_prolog(spank_t sp, int ac, char **av);
int fcsp_job_epilog(spank_t sp, int ac, char **av);

#endif
