/* The policy table: limits a scheduler (through the node manager) sets for tenants. Only the owner of the region
 * directory (root on a real node) writes it; tenants map it read-only, so a job cannot raise its own cap. An entry
 * names the uid whose processes may take it. */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/region.h"
#include "fcsp/fcsp_api.h"

static int policy_path(const char *dir, char *buf, size_t len, char *err, size_t errlen)
{
    if (!dir || dir[0] != '/')
        return fcsp_err(err, errlen, FCSP_EINVAL, "policy directory must be an absolute path, not '%s'",
                        dir ? dir : "(null)");
    if ((size_t)snprintf(buf, len, "%s/policy", dir) >= len)
        return fcsp_err(err, errlen, FCSP_EINVAL, "policy directory path too long: %s", dir);
    return FCSP_OK;
}

static int validate_policy(const struct fcsp_policy *p, const char *path, char *err, size_t errlen)
{
    if (p->header.magic != FCSP_POLICY_MAGIC || p->header.version != FCSP_POLICY_VERSION ||
        p->header.total_size != sizeof(struct fcsp_policy) || p->header.max_entries != FCSP_MAX_TENANTS)
        return fcsp_err(err, errlen, FCSP_ESTALE,
                        "policy %s is not an fcsp policy table of version %u (magic 0x%016llx, version %u): refused",
                        path, FCSP_POLICY_VERSION, (unsigned long long)p->header.magic, p->header.version);
    return FCSP_OK;
}

