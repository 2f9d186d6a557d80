/* --fcsp-mem, --fcsp-sm, --fcsp-sm-mode, --fcsp-off: validated (libfcsp's parsers for sizes and shares) wherever
 * they are seen (at submit: remote=0). */
#include <stdio.h>
#include <string.h>

#include "fcsp_spank.h"

struct fcsp_opts fcsp_opts;

static int check_lib(const char *opt)
{
    if (fcsp_lib_get())
        return 0;
    slurm_error(FCSP_PLUGIN ": --%s cannot be checked without libfcsp.so (see the message above)", opt);
    return -1;
}

static int opt_mem(int val, const char *optarg, int remote)
{
    char err[256];
    uint64_t bytes;
    double pct;
    if (check_lib("fcsp-mem") != 0)
        return -1;
    if (fcsp_lib_get()->parse_mem(optarg, &bytes, &pct, err, sizeof err) != FCSP_OK) {
        slurm_error(FCSP_PLUGIN ": --fcsp-mem=%s: %s", optarg ? optarg : "", err);
        return -1;
    }
    if (fcsp_opts.off) {
        slurm_error(FCSP_PLUGIN ": --fcsp-mem and --fcsp-off exclude each other");
        return -1;
    }
    if (strlen(optarg) >= sizeof fcsp_opts.mem) {
        slurm_error(FCSP_PLUGIN ": --fcsp-mem=%.40s...: too long", optarg);
        return -1;
    }
    memcpy(fcsp_opts.mem, optarg, strlen(optarg) + 1);
    return 0;
}

static int opt_sm(int val, const char *optarg, int remote)
{
    char err[256];
    uint32_t pct;
    if (check_lib("fcsp-sm") != 0)
        return -1;
    if (fcsp_lib_get()->parse_sm(optarg, &pct, err, sizeof err) != FCSP_OK) {
        slurm_error(FCSP_PLUGIN ": --fcsp-sm=%s: %s", optarg ? optarg : "", err);
        return -1;
    }
    if (fcsp_opts.off) {
        slurm_error(FCSP_PLUGIN ": --fcsp-sm and --fcsp-off exclude each other");
        return -1;
    }
    snprintf(fcsp_opts.sm, sizeof fcsp_opts.sm, "%u", pct);
    return 0;
}

int fcsp_sm_mode_parse(const char *text, uint32_t *mode)
{
    if (text && !strcmp(text, "time"))
        *mode = FCSP_POLICY_SM_TIME;
    else if (text && !strcmp(text, "spatial"))
        *mode = FCSP_POLICY_SM_SPATIAL;
    else
        return -1;
    return 0;
}

static int opt_sm_mode(int val, const char *optarg, int remote)
{
    uint32_t mode;
    if (fcsp_sm_mode_parse(optarg, &mode) != 0) {
        slurm_error(FCSP_PLUGIN ": --fcsp-sm-mode=%.40s: is not a valid mode: use " FCSP_SM_MODE_ACCEPTED,
                    optarg ? optarg : "");
        return -1;
    }
    if (fcsp_opts.off) {
        slurm_error(FCSP_PLUGIN ": --fcsp-sm-mode and --fcsp-off exclude each other");
        return -1;
    }
    snprintf(fcsp_opts.sm_mode, sizeof fcsp_opts.sm_mode, "%s", optarg);
    return 0;
}

static int opt_off(int val, const char *optarg, int remote)
{
    if (!fcsp_args.allow_opt_out) {
        slurm_error(FCSP_PLUGIN ": --fcsp-off: this site does not allow running GPU jobs without fcsp caps");
        return -1;
    }
    if (fcsp_opts.mem[0] || fcsp_opts.sm[0] || fcsp_opts.sm_mode[0]) {
        slurm_error(FCSP_PLUGIN ": --fcsp-off excludes --fcsp-mem, --fcsp-sm and --fcsp-sm-mode");
        return -1;
    }
    fcsp_opts.off = 1;
    return 0;
}

static struct spank_option g_options[] = {
    {"fcsp-mem", "SIZE", "fcsp: cap GPU memory on each GPU of the step: 8G, 8192M or 50% (of the GPU)", 1, 0,
     opt_mem},
    {"fcsp-sm", "PCT", "fcsp: cap the step's share of each GPU's SM time, 1-100 percent", 1, 0, opt_sm},
    {"fcsp-sm-mode", "MODE", "fcsp: keep the SM share as time slices (time) or as an MPS partition (spatial: "
     "lower latency, but a neighbour's GPU fault can end the step)", 1, 0, opt_sm_mode},
    {"fcsp-off", NULL, "fcsp: run without fcsp caps (where the site allows it)", 0, 0, opt_off},
    SPANK_OPTIONS_TABLE_END,
};

int fcsp_options_register(spank_t sp)
{
    for (struct spank_option *o = g_options; o->name; o++) {
        spank_err_t rc = spank_option_register(sp, o);
        if (rc != ESPANK_SUCCESS) {
            slurm_error(FCSP_PLUGIN ": cannot register --%s: %s", o->name, spank_strerror(rc));
            return -1;
        }
    }
    return 0;
}
