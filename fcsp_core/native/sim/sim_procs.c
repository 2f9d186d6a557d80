/* The process table of the shared state: who holds memory, and releasing the memory of processes that are gone. */
#include "sim_state.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Reads state (field 3) and start time (field 22) of /proc/<pid>/stat. Returns 0, or -1 if unreadable. */
static int read_proc_stat(pid_t pid, char *state, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name (field 2) may contain spaces and parentheses */
    if (p == NULL || p[1] != ' ')
        return -1;
    p += 2;
    *state = *p;
    /* p is at field 3; skip to field 22 */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL)
            return -1;
        p++;
    }
    unsigned long long v = 0;
    if (sscanf(p, "%llu", &v) != 1)
        return -1;
    *start = v;
    return 0;
}

static uint64_t self_start_time(void)
{
    char st;
    uint64_t start = 0;
    if (read_proc_stat(getpid(), &st, &start) != 0)
        return 0;
    return start;
}

int sim_pid_alive(int32_t pid_value, uint64_t start_time)
{
    pid_t pid = (pid_t)pid_value;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    char state;
    uint64_t start;
    if (read_proc_stat(pid, &state, &start) != 0)
        return 1; /* no /proc: trust kill() */
    if (state == 'Z' || state == 'X')
        return 0; /* a zombie holds no GPU memory */
    return start_time == 0 || start == start_time;
}

static int proc_alive(const struct sim_proc *p) { return sim_pid_alive(p->pid, p->start_time); }

/* Releases the memory of slot i and frees it. Caller holds procs_mu. */
static void release_slot(struct sim_shared *sh, struct sim_proc *p)
{
    for (uint32_t d = 0; d < sh->ngpus; d++) {
        struct sim_gpu *g = &sh->gpu[d];
        sim_gpu_lock(g);
        uint64_t b = p->live_bytes[d];
        g->live_bytes = g->live_bytes >= b ? g->live_bytes - b : 0;
        p->live_bytes[d] = 0;
        sim_gpu_unlock(g);
    }
    memset(p, 0, sizeof *p);
}

static void reap_locked(struct sim_shared *sh)
{
    pid_t self = getpid();
    for (int i = 0; i < SIM_MAX_PROCS; i++) {
        struct sim_proc *p = &sh->procs[i];
        if (p->pid != 0 && p->pid != self && !proc_alive(p)) {
            sim_share_reap_slot(sh, i); /* memory it shared lives on with its other holders */
            release_slot(sh, p);
        }
    }
    sim_share_sweep(sh);
}

void sim_reap_dead(struct sim_shared *sh)
{
    sim_robust_lock(&sh->procs_mu);
    reap_locked(sh);
    pthread_mutex_unlock(&sh->procs_mu);
}

int sim_proc_register(struct sim_shared *sh)
{
    uint64_t start = self_start_time();
    pid_t self = getpid();
    int slot = -1;
    sim_robust_lock(&sh->procs_mu);
    reap_locked(sh);
    for (int i = 0; i < SIM_MAX_PROCS; i++) {
        struct sim_proc *p = &sh->procs[i];
        if (p->pid == self) {
            /* a stale slot of an earlier process with our pid, or ours after a second attach */
            if (p->start_time != start)
                release_slot(sh, p);
            else {
                slot = i;
                break;
            }
        }
    }
    for (int i = 0; slot < 0 && i < SIM_MAX_PROCS; i++) {
        struct sim_proc *p = &sh->procs[i];
        if (p->pid == 0) {
            memset(p, 0, sizeof *p);
            p->pid = (int32_t)self;
            p->start_time = start;
            slot = i;
        }
    }
    pthread_mutex_unlock(&sh->procs_mu);
    return slot;
}

void sim_proc_note_context(struct sim_shared *sh, int slot, int dev)
{
    if (slot < 0)
        return;
    sim_robust_lock(&sh->procs_mu);
    sh->procs[slot].ctx_mask |= 1u << dev;
    pthread_mutex_unlock(&sh->procs_mu);
}