int fcsp_policy_map_open(const char *dir, struct fcsp_policy_map *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    int rc = policy_path(dir, out->path, sizeof out->path, err, errlen);
    if (rc)
        return rc;
    int fd = open(out->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return fcsp_err(err, errlen, errno == ENOENT ? FCSP_ENOENT : FCSP_EPERM, "cannot open policy %s: %s",
                        out->path, strerror(errno));
    struct stat st, dst;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || stat(dir, &dst) != 0) {
        close(fd);
        return fcsp_err(err, errlen, FCSP_EPERM, "policy %s is not a regular file: refused", out->path);
    }
    /* Trust only a table its manager wrote and nobody else can: owned by root or the directory's owner, and not
     * writable by group or others. */
    if ((st.st_uid != 0 && st.st_uid != dst.st_uid) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
        close(fd);
        return fcsp_err(err, errlen, FCSP_EPERM,
                        "policy %s is owned by uid %u with mode %03o: only a root- or directory-owner-written, "
                        "not group/other-writable table is trusted",
                        out->path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
    }
    if ((size_t)st.st_size != sizeof(struct fcsp_policy)) {
        close(fd);
        return fcsp_err(err, errlen, FCSP_ESTALE, "policy %s has size %lld, expected %zu: refused", out->path,
                        (long long)st.st_size, sizeof(struct fcsp_policy));
    }
    void *p = mmap(NULL, sizeof(struct fcsp_policy), PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return fcsp_err(err, errlen, FCSP_EIO, "cannot map policy %s: %s", out->path, strerror(errno));
    }
    rc = validate_policy(p, out->path, err, errlen);
    if (rc) {
        munmap(p, sizeof(struct fcsp_policy));
        close(fd);
        return rc;
    }
    out->p = p;
    out->fd = fd;
    return FCSP_OK;
}

void fcsp_policy_map_close(struct fcsp_policy_map *m)
{
    if (m->p)
        munmap((void *)m->p, sizeof(struct fcsp_policy));
    if (m->fd >= 0)
        close(m->fd);
    m->p = NULL;
    m->fd = -1;
}

uint64_t fcsp_policy_generation(const struct fcsp_policy *p)
{
    /* acquire: pairs with the writer's release bump, so entries read afterwards are at least this new */
    return atomic_load_explicit(&p->header.generation, memory_order_acquire);
}

/* Seqlock read of one entry; 0 when stable. */
static int read_entry(const struct fcsp_policy_entry *e, struct fcsp_policy_entry *out)
{
    for (int tries = 0; tries < 1000; tries++) {
        /* acquire: the copy below must not start before we saw an even sequence */
        uint32_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
        if (s1 & 1u)
            continue;
        fcsp_atomic_copy_from((char *)out + 8, (const char *)e + 8, sizeof *e - 8);
        /* acquire fence: the copy's loads complete before the re-check of seq */
        atomic_thread_fence(memory_order_acquire);
        uint32_t s2 = atomic_load_explicit(&e->seq, memory_order_relaxed);
        if (s1 == s2)
            return 0;
    }
    return -1;
}

int fcsp_policy_lookup(const struct fcsp_policy *p, const char *tenant, struct fcsp_policy_entry *out)
{
    for (int i = 0; i < FCSP_MAX_TENANTS; i++) {
        if (read_entry(&p->entries[i], out) != 0)
            continue;
        if (out->in_use && strncmp(out->tenant, tenant, FCSP_NAME_LEN) == 0)
            return FCSP_OK;
    }
    return FCSP_ENOENT;
}

/* ---- writer side (manager only) ---- */

/* Writers serialise on <dir>/policy.lock, never on the table itself: every user can open the table (to read it),
 * and flock(2) works through a read-only descriptor, so a lock on it would let any user stall the manager. The lock
 * file is the manager's own, mode 0600. Returns the locked descriptor or a negative FCSP_E*. */
static int lock_writers(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/policy.lock", dir) >= sizeof path)
        return fcsp_err(err, errlen, FCSP_EINVAL, "policy directory path too long: %s", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        fchmod(fd, 0600) != 0 || flock(fd, LOCK_EX) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fcsp_err(err, errlen, FCSP_EIO, "cannot take the policy writers' lock %s: %s", path,
                        fd >= 0 && e == 0 ? "not a regular file of ours" : strerror(e));
    }
    return fd;
}

static int open_for_write(const char *dir, struct fcsp_policy **pp, int *lockp, char *path, size_t pathlen, char *err,
                          size_t errlen)
{
    int rc = policy_path(dir, path, pathlen, err, errlen);
    if (rc)
        return rc;
    struct stat dst;
    if (lstat(dir, &dst) != 0 || !S_ISDIR(dst.st_mode))
        return fcsp_err(err, errlen, FCSP_ENOENT, "policy directory %s does not exist", dir);
    if (geteuid() != 0 && geteuid() != dst.st_uid)
        return fcsp_err(err, errlen, FCSP_EPERM, "only root or the owner of %s may change limits", dir);
    int lock = lock_writers(dir, err, errlen);
    if (lock < 0)
        return lock;
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        close(lock);
        return fcsp_err(err, errlen, errno == EACCES ? FCSP_EPERM : FCSP_EIO, "cannot open policy %s: %s", path,
                        strerror(errno));
    }
    struct stat st;
    rc = FCSP_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || fchmod(fd, 0644) != 0)
        rc = fcsp_err(err, errlen, FCSP_EIO, "policy %s is not a regular file of ours", path);
    int fresh = rc == FCSP_OK && st.st_size == 0;
    int e = fresh ? posix_fallocate(fd, 0, (off_t)sizeof(struct fcsp_policy)) : 0;
    if (e != 0) {
        if (ftruncate(fd, 0) != 0) { /* leave it empty (fresh again), never half-sized */
        }
        rc = fcsp_err(err, errlen, FCSP_EIO, "cannot allocate %zu bytes for policy %s: %s",
                      sizeof(struct fcsp_policy), path, strerror(e));
    }
    if (rc == FCSP_OK && !fresh && (size_t)st.st_size != sizeof(struct fcsp_policy))
        rc = fcsp_err(err, errlen, FCSP_ESTALE, "policy %s has size %lld, expected %zu: refused", path,
                      (long long)st.st_size, sizeof(struct fcsp_policy));
    struct fcsp_policy *p = MAP_FAILED;
    if (rc == FCSP_OK && (p = mmap(NULL, sizeof *p, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED)
        rc = fcsp_err(err, errlen, FCSP_EIO, "cannot map policy %s: %s", path, strerror(errno));
    close(fd); /* the mapping stays */
    if (rc) {
        close(lock);
        return rc;
    }
    if (fresh) {
        p->header.version = FCSP_POLICY_VERSION;
        p->header.max_entries = FCSP_MAX_TENANTS;
        p->header.total_size = sizeof *p;
        /* release: readers validate the magic after mapping; everything before it is then visible */
        __atomic_store_n(&p->header.magic, FCSP_POLICY_MAGIC, __ATOMIC_RELEASE);
    }
    rc = validate_policy(p, path, err, errlen);
    if (rc) {
        munmap(p, sizeof *p);
        close(lock);
        return rc;
    }
    *pp = p;
    *lockp = lock; /* holds the writers' lock until closed */
    return FCSP_OK;
}

static void close_write(struct fcsp_policy *p, int lock)
{
    munmap(p, sizeof *p);
    close(lock); /* drops the writers' lock */
}

static void write_entry(struct fcsp_policy *p, struct fcsp_policy_entry *e, const struct fcsp_policy_entry *val)
{
    uint32_t s = atomic_load_explicit(&e->seq, memory_order_relaxed);
    /* relaxed store + release fence: readers that see the odd value retry; the data writes cannot move above it */
    atomic_store_explicit(&e->seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    fcsp_atomic_copy_to((char *)e + 8, (const char *)val + 8, sizeof *e - 8);
    /* release: a reader that sees the new even value sees the whole entry */
    atomic_store_explicit(&e->seq, s + 2, memory_order_release);
    /* release: processes polling the generation (acquire) then read the new entry */
    atomic_fetch_add_explicit(&p->header.generation, 1, memory_order_release);
}

static int find_entry(struct fcsp_policy *p, const char *tenant, int *free_slot)
{
    *free_slot = -1;
    for (int i = 0; i < FCSP_MAX_TENANTS; i++) {
        struct fcsp_policy_entry *e = &p->entries[i];
        if (e->in_use && strncmp(e->tenant, tenant, FCSP_NAME_LEN) == 0)
            return i;
        if (!e->in_use && *free_slot < 0)
            *free_slot = i;
    }
    return -1;
}

FCSP_API int fcsp_policy_put(const char *dir, const struct fcsp_policy_in *in, char *err, size_t errlen)
{
    if (!in || !in->tenant[0] || memchr(in->tenant, '\0', FCSP_NAME_LEN) == NULL)
        return fcsp_err(err, errlen, FCSP_EINVAL, "a tenant name of 1..%d characters is required", FCSP_NAME_LEN - 1);
    if (in->sm_limit_pct > 100 || in->ngpus > FCSP_MAX_GPUS)
        return fcsp_err(err, errlen, FCSP_EINVAL, "invalid policy for %s: sm_limit_pct %u (0..100), ngpus %u (0..%d)",
                        in->tenant, in->sm_limit_pct, in->ngpus, FCSP_MAX_GPUS);
    if (in->sm_mode != FCSP_POLICY_SM_TIME && in->sm_mode != FCSP_POLICY_SM_SPATIAL)
        return fcsp_err(err, errlen, FCSP_EINVAL, "invalid policy for %s: sm_mode %u (%d: time slices, %d: spatial)",
                        in->tenant, in->sm_mode, FCSP_POLICY_SM_TIME, FCSP_POLICY_SM_SPATIAL);
    struct fcsp_policy *p;
    int fd;
    char path[PATH_MAX];
    int rc = open_for_write(dir, &p, &fd, path, sizeof path, err, errlen);
    if (rc)
        return rc;
    int free_slot, i = find_entry(p, in->tenant, &free_slot);
    if (i < 0)
        i = free_slot;
    if (i < 0) {
        close_write(p, fd);
        return fcsp_err(err, errlen, FCSP_EFULL, "policy %s is full (%d tenants)", path, FCSP_MAX_TENANTS);
    }
    struct fcsp_policy_entry val;
    memset(&val, 0, sizeof val);
    val.in_use = 1;
    val.uid = in->uid;
    val.mem_limit_bytes = in->mem_limit_bytes;
    val.sm_limit_pct = in->sm_limit_pct;
    val.sm_mode = in->sm_mode;
    val.ngpus = in->ngpus;
    memcpy(val.tenant, in->tenant, FCSP_NAME_LEN);
    for (uint32_t g = 0; g < in->ngpus; g++) {
        memcpy(val.gpu[g].uuid, in->gpu[g].uuid, FCSP_UUID_LEN);
        val.gpu[g].uuid[FCSP_UUID_LEN - 1] = '\0';
        val.gpu[g].mem_limit_bytes = in->gpu[g].mem_limit_bytes;
        val.gpu[g].sm_limit_pct = in->gpu[g].sm_limit_pct > 100 ? 100 : in->gpu[g].sm_limit_pct;
    }
    write_entry(p, &p->entries[i], &val);
    close_write(p, fd);
    /* The tenant's processes will account in the uid's own file: root makes it now, owned by the uid, so a file
     * another user put in its place (to deny the job its accounting) is gone before the job starts. */
    if (geteuid() == 0 && in->uid >= 0 && in->uid <= UINT32_MAX) {
        struct fcsp_region_map m;
        rc = fcsp_region_map_open_uid(dir, (uint32_t)in->uid, 1, &m, err, errlen);
        if (rc)
            return rc;
        fcsp_region_map_close(&m);
    }
    return FCSP_OK;
}

FCSP_API int fcsp_policy_remove(const char *dir, const char *tenant, char *err, size_t errlen)
{
    struct fcsp_policy *p;
    int fd;
    char path[PATH_MAX];
    int rc = open_for_write(dir, &p, &fd, path, sizeof path, err, errlen);
    if (rc)
        return rc;
    int free_slot, i = find_entry(p, tenant, &free_slot);
    if (i >= 0) {
        struct fcsp_policy_entry val;
        memset(&val, 0, sizeof val);
        write_entry(p, &p->entries[i], &val);
    }
    close_write(p, fd);
    return i >= 0 ? FCSP_OK : fcsp_err(err, errlen, FCSP_ENOENT, "no policy for tenant %s", tenant);
}

FCSP_API int fcsp_policy_init(const char *dir, char *err, size_t errlen)
{
    struct fcsp_policy *p;
    int fd;
    char path[PATH_MAX];
    int rc = open_for_write(dir, &p, &fd, path, sizeof path, err, errlen);
    if (rc)
        return rc;
    close_write(p, fd);
    return FCSP_OK;
}

FCSP_API int fcsp_policy_list(const char *dir, struct fcsp_policy_in *out, int max, char *err, size_t errlen)
{
    struct fcsp_policy_map m;
    int rc = fcsp_policy_map_open(dir, &m, err, errlen);
    if (rc == FCSP_ENOENT)
        return 0;
    if (rc)
        return rc;
    int n = 0;
    for (int i = 0; i < FCSP_MAX_TENANTS && n < max; i++) {
        struct fcsp_policy_entry e;
        if (read_entry(&m.p->entries[i], &e) != 0 || !e.in_use)
            continue;
        struct fcsp_policy_in *o = &out[n++];
        memset(o, 0, sizeof *o);
        memcpy(o->tenant, e.tenant, FCSP_NAME_LEN);
        o->uid = e.uid;
        o->mem_limit_bytes = e.mem_limit_bytes;
        o->sm_limit_pct = e.sm_limit_pct;
        o->sm_mode = e.sm_mode;
        o->ngpus = e.ngpus > FCSP_MAX_GPUS ? FCSP_MAX_GPUS : e.ngpus;
        for (uint32_t g = 0; g < o->ngpus; g++) {
            memcpy(o->gpu[g].uuid, e.gpu[g].uuid, FCSP_UUID_LEN);
            o->gpu[g].mem_limit_bytes = e.gpu[g].mem_limit_bytes;
            o->gpu[g].sm_limit_pct = e.gpu[g].sm_limit_pct;
        }
    }
    fcsp_policy_map_close(&m);
    return n;
}
