/* Drives the SPANK plugin's shard arithmetic (spank/shards.c) outside Slurm, for the cases a one-node Slurm of
 * the installed version cannot produce (shards spread over several GPUs need Slurm 23.11+ and
 * SelectTypeParameters=MULTIPLE_SHARING_GRES_PJ).
 *   spank_shards_check gres STRING        -> shards=N
 *   spank_shards_check share N PER NGPUS  -> share=F sm=P
 * Linked with stubs for what Slurm and libfcsp provide in the real plugin. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcsp_spank.h"

struct fcsp_args fcsp_args;
struct fcsp_opts fcsp_opts;

const struct fcsp_lib *fcsp_lib_get(void)
{
    return NULL;
}

void slurm_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "gres")) {
        printf("shards=%ld\n", fcsp_gres_shards(argv[2]));
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "share")) {
        double share = fcsp_shard_share(strtoul(argv[2], NULL, 10), (unsigned)strtoul(argv[3], NULL, 10),
                                        atoi(argv[4]));
        printf("share=%.6f sm=%u\n", share, fcsp_share_sm_pct(share));
        return 0;
    }
    fprintf(stderr, "usage: %s gres STRING | share SHARDS PER_GPU NGPUS\n", argv[0]);
    return 2;
}
