/* fcsp SPANK plugin: every callback routed by context to its file. */
#include "fcsp_spank.h"

SPANK_PLUGIN(fcsp, 1);

int slurm_spank_init(spank_t sp, int ac, char **av)
{
    switch (spank_context()) {
    case S_CTX_LOCAL: return fcsp_local_init(sp, ac, av);
    case S_CTX_ALLOCATOR: return fcsp_alloc_init(sp, ac, av);
    case S_CTX_REMOTE: return fcsp_remote_init(sp, ac, av);
    case S_CTX_SLURMD: return fcsp_slurmd_init(sp, ac, av);
    default: return 0;
    }
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
    switch (spank_context()) {
    case S_CTX_LOCAL:
    case S_CTX_ALLOCATOR: return fcsp_submit_check(sp);
    default: return 0;
    }
}

int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av)
{
    return spank_context() == S_CTX_REMOTE ? fcsp_remote_task_init_privileged(sp, ac, av) : 0;
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
    return spank_context() == S_CTX_REMOTE ? fcsp_remote_task_init(sp, ac, av) : 0;
}

int slurm_spank_exit(spank_t sp, int ac, char **av)
{
    return spank_context() == S_CTX_REMOTE ? fcsp_remote_exit(sp, ac, av) : 0;
}

int slurm_spank_job_prolog(spank_t sp, int ac, char **av)
{
    return spank_context() == S_CTX_JOB_SCRIPT ? fcsp_job_prolog(sp, ac, av) : 0;
}

int slurm_spank_job_epilog(spank_t sp, int ac, char **av)
{
    return spank_context() == S_CTX_JOB_SCRIPT ? fcsp_job_epilog(sp, ac, av) : 0;
}
