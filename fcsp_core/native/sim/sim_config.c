#include "sim_config.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MEM (80ULL << 30)
#define DEFAULT_SMS 132
#define DEFAULT_WAVE_US 5.0
#define MAX_MEM (1ULL << 50)
#define MAX_WAVE_US 1e9

static void complain(const char *var, const char *value, const char *accepted)
{
    fprintf(stderr, "fcsp-sim: invalid %s='%s': expected %s\n", var, value, accepted);
}

/* Parses a non-negative decimal number ("12", "1.5") at *p, advancing it. Returns -1 if there is none. */
static int parse_decimal(const char **p, double *out)
{
    const char *s = *p;
    double v = 0;
    int digits = 0;
    while (isdigit((unsigned char)*s)) {
        v = v * 10 + (*s++ - '0');
        digits++;
    }
    if (*s == '.') {
        s++;
        double scale = 0.1;
        while (isdigit((unsigned char)*s)) {
            v += (*s++ - '0') * scale;
            scale /= 10;
            digits++;
        }
    }
    if (digits == 0 || digits > 30)
        return -1;
    *p = s;
    *out = v;
    return 0;
}

int sim_parse_size(const char *s, unsigned long long *out)
{
    double v;
    if (s == NULL || parse_decimal(&s, &v) != 0)
        return -1;
    double mult = 1;
    switch (toupper((unsigned char)*s)) {
    case 'K': mult = 1024.0; s++; break;
    case 'M': mult = 1024.0 * 1024; s++; break;
    case 'G': mult = 1024.0 * 1024 * 1024; s++; break;
    case 'T': mult = 1024.0 * 1024 * 1024 * 1024; s++; break;
    default: break;
    }
    if (mult > 1 && (s[0] == 'i' || s[0] == 'I') && (s[1] == 'B' || s[1] == 'b'))
        s += 2;
    else if (*s == 'B' || *s == 'b')
        s++;
    if (*s != '\0')
        return -1;
    double bytes = floor(v * mult);
    if (bytes < 0 || bytes > (double)MAX_MEM)
        return -1;
    *out = (unsigned long long)bytes;
    return 0;
}

static int parse_int_in(const char *s, long lo, long hi, int *out)
{
    char *end;
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return -1;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_wave(const char *s, double *out)
{
    double v;
    if (parse_decimal(&s, &v) != 0 || *s != '\0' || v > MAX_WAVE_US)
        return -1;
    *out = v;
    return 0;
}

static int is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '$' || c == '.';
}

/* "5" or "spin=200,noop=1,default=5" */
static int parse_kernel_us(const char *s, struct sim_config *cfg)
{
    if (parse_wave(s, &cfg->default_wave_us) == 0)
        return 0;
    const char *p = s;
    while (*p) {
        const char *name = p;
        while (is_name_char(*p))
            p++;
        size_t len = (size_t)(p - name);
        if (len == 0 || len >= SIM_KERNEL_NAME_MAX || *p != '=')
            return -1;
        p++;
        const char *val = p;
        while (*p && *p != ',')
            p++;
        char buf[64];
        size_t vlen = (size_t)(p - val);
        if (vlen == 0 || vlen >= sizeof buf)
            return -1;
        memcpy(buf, val, vlen);
        buf[vlen] = '\0';
        double us;
        if (parse_wave(buf, &us) != 0)
            return -1;
        if (len == 7 && strncmp(name, "default", 7) == 0) {
            cfg->default_wave_us = us;
        } else {
            if (cfg->nrules >= SIM_MAX_KERNEL_RULES)
                return -1;
            struct sim_kernel_rule *r = &cfg->rules[cfg->nrules++];
            memcpy(r->name, name, len);
            r->name[len] = '\0';
            r->wave_us = us;
        }
        if (*p == ',') {
            p++;
            if (*p == '\0')
                return -1;
        }
    }
    return 0;
}

int sim_config_load(struct sim_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->gpus = 1;
    cfg->mem_bytes = DEFAULT_MEM;
    cfg->sms = DEFAULT_SMS;
    cfg->default_wave_us = DEFAULT_WAVE_US;

    const char *v = getenv("FCSP_SIM_GPUS");
    if (v && parse_int_in(v, 1, SIM_MAX_GPUS, &cfg->gpus) != 0) {
        complain("FCSP_SIM_GPUS", v, "an integer from 1 to 8");
        return -1;
    }
    v = getenv("FCSP_SIM_MEM");
    if (v && (sim_parse_size(v, &cfg->mem_bytes) != 0 || cfg->mem_bytes < (1ULL << 20))) {
        complain("FCSP_SIM_MEM", v,
                 "a size of at least 1M: bytes, or a number with K, M, G or T (binary), optionally followed by "
                 "B or iB, e.g. 80G, 81920M");
        return -1;
    }
    v = getenv("FCSP_SIM_SMS");
    if (v && parse_int_in(v, 1, SIM_MAX_SMS, &cfg->sms) != 0) {
        complain("FCSP_SIM_SMS", v, "an integer from 1 to 1024");
        return -1;
    }
    v = getenv("FCSP_SIM_MIG");
    if (v && parse_int_in(v, 0, 1, &cfg->mig) != 0) {
        complain("FCSP_SIM_MIG", v, "0 or 1");
        return -1;
    }
    v = getenv("FCSP_SIM_KERNEL_US");
    if (v && parse_kernel_us(v, cfg) != 0) {
        complain("FCSP_SIM_KERNEL_US", v,
                 "microseconds per wave: a number, or a list like spin=200,noop=1,default=5 (at most 32 names)");
        return -1;
    }
    v = getenv("FCSP_SIM_DIR");
    if (v && v[0] != '\0') {
        if (strlen(v) >= SIM_DIR_MAX) {
            complain("FCSP_SIM_DIR", v, "a directory path shorter than 4000 bytes");
            return -1;
        }
        strcpy(cfg->dir, v);
        cfg->has_dir = 1;
    }
    return 0;
}

double sim_config_wave_us(const struct sim_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nrules; i++)
        if (strcmp(cfg->rules[i].name, name) == 0)
            return cfg->rules[i].wave_us;
    return cfg->default_wave_us;
}
