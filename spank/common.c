/* Helpers of the node side: tenant names, cleanup, the node daemon. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fcsp_spank.h"

#include <slurm/slurm.h> /* SLURM_BATCH_SCRIPT and the other special step ids */

int fcsp_tenant_name(spank_t sp, char *buf, size_t len)
{
    uint32_t job = 0, step = 0;
    if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS ||
        spank_get_item(sp, S_JOB_STEPID, &step) != ESPANK_SUCCESS) {
        slurm_error(FCSP_PLUGIN ": cannot get the job and step id");
        return -1;
    }
    int n;
    if (step == SLURM_BATCH_SCRIPT)
        n = snprintf(buf, len, FCSP_TENANT_PREFIX "%u.batch", job);
    else if (step == SLURM_EXTERN_CONT)
        n = snprintf(buf, len, FCSP_TENANT_PREFIX "%u.extern", job);
    else if (step == SLURM_INTERACTIVE_STEP)
        n = snprintf(buf, len, FCSP_TENANT_PREFIX "%u.interactive", job);
    else
        n = snprintf(buf, len, FCSP_TENANT_PREFIX "%u.%u", job, step);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

static int matches(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    /* "slurm-12." matches every step of job 12; an exact step name matches only itself */
    return prefix[n - 1] == '.' ? strncmp(name, prefix, n) == 0 : strcmp(name, prefix) == 0;
}

int fcsp_cleanup_prefix(const char *prefix)
{
    const struct fcsp_lib *lib = fcsp_lib_get();
    char err[512];
    int rc = 0;
    if (!lib)
        return -1;
    fcsp_region_handle *h = NULL;
    struct fcsp_snapshot *snap = NULL;
    struct fcsp_policy_in *pol = calloc(256, sizeof *pol);
    if (!pol)
        return -1;
    int np = lib->policy_list(fcsp_args.region_dir, pol, 256, err, sizeof err);
    for (int i = 0; i < np; i++) {
        if (matches(pol[i].tenant, prefix) &&
            lib->policy_remove(fcsp_args.region_dir, pol[i].tenant, err, sizeof err) != FCSP_OK) {
            slurm_error(FCSP_PLUGIN ": removing the policy of %s: %s", pol[i].tenant, err);
            rc = -1;
        }
    }
    if (lib->region_open(fcsp_args.region_dir, 0, &h, err, sizeof err) != FCSP_OK)
        goto out; /* no region: nothing accounted */
    struct fcsp_reap_event ev[64];
    /* reclaim the step's dead processes (tasks killed by scancel, a crash) so their tenant can go */
    for (int pass = 0; pass < 16 && lib->region_reap(h, 0, ev, 64) == 64; pass++)
        ;
    /* tenants of this job, as the region sees them (the policy entry may be gone already) */
    snap = malloc(sizeof *snap);
    if (!snap || lib->region_snapshot(h, snap) != FCSP_OK)
        goto out;
    for (uint32_t i = 0; i < snap->ntenants && i < sizeof snap->tenants / sizeof snap->tenants[0]; i++) {
        const char *name = snap->tenants[i].name;
        uint32_t uid = snap->tenants[i].uid; /* names are per uid */
        if (!name[0] || !matches(name, prefix))
            continue;
        int r = lib->tenant_remove(h, uid, name);
        for (int tries = 0; r == FCSP_EBUSY && tries < 50; tries++) { /* a task still exiting */
            usleep(100 * 1000);
            lib->region_reap(h, 0, ev, 64);
            r = lib->tenant_remove(h, uid, name);
        }
        if (r != FCSP_OK && r != FCSP_ENOENT) {
            slurm_error(FCSP_PLUGIN ": removing tenant %s from the region: error %d", name, r);
            rc = -1;
        }
    }
out:
    if (h)
        lib->region_close(h);
    free(snap);
    free(pol);
    return rc;
}

