/* The one grammar for sizes and percentages, used by the interposer (env), the SPANK plugin and Python. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/parse.h"
#include "fcsp/fcsp_api.h"

#define SIZE_HELP "use bytes (8589934592), a binary unit (8G, 8192M, 1.5GiB, 512K) or a percentage of the GPU (50%%)"
#define SM_HELP "use a whole percentage from 1 to 100 (40 or 40%%)"

static const char *skip_space(const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    return s;
}

/* Parses "<digits>[.<digits>]" into a mantissa scaled by 10^frac_digits; returns the end or NULL. */
static const char *parse_decimal(const char *s, uint64_t *int_part, uint64_t *frac_num, uint64_t *frac_den)
{
    const char *p = s;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*p))
        return NULL;
    while (isdigit((unsigned char)*p)) {
        if (v > (UINT64_MAX - 9) / 10)
            return NULL;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    uint64_t num = 0, den = 1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p)) {
            if (den < 1000000000ull) { /* keep 9 fractional digits, ignore the rest */
                num = num * 10 + (uint64_t)(*p - '0');
                den *= 10;
            }
            p++;
        }
    }
    *int_part = v;
    *frac_num = num;
    *frac_den = den;
    return p;
}

static int unit_shift(const char **pp, unsigned *shift)
{
    const char *p = *pp;
    switch (*p) {
    case 'k': case 'K': *shift = 10; break;
    case 'm': case 'M': *shift = 20; break;
    case 'g': case 'G': *shift = 30; break;
    case 't': case 'T': *shift = 40; break;
    case 'b': case 'B': *shift = 0; *pp = p + 1; return 0;
    case '\0': *shift = 0; return 0;
    default: return -1;
    }
    p++;
    if (*p == 'i')
        p++;
    if (*p == 'b' || *p == 'B')
        p++;
    *pp = p;
    return 0;
}

FCSP_API int fcsp_parse_mem_limit(const char *text, uint64_t *bytes, double *percent, char *err, size_t errlen)
{
    if (bytes)
        *bytes = 0;
    if (percent)
        *percent = 0;
    if (!text)
        return fcsp_err(err, errlen, FCSP_EINVAL, "no value: " SIZE_HELP);
    const char *s = skip_space(text);
    uint64_t ip, fnum, fden;
    const char *p = parse_decimal(s, &ip, &fnum, &fden);
    if (!p)
        return fcsp_err(err, errlen, FCSP_EINVAL, "'%s' is not a valid memory size: " SIZE_HELP, text);
    if (*p == '%') {
        p = skip_space(p + 1);
        double pct = (double)ip + (double)fnum / (double)fden;
        if (*p || !(pct > 0.0) || pct > 100.0)
            return fcsp_err(err, errlen, FCSP_EINVAL,
                            "'%s' is not a valid memory size: a percentage must be above 0 and at most 100%%", text);
        if (percent)
            *percent = pct;
        return FCSP_OK;
    }
    unsigned shift;
    if (unit_shift(&p, &shift) != 0 || *skip_space(p))
        return fcsp_err(err, errlen, FCSP_EINVAL, "'%s' is not a valid memory size: " SIZE_HELP, text);
    if (shift == 0 && fnum != 0)
        return fcsp_err(err, errlen, FCSP_EINVAL, "'%s' is not a valid memory size: bytes must be whole", text);
    if (ip > (UINT64_MAX >> 1) >> shift)
        return fcsp_err(err, errlen, FCSP_EINVAL, "'%s' is not a valid memory size: too large", text);
    uint64_t v = (ip << shift) + (uint64_t)(((unsigned __int128)fnum << shift) / fden);
    if (v == 0)
        return fcsp_err(err, errlen, FCSP_EINVAL, "'%s' is not a valid memory size: it must be above 0", text);
    if (bytes)
        *bytes = v;
    return FCSP_OK;
}

FCSP_API int fcsp_parse_sm_limit(const char *text, uint32_t *pct, char *err, size_t errlen)
{
    if (pct)
        *pct = 0;
    if (!text)
        return fcsp_err(err, errlen, FCSP_EINVAL, "no value: " SM_HELP);
    const char *s = skip_space(text);
    if (!isdigit((unsigned char)*s))
        return fcsp_err(err, errlen, FCSP_EINVAL, "'%s' is not a valid SM share: " SM_HELP, text);
    errno = 0;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    const char *p = end;
    if (*p == '%')
        p++;
    if (errno || *skip_space(p) || v < 1 || v > 100)
        return fcsp_err(err, errlen, FCSP_EINVAL, "'%s' is not a valid SM share: " SM_HELP, text);
    if (pct)
        *pct = (uint32_t)v;
    return FCSP_OK;
}

int fcsp_printable_name(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == 0 || n == cap)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

FCSP_API int fcsp_parse_tenant(const char *text, char *err, size_t errlen)
{
    if (!text || !fcsp_printable_name(text, FCSP_NAME_LEN))
        return fcsp_err(err, errlen, FCSP_EINVAL,
                        "'%s' is not a valid tenant name: use 1 to %d printable characters without spaces",
                        text ? text : "", FCSP_NAME_LEN - 1);
    return FCSP_OK;
}
