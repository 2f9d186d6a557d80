/* VMM allocations shared between processes (cuMemExportToShareableHandle with POSIX fds). The driver frees such
 * memory once every handle (the exporter's, each importer's), every mapping and every shareable handle (fd) is
 * gone, whichever process goes first. Here each share is an entry of the node state and a file: an exported fd is
 * an open file description of that file holding an OFD read lock, which the kernel keeps for as long as any fd of
 * that description is open, in any process (dup, fork, SCM_RIGHTS, pidfd_getfd). A probe with a fresh description
 * (F_OFD_GETLK) tells whether one is left.
 *
 * The bytes are charged to one holder's slot (the exporter's first), so NVML's per-process figure shows them and
 * the reaper does not free them with a dead holder: when the paying process lets go or dies, the charge moves to
 * another holder, or to no process while only fds keep the memory. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sim_state.h"

#define SHARE_MAGIC 0x6663737053484152ULL /* "fcspSHAR" */

struct share_record {
    uint64_t magic;
    uint64_t seed; /* the node state's: a file of another simulated node is not ours */
    uint64_t id;
};

static int holds(const struct sim_share *s, int slot)
{
    return (s->holders[slot / 64] >> (slot % 64)) & 1;
}

static void set_hold(struct sim_share *s, int slot, int on)
{
    uint64_t bit = 1ULL << (slot % 64);
    s->holders[slot / 64] = on ? (s->holders[slot / 64] | bit) : (s->holders[slot / 64] & ~bit);
}

static int first_holder(const struct sim_share *s)
{
    for (int i = 0; i < SIM_MAX_PROCS; i++)
        if (holds(s, i))
            return i;
    return -1;
}

static struct sim_share *find(struct sim_shared *sh, uint64_t id)
{
    for (int i = 0; id && i < SIM_MAX_SHARES; i++)
        if (sh->shares[i].id == id)
            return &sh->shares[i];
    return NULL;
}

/* Moves the charge of s from slot from to slot to (-1: none) without changing the device's live memory. */
static void move_charge(struct sim_shared *sh, struct sim_share *s, int to)
{
    struct sim_gpu *g = &sh->gpu[s->dev];
    sim_gpu_lock(g);
    if (s->payer >= 0) {
        uint64_t *from = &sh->procs[s->payer].live_bytes[s->dev];
        *from = *from >= s->bytes ? *from - s->bytes : 0;
    }
    if (to >= 0)
        sh->procs[to].live_bytes[s->dev] += s->bytes;
    sim_gpu_unlock(g);
    s->payer = to;
}

/* A new description of the share's file with the read lock that stands for it: the fd to hand out. */
static int open_locked_fd(const char *path, int flags)
{
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | flags, 0600);
    if (fd < 0)
        return -1;
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int sim_share_export(struct sim_shared *sh, const char *dir, int slot, int dev, uint64_t bytes, uint64_t *id)
{
    if (slot < 0)
        return -1;
    sim_robust_lock(&sh->procs_mu);
    struct sim_share *s = NULL;
    for (int i = 0; s == NULL && i < SIM_MAX_SHARES; i++)
        if (sh->shares[i].id == 0)
            s = &sh->shares[i];
    int fd = -1;
    if (s) {
        uint64_t new_id = ++sh->next_share_id;
        int n = snprintf(s->path, sizeof s->path, "%s/vmm-share-%d-%llu", dir, (int)getpid(),
                         (unsigned long long)new_id);
        struct share_record rec = {SHARE_MAGIC, sh->seed, new_id};
        if (n > 0 && (size_t)n < sizeof s->path) {
            unlink(s->path); /* a stale file of a reused pid */
            fd = open_locked_fd(s->path, O_CREAT | O_EXCL);
        }
        if (fd >= 0 && pwrite(fd, &rec, sizeof rec, 0) != (ssize_t)sizeof rec) {
            close(fd);
            unlink(s->path);
            fd = -1;
        }
        if (fd >= 0) {
            s->id = new_id;
            s->dev = dev;
            s->bytes = bytes;
            s->payer = slot; /* the exporter already pays for it */
            memset(s->holders, 0, sizeof s->holders);
            set_hold(s, slot, 1);
            *id = new_id;
        }
    }
    pthread_mutex_unlock(&sh->procs_mu);
    return fd;
}

int sim_share_fd(struct sim_shared *sh, uint64_t id)
{
    sim_robust_lock(&sh->procs_mu);
    struct sim_share *s = find(sh, id);
    int fd = s ? open_locked_fd(s->path, 0) : -1;
    pthread_mutex_unlock(&sh->procs_mu);
    return fd;
}

int sim_share_import(struct sim_shared *sh, int fd, int slot, uint64_t *id, int *dev, uint64_t *bytes)
{
    struct share_record rec;
    if (slot < 0 || pread(fd, &rec, sizeof rec, 0) != (ssize_t)sizeof rec || rec.magic != SHARE_MAGIC ||
        rec.seed != sh->seed)
        return -1;
    sim_robust_lock(&sh->procs_mu);
    struct sim_share *s = find(sh, rec.id);
    if (s) {
        set_hold(s, slot, 1);
        if (s->payer < 0)
            move_charge(sh, s, slot); /* only fds kept it: the importer's now, as it holds it */
        *id = s->id;
        *dev = s->dev;
        *bytes = s->bytes;
    }
    pthread_mutex_unlock(&sh->procs_mu);
    return s ? 0 : -1;
}

/* Caller holds procs_mu. */
static void drop_locked(struct sim_shared *sh, struct sim_share *s, int slot)
{
    set_hold(s, slot, 0);
    if (s->payer == slot)
        move_charge(sh, s, first_holder(s));
}

void sim_share_drop(struct sim_shared *sh, uint64_t id, int slot)
{
    if (slot < 0)
        return;
    sim_robust_lock(&sh->procs_mu);
    struct sim_share *s = find(sh, id);
    if (s)
        drop_locked(sh, s, slot);
    sim_share_sweep(sh);
    pthread_mutex_unlock(&sh->procs_mu);
}

void sim_share_reap_slot(struct sim_shared *sh, int slot)
{
    for (int i = 0; i < SIM_MAX_SHARES; i++)
        if (sh->shares[i].id && (holds(&sh->shares[i], slot) || sh->shares[i].payer == slot))
            drop_locked(sh, &sh->shares[i], slot);
}

/* Whether an fd of the share's file is still open anywhere: a lock held by another description. */
static int fd_left(const struct sim_share *s)
{
    int fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0; /* the file is gone: nothing can name the share any more */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int left = fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type != F_UNLCK;
    close(fd);
    return left;
}

void sim_share_sweep(struct sim_shared *sh)
{
    for (int i = 0; i < SIM_MAX_SHARES; i++) {
        struct sim_share *s = &sh->shares[i];
        if (s->id == 0 || first_holder(s) >= 0 || fd_left(s))
            continue;
        sim_mem_uncharge(sh, s->payer, s->dev, s->bytes);
        unlink(s->path);
        memset(s, 0, sizeof *s);
    }
}
