/* Local context (srun): options are registered and checked here, before anything reaches a node. */
#include "fcsp_spank.h"

int fcsp_local_init(spank_t sp, int ac, char **av)
{
    if (fcsp_args_parse(ac, av) != 0)
        return -1;
    return fcsp_options_register(sp);
}