/* The PID a running node daemon wrote into its lock file, 0 when none holds it (-1: held, PID unreadable yet). */
static long lock_holder(const char *lock)
{
    char buf[32];
    int fd = open(lock, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    /* a shared lock we can take means no daemon holds its exclusive one; closing drops ours */
    int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ssize_t n = held ? read(fd, buf, sizeof buf - 1) : 0;
    close(fd);
    if (!held)
        return 0;
    buf[n > 0 ? n : 0] = '\0';
    char *end;
    long pid = strtol(buf, &end, 10);
    return end != buf && pid > 0 ? pid : -1;
}

void fcsp_ensure_daemon(void)
{
    char lock[PATH_MAX + 16], log[PATH_MAX + 16], err[512];
    const struct fcsp_lib *lib;
    if (!fcsp_args.fcsp_cmd[0] || !(lib = fcsp_lib_get()))
        return;
    if (lib->dir_prepare(fcsp_args.region_dir, err, sizeof err) != FCSP_OK) {
        slurm_error(FCSP_PLUGIN ": region directory %s: %s", fcsp_args.region_dir, err);
        return;
    }
    snprintf(lock, sizeof lock, "%s/node.lock", fcsp_args.region_dir);
    snprintf(log, sizeof log, "%s/node.log", fcsp_args.region_dir);
    if (lock_holder(lock) != 0)
        return; /* a daemon (a unit, or one we started) owns the node */
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        slurm_error(FCSP_PLUGIN ": cannot start the node daemon: pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        slurm_error(FCSP_PLUGIN ": cannot start the node daemon: fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return;
    }
    if (pid == 0) {
        pid_t daemon = -1;
        if (setsid() < 0 || (daemon = fork()) != 0) {
            /* tell the caller which process the daemon is (or -1), then leave it to init */
            ssize_t w = write(pfd[1], &daemon, sizeof daemon);
            _exit(w == (ssize_t)sizeof daemon ? 0 : 1);
        }
        int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
        int in = open("/dev/null", O_RDONLY);
        if (out < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
            _exit(1);
        for (int f = 3; f < 1024; f++)
            close(f);
        execl(fcsp_args.fcsp_cmd, fcsp_args.fcsp_cmd, "node", "--region-dir", fcsp_args.region_dir, "--no-metrics",
              (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    pid_t daemon = -1;
    if (read(pfd[0], &daemon, sizeof daemon) != (ssize_t)sizeof daemon)
        daemon = -1;
    close(pfd[0]);
    waitpid(pid, NULL, 0);
    if (daemon <= 0) {
        slurm_error(FCSP_PLUGIN ": cannot start the node daemon: fork failed");
        return;
    }
    /* Wait until it holds the lock, so the next caller (the first job's prolog) finds it instead of starting a
     * second one; stop waiting when it exits (a bad install, another daemon won the lock). */
    for (int tries = 0; tries < 100; tries++) {
        long holder = lock_holder(lock);
        if (holder == (long)daemon) {
            slurm_info(FCSP_PLUGIN ": started the node daemon, pid %d (%s node --region-dir %s; log %s)",
                       (int)daemon, fcsp_args.fcsp_cmd, fcsp_args.region_dir, log);
            return;
        }
        if (holder > 0 && kill(daemon, 0) != 0)
            return; /* another starter's daemon won the lock; ours gave way */
        if (kill(daemon, 0) != 0 && errno == ESRCH) {
            slurm_error(FCSP_PLUGIN ": %s node --region-dir %s exited at once: see %s", fcsp_args.fcsp_cmd,
                        fcsp_args.region_dir, log);
            return;
        }
        usleep(50 * 1000);
    }
    slurm_error(FCSP_PLUGIN ": started %s node --region-dir %s (pid %d), but it holds no lock on %s after 5 s: "
                "see %s", fcsp_args.fcsp_cmd, fcsp_args.region_dir, (int)daemon, lock, log);
}
