#include "interposer/sm_spatial.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "fcsp/fcsp_api.h"
#include "interposer/sm_limiter.h"
#include "interposer/state.h"

#define RECHECK_NS (100ull * 1000000ull)
#define LIST_MAX (64 * 1024)

static _Atomic int listed;             /* 1 once found in the node's client list */
static _Atomic uint64_t next_check_ns; /* when the list may be read again */

__attribute__((constructor)) static void spatial_env_at_load(void)
{
    fcsp_spatial_env();
}

void fcsp_spatial_env(void)
{
    const char *mode = getenv("FCSP_SM_MODE");
    if (!mode || strcmp(mode, "spatial") != 0)
        return;
    if (!getenv("CUDA_MPS_PIPE_DIRECTORY")) {
        const char *dir = getenv("FCSP_REGION_DIR");
        char pipe[512];
        snprintf(pipe, sizeof pipe, "%s/mps", dir && *dir ? dir : "/run/fcsp");
        setenv("CUDA_MPS_PIPE_DIRECTORY", pipe, 0);
    }
    const char *share = getenv("FCSP_SM_LIMIT");
    if (share && *share && !getenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"))
        setenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", share, 0);
}

/* This process's start time (field 22 of /proc/self/stat, clock ticks since boot), 0 if unknown. */
static unsigned long long self_start_time(void)
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p)
        return 0;
    unsigned long long v = 0;
    /* after ')': field 3 (state) ... field 22 (starttime) */
    for (int field = 3; field <= 22 && p; field++) {
        p = strchr(p + 1, ' ');
        if (p && field == 22)
            v = strtoull(p + 1, NULL, 10);
    }
    return v;
}

/* Whether "<pid> <start time>" of this process is a line of <region dir>/mps-clients, a regular file owned by
 * root and writable by nobody else, in a directory of the same kind. */
static int in_client_list(void)
{
    char dir[512], path[640], err[128];
    struct stat st;
    if (fcsp_region_dir_default(dir, sizeof dir, err, sizeof err) != FCSP_OK || stat(dir, &st) != 0 ||
        st.st_uid != 0 || (st.st_mode & 022))
        return 0;
    snprintf(path, sizeof path, "%s/mps-clients", dir);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    static char buf[LIST_MAX + 1];
    ssize_t n = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0 && !(st.st_mode & 022))
        n = read(fd, buf, LIST_MAX);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char want[64];
    int len = snprintf(want, sizeof want, "%d %llu\n", (int)getpid(), self_start_time());
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, want, (size_t)len) == 0)
            return 1;
    return 0;
}

int fcsp_spatial_on(void)
{
    if (!fcsp_g.cfg.sm_spatial)
        return 0;
    /* relaxed: a value of its own; a stale 0 only costs one more time-sliced launch */
    if (atomic_load_explicit(&listed, memory_order_relaxed))
        return 1;
    uint64_t now = fcsp_coarse_ns();
    uint64_t next = atomic_load_explicit(&next_check_ns, memory_order_relaxed);
    /* relaxed: one thread wins the CAS and reads the list; the others keep time slices meanwhile */
    if (now < next || !atomic_compare_exchange_strong_explicit(&next_check_ns, &next, now + RECHECK_NS,
                                                               memory_order_relaxed, memory_order_relaxed))
        return 0;
    if (!in_client_list()) {
        fcsp_log_once(warned, FCSP_LOG_INFO,
                      "FCSP_SM_MODE=spatial: not (yet) a client of the node's MPS server: time slices keep the "
                      "SM share meanwhile");
        return 0;
    }
    atomic_store_explicit(&listed, 1, memory_order_relaxed);
    fcsp_log(FCSP_LOG_INFO, "spatial mode: a client of the node's MPS server: its SM share is the MPS partition");
    return 1;
}
