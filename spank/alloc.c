/* Allocator context (sbatch, salloc): the same options and checks as srun; they travel to the nodes in
 * _SLURM_SPANK_OPTION_* variables. */
#include "fcsp_spank.h"

int fcsp_alloc_init(spank_t sp, int ac, char **av)
{
    if (fcsp_args_parse(ac, av) != 0)
        return -1;
    return fcsp_options_register(sp);
}
