#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int log_threshold(void)
{
    /* Read every time: logging is off the hot path and the environment may be set late in tests. */
    const char *v = getenv("FCSP_LOG_LEVEL");
    if (!v || !*v)
        return FCSP_LOG_WARN;
    if (!strcmp(v, "error"))
        return FCSP_LOG_ERROR;
    if (!strcmp(v, "info"))
        return FCSP_LOG_INFO;
    if (!strcmp(v, "debug"))
        return FCSP_LOG_DEBUG;
    return FCSP_LOG_WARN;
}

static _Thread_local char *capture_buf;
static _Thread_local size_t capture_len;

void fcsp_log_capture(char *buf, size_t len)
{
    capture_buf = len ? buf : NULL;
    capture_len = len;
    if (capture_buf)
        capture_buf[0] = '\0';
}

void fcsp_log(enum fcsp_log_level level, const char *fmt, ...)
{
    if (capture_buf) {
        if (level == FCSP_LOG_ERROR && !capture_buf[0]) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(capture_buf, capture_len, fmt, ap);
            va_end(ap);
        }
        return;
    }
    if ((int)level > log_threshold())
        return;
    char line[1024];
    int n = snprintf(line, sizeof line, "fcsp[%d]: ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

int fcsp_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
