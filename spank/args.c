/* plugstack.conf arguments: key=value, explicit defaults, unknown keys fatal. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcsp_spank.h"


struct fcsp_args fcsp_args;

static int set_str(char *dst, size_t len, const char *key, const char *val)
{
    if (strlen(val) >= len) {
        slurm_error(FCSP_PLUGIN ": plugstack.conf: %s is too long (at most %zu characters)", key, len - 1);
        return -1;
    }
    memcpy(dst, val, strlen(val) + 1);
    return 0;
}

static int set_bool(int *dst, const char *key, const char *val)
{
    if (!strcmp(val, "yes") || !strcmp(val, "1") || !strcmp(val, "true")) {
        *dst = 1;
        return 0;
    }
    if (!strcmp(val, "no") || !strcmp(val, "0") || !strcmp(val, "false")) {
        *dst = 0;
        return 0;
    }
    slurm_error(FCSP_PLUGIN ": plugstack.conf: %s=%s: use yes or no", key, val);
    return -1;
}

static int set_uint(unsigned *dst, const char *key, const char *val)
{
    char *end;
    unsigned long v = strtoul(val, &end, 10);
    if (!*val || *end || v > 1000000) {
        slurm_error(FCSP_PLUGIN ": plugstack.conf: %s=%s: use a whole number", key, val);
        return -1;
    }
    *dst = (unsigned)v;
    return 0;
}

int fcsp_args_parse(int ac, char **av)
{
    memset(&fcsp_args, 0, sizeof fcsp_args);
    /* default: the libfcsp.so installed beside this plugin (fcsp_core/lib) */
    Dl_info info;
    char self[PATH_MAX];
    if (dladdr((void *)&fcsp_args_parse, &info) && info.dli_fname &&
        snprintf(self, sizeof self, "%s", info.dli_fname) < (int)sizeof self)
        snprintf(fcsp_args.lib, sizeof fcsp_args.lib, "%.*s/libfcsp.so", PATH_MAX - 16, dirname(self));
    else
        snprintf(fcsp_args.lib, sizeof fcsp_args.lib, "%s", "libfcsp.so");
    snprintf(fcsp_args.region_dir, sizeof fcsp_args.region_dir, "%s", "/run/fcsp");
    fcsp_args.default_gpu_cap = 0;
    fcsp_args.allow_opt_out = 0; /* opt-out only where the site enables it */
    fcsp_args.shards_per_gpu = 0;
    fcsp_args.default_sm_mode = FCSP_POLICY_SM_TIME;
    for (int i = 0; i < ac; i++) {
        const char *eq = strchr(av[i], '=');
        if (!eq) {
            slurm_error(FCSP_PLUGIN ": plugstack.conf: '%s' is not key=value", av[i]);
            return -1;
        }
        size_t klen = (size_t)(eq - av[i]);
        const char *val = eq + 1;
        int rc;
#define KEY(name) (klen == strlen(name) && !strncmp(av[i], name, klen))
        if (KEY("lib"))
            rc = set_str(fcsp_args.lib, sizeof fcsp_args.lib, "lib", val);
        else if (KEY("region_dir"))
            rc = set_str(fcsp_args.region_dir, sizeof fcsp_args.region_dir, "region_dir", val);
        else if (KEY("default_mem"))
            rc = set_str(fcsp_args.default_mem, sizeof fcsp_args.default_mem, "default_mem", val);
        else if (KEY("default_sm"))
            rc = set_str(fcsp_args.default_sm, sizeof fcsp_args.default_sm, "default_sm", val);
        else if (KEY("sm_mode")) {
            rc = fcsp_sm_mode_parse(val, &fcsp_args.default_sm_mode);
            if (rc != 0)
                slurm_error(FCSP_PLUGIN ": plugstack.conf: sm_mode=%s: use " FCSP_SM_MODE_ACCEPTED, val);
        } else if (KEY("default_gpu_cap"))
            rc = set_bool(&fcsp_args.default_gpu_cap, "default_gpu_cap", val);
        else if (KEY("allow_opt_out"))
            rc = set_bool(&fcsp_args.allow_opt_out, "allow_opt_out", val);
        else if (KEY("shards_per_gpu"))
            rc = set_uint(&fcsp_args.shards_per_gpu, "shards_per_gpu", val);
        else if (KEY("fcsp"))
            rc = set_str(fcsp_args.fcsp_cmd, sizeof fcsp_args.fcsp_cmd, "fcsp", val);
        else {
            slurm_error(FCSP_PLUGIN ": plugstack.conf: unknown argument '%.*s' (known: lib, region_dir, default_mem, "
                        "default_sm, sm_mode, default_gpu_cap, allow_opt_out, shards_per_gpu, fcsp)",
                        (int)klen, av[i]);
            return -1;
        }
#undef KEY
        if (rc != 0)
            return -1;
    }
    if (fcsp_args.region_dir[0] != '/') {
        slurm_error(FCSP_PLUGIN ": plugstack.conf: region_dir must be an absolute path");
        return -1;
    }
    return 0;
}
