#include "common/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t fcsp_now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
uint64_t fcsp_now_ms(void) { return clock_ns(CLOCK_MONOTONIC) / 1000000ull; }
uint64_t fcsp_realtime_ns(void) { return clock_ns(CLOCK_REALTIME); }

/* Reads /proc/<pid>/stat: its state letter (field 3) and start time (field 22). 1 if read, 0 if it does not exist
 * (ENOENT/ESRCH), -1 if it cannot be read (out of descriptors, hidepid, permissions): unknown, not gone. */
static int read_stat(pid_t pid, char *state, uint64_t *start_time)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? 0 : -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return e == ESRCH ? 0 : -1;
    if (n == 0)
        return -1;
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -1;
    *state = p[2];
    p += 1; /* at the space before field 3 */
    for (int field = 3; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    if (!p)
        return -1;
    *start_time = strtoull(p + 1, NULL, 10);
    return 1;
}

uint64_t fcsp_proc_start_time(pid_t pid)
{
    char state;
    uint64_t st;
    return read_stat(pid, &state, &st) == 1 ? st : 0;
}

int fcsp_proc_alive(pid_t pid, uint64_t start_time)
{
    if (pid <= 0)
        return 0;
    /* The kernel's word first: ESRCH means no such process (EPERM: it exists, another user's). */
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    char state;
    uint64_t st;
    int rc = read_stat(pid, &state, &st);
    if (rc < 0)
        return 1; /* exists, but /proc does not say who it is: never reap what might be alive */
    if (rc == 0) /* kill saw it a moment ago: it exited since, or /proc hides it (hidepid): ask the kernel again */
        return !(kill(pid, 0) != 0 && errno == ESRCH);
    if (state == 'Z' || state == 'X')
        return 0;
    return st == start_time; /* a different start time: the PID now names another process */
}
