/* One-line diagnostics on stderr, prefixed "fcsp[pid]: ". Level from FCSP_LOG_LEVEL (error, warn, info, debug;
 * default warn). Each message is written with one write(2) so lines from many processes never interleave. */
#ifndef FCSP_LOG_H
#define FCSP_LOG_H

#include <stdatomic.h>
#include <stddef.h>

enum fcsp_log_level { FCSP_LOG_ERROR = 0, FCSP_LOG_WARN = 1, FCSP_LOG_INFO = 2, FCSP_LOG_DEBUG = 3 };

void fcsp_log(enum fcsp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Log at most once per flag (per process). */
#define fcsp_log_once(flag, level, ...)                                                                             \
    do {                                                                                                            \
        static _Atomic int flag;                                                                                    \
        /* relaxed: the flag orders nothing, it only elects the one caller that prints */                           \
        if (!atomic_exchange_explicit(&flag, 1, memory_order_relaxed))                                              \
            fcsp_log(level, __VA_ARGS__);                                                                           \
    } while (0)

/* Until fcsp_log_capture(NULL, 0), this thread's messages do not go to stderr: the first error is written to buf
 * (without the "fcsp[pid]: " prefix), the rest are dropped. For API calls that report through an err buffer what
 * the library would otherwise print. */
void fcsp_log_capture(char *buf, size_t len);

/* Format into err (may be NULL) like snprintf; returns code so callers can `return fcsp_err(...)`. */
int fcsp_err(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
