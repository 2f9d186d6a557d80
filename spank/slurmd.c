/* slurmd and job-script (prolog/epilog) contexts, as root: keep the node daemon running, clean up after jobs. */
#include <stdio.h>
#include <stdlib.h>

#include "fcsp_spank.h"

int fcsp_slurmd_init(spank_t sp, int ac, char **av)
{
    if (fcsp_args_parse(ac, av) != 0)
        return -1;
    fcsp_ensure_daemon();
    return 0;
}

int fcsp_job_prolog(spank_t sp, int ac, char **av)
{
    if (fcsp_args_parse(ac, av) != 0)
        return -1;
    fcsp_ensure_daemon();
    return 0;
}

/* Every step of the job: the policy entries go, dead processes are reclaimed, the tenants removed (even when
 * tasks were killed and slurmstepd's exit hook never ran). Never fails the epilog (that would drain the node). */
int fcsp_job_epilog(spank_t sp, int ac, char **av)
{
    uint32_t job = 0;
    char prefix[64];
    if (fcsp_args_parse(ac, av) != 0)
        return 0;
    if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS) {
        const char *env = getenv("SLURM_JOB_ID");
        job = env ? (uint32_t)strtoul(env, NULL, 10) : 0;
    }
    if (job == 0) {
        slurm_error(FCSP_PLUGIN ": epilog: no job id");
        return 0;
    }
    snprintf(prefix, sizeof prefix, FCSP_TENANT_PREFIX "%u.", job);
    fcsp_cleanup_prefix(prefix);
    return 0;
}
