#include "interposer/limits_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "fcsp/fcsp_api.h"

/* Where the variables come from: the process's environment, or the list fcsp_env_check was given (this thread). */
static _Thread_local char *const *env_list;

static const char *env_get(const char *name)
{
    if (!env_list)
        return getenv(name);
    size_t n = strlen(name);
    for (char *const *e = env_list; *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static int read_mem(const char *var, struct fcsp_mem_spec *out, int *asked)
{
    const char *v = env_get(var);
    if (!v)
        return 0;
    *asked = 1;
    char err[FCSP_ERR_LEN];
    if (fcsp_parse_mem_limit(v, &out->bytes, &out->percent, err, sizeof err) != FCSP_OK) {
        fcsp_log(FCSP_LOG_ERROR, "%s=%s: %s", var, v, err);
        return -1;
    }
    out->set = 1;
    return 1;
}

static int read_sm(const char *var, uint32_t *out, int *asked)
{
    const char *v = env_get(var);
    if (!v)
        return 0;
    *asked = 1;
    char err[FCSP_ERR_LEN];
    if (fcsp_parse_sm_limit(v, out, err, sizeof err) != FCSP_OK) {
        fcsp_log(FCSP_LOG_ERROR, "%s=%s: %s", var, v, err);
        return -1;
    }
    return 1;
}

/* An integer variable in [lo, hi]; 0 if unset, 1 if read, -1 (reported) if invalid. */
static int read_uint(const char *var, unsigned long lo, unsigned long hi, const char *what, int *out)
{
    const char *v = env_get(var);
    if (!v || !*v)
        return 0;
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (*end || v[0] == '-' || n < lo || n > hi) {
        fcsp_log(FCSP_LOG_ERROR, "%s=%s: not valid: use %s", var, v, what);
        return -1;
    }
    *out = (int)n;
    return 1;
}

static int read_uint_scaled(const char *var, unsigned long lo, unsigned long hi, uint64_t scale, uint64_t *out)
{
    char what[64];
    snprintf(what, sizeof what, "a whole number from %lu to %lu", lo, hi);
    int v;
    int rc = read_uint(var, lo, hi, what, &v);
    if (rc > 0)
        *out = (uint64_t)v * scale;
    return rc;
}

int fcsp_config_from_env(struct fcsp_config *c)
{
    memset(c, 0, sizeof *c);
    int bad = 0, rc;
    c->scheduler = env_get("FCSP_SCHEDULER") && *env_get("FCSP_SCHEDULER");
    c->caps_asked = c->scheduler;
    c->on_failure = c->scheduler ? FCSP_ON_FAILURE_FAIL : FCSP_ON_FAILURE_PASSTHROUGH;
    const char *pol = env_get("FCSP_ON_INIT_FAILURE");
    if (pol) {
        if (!strcmp(pol, "fail"))
            c->on_failure = FCSP_ON_FAILURE_FAIL;
        else if (!strcmp(pol, "passthrough"))
            c->on_failure = FCSP_ON_FAILURE_PASSTHROUGH;
        else {
            fcsp_log(FCSP_LOG_ERROR, "FCSP_ON_INIT_FAILURE=%s: not valid: use fail or passthrough", pol);
            bad = 1;
        }
    }
    c->nccl_bypass = 1;
    c->sm_burst_ns = 10ull * 1000000ull;
    c->sm_slice_ns = 2000ull * 1000ull;
    c->sm_sample_ns = 20ull * 1000000ull;
    c->sm_default_wave_ns = 20ull * 1000ull;
    const char *mode = env_get("FCSP_SM_MODE");
    if (mode && *mode) {
        if (!strcmp(mode, "borrow"))
            c->sm_borrow = 1;
        else if (!strcmp(mode, "spatial"))
            c->sm_spatial = 1;
        else if (strcmp(mode, "hard") != 0) {
            fcsp_log(FCSP_LOG_ERROR, "FCSP_SM_MODE=%s: not valid: use hard (a strict cap), borrow (use idle SMs "
                                     "while no other tenant has work) or spatial (an MPS share)", mode);
            bad = 1;
        }
    }
    if (read_uint("FCSP_SM_NCCL_BYPASS", 0, 1, "0 or 1", &c->nccl_bypass) < 0 ||
        read_uint_scaled("FCSP_SM_BURST_MS", 1, 1000, 1000000ull, &c->sm_burst_ns) < 0 ||
        read_uint_scaled("FCSP_SM_SLICE_US", 1, 100000, 1000ull, &c->sm_slice_ns) < 0 ||
        read_uint_scaled("FCSP_SM_SAMPLE_MS", 1, 60000, 1000000ull, &c->sm_sample_ns) < 0 ||
        read_uint_scaled("FCSP_SM_DEFAULT_WAVE_US", 1, 1000000, 1000ull, &c->sm_default_wave_ns) < 0)
        bad = 1;
    const char *t = env_get("FCSP_TENANT");
    if (t && *t) {
        char terr[FCSP_ERR_LEN];
        if (fcsp_parse_tenant(t, terr, sizeof terr) != FCSP_OK) {
            fcsp_log(FCSP_LOG_ERROR, "FCSP_TENANT=%s: %s", t, terr);
            bad = 1;
        } else {
            memcpy(c->tenant, t, strlen(t) + 1);
            c->tenant_from_env = 1;
        }
    }
    if (!c->tenant_from_env)
        snprintf(c->tenant, sizeof c->tenant, "proc-%d", (int)getpid());

    if ((rc = read_mem("FCSP_MEM_LIMIT", &c->mem_all, &c->caps_asked)) < 0)
        bad = 1;
    c->any_env_limit |= rc > 0;
    if ((rc = read_sm("FCSP_SM_LIMIT", &c->sm_all, &c->caps_asked)) < 0)
        bad = 1;
    c->any_env_limit |= rc > 0;
    for (int i = 0; i < FCSP_MAX_GPUS; i++) {
        char var[32];
        snprintf(var, sizeof var, "FCSP_MEM_LIMIT_%d", i);
        if ((rc = read_mem(var, &c->mem_dev[i], &c->caps_asked)) < 0)
            bad = 1;
        c->any_env_limit |= rc > 0;
        snprintf(var, sizeof var, "FCSP_SM_LIMIT_%d", i);
        if ((rc = read_sm(var, &c->sm_dev[i], &c->caps_asked)) < 0)
            bad = 1;
        c->any_env_limit |= rc > 0;
    }
    return bad ? -1 : 0;
}

int fcsp_config_active(const struct fcsp_config *c)
{
    return c->tenant_from_env || c->any_env_limit || c->scheduler;
}

static uint64_t resolve_mem(const struct fcsp_mem_spec *s, uint64_t total)
{
    if (!s->set)
        return 0;
    if (s->bytes)
        return s->bytes;
    return (uint64_t)((double)total * s->percent / 100.0);
}

uint64_t fcsp_min_cap(uint64_t a, uint64_t b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    return a < b ? a : b;
}

void fcsp_env_limits(const struct fcsp_config *c, int ordinal, uint64_t total_bytes, uint64_t *mem_limit,
                     uint32_t *sm_limit)
{
    const struct fcsp_mem_spec *ms = &c->mem_all;
    uint32_t sm = c->sm_all;
    if (ordinal >= 0 && ordinal < FCSP_MAX_GPUS) {
        if (c->mem_dev[ordinal].set)
            ms = &c->mem_dev[ordinal];
        if (c->sm_dev[ordinal])
            sm = c->sm_dev[ordinal];
    }
    *mem_limit = resolve_mem(ms, total_bytes);
    *sm_limit = sm;
}

void fcsp_policy_limits(const struct fcsp_policy_entry *e, const char *uuid, uint64_t *mem_limit, uint32_t *sm_limit)
{
    *mem_limit = e->mem_limit_bytes;
    *sm_limit = e->sm_limit_pct;
    for (uint32_t g = 0; g < e->ngpus && g < FCSP_MAX_GPUS; g++) {
        if (strncmp(e->gpu[g].uuid, uuid, FCSP_UUID_LEN) == 0) {
            *mem_limit = e->gpu[g].mem_limit_bytes;
            *sm_limit = e->gpu[g].sm_limit_pct;
            break;
        }
    }
}

FCSP_API int fcsp_env_check(char **envp, char *err, size_t errlen)
{
    struct fcsp_config c;
    env_list = envp;
    fcsp_log_capture(err, errlen);
    int rc = fcsp_config_from_env(&c);
    fcsp_log_capture(NULL, 0);
    env_list = NULL;
    return rc == 0 ? FCSP_OK : FCSP_EINVAL;
}
