#include "common/region.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "fcsp/fcsp_api.h"

#define REMEDY "stop the jobs that use it and remove the file, or run `fcsp node`, which rebuilds it when no process is attached"

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

FCSP_API int fcsp_region_dir_default(char *buf, size_t len, char *err, size_t errlen)
{
    const char *env = getenv("FCSP_REGION_DIR");
    struct stat st;
    if (env && *env) {
        if (env[0] != '/')
            return fcsp_err(err, errlen, FCSP_EINVAL,
                            "FCSP_REGION_DIR='%s' is not valid: use an absolute directory path", env);
        snprintf(buf, len, "%s", env);
        return FCSP_OK;
    }
    if (geteuid() == 0 || (lstat("/run/fcsp", &st) == 0 && S_ISDIR(st.st_mode))) {
        snprintf(buf, len, "/run/fcsp");
        return FCSP_OK;
    }
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && xdg[0] == '/') {
        snprintf(buf, len, "%s/fcsp", xdg);
        return FCSP_OK;
    }
    return fcsp_err(err, errlen, FCSP_ENOENT,
                    "no region directory: /run/fcsp does not exist (run `fcsp node` as root) and XDG_RUNTIME_DIR is "
                    "unset; set FCSP_REGION_DIR to a private directory");
}

/* The directory must be ours or root's, and not writable by others unless sticky: never a predictable /tmp path. */
static int check_or_make_dir(const char *dir, int create, mode_t mode, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(dir, &st) != 0) {
        if (errno != ENOENT || !create)
            return fcsp_err(err, errlen, errno == ENOENT ? FCSP_ENOENT : FCSP_EIO, "region directory %s: %s%s", dir,
                            strerror(errno),
                            errno == EACCES || errno == ENOENT ? " (run `fcsp node` as root to prepare it)" : "");
        if (mkdir(dir, mode) != 0 && errno != EEXIST)
            return fcsp_err(err, errlen, FCSP_EIO, "cannot create region directory %s: %s", dir, strerror(errno));
        if (lstat(dir, &st) != 0)
            return fcsp_err(err, errlen, FCSP_EIO, "region directory %s: %s", dir, strerror(errno));
        /* mkdir honours the umask: set the mode we mean (only if we made it ours) */
        if (st.st_uid == geteuid() && (st.st_mode & 07777) != mode && chmod(dir, mode) == 0)
            st.st_mode = (st.st_mode & ~07777u) | mode;
    }
    if (!S_ISDIR(st.st_mode))
        return fcsp_err(err, errlen, FCSP_EPERM, "region directory %s is not a directory (symbolic links are refused)",
                        dir);
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return fcsp_err(err, errlen, FCSP_EPERM, "region directory %s is owned by uid %u, not root or you", dir,
                        (unsigned)st.st_uid);
    if ((st.st_mode & (S_IWOTH | S_IWGRP)) && !(st.st_mode & S_ISVTX))
        return fcsp_err(err, errlen, FCSP_EPERM, "region directory %s is group- or world-writable and not sticky: "
                        "refused", dir);
    return FCSP_OK;
}

/* Root's node directory is readable by all jobs; its users/ directory is sticky and writable by all but not
 * listable (each uid creates its own file there, nobody can remove or list another's); a user's stay private. */
static mode_t dir_mode(void) { return geteuid() == 0 ? 0755 : 0700; }
static mode_t users_dir_mode(void) { return geteuid() == 0 ? 01733 : 0700; }

static int users_dir(const char *dir, char *buf, size_t len, char *err, size_t errlen)
{
    if ((size_t)snprintf(buf, len, "%s/users", dir) >= len)
        return fcsp_err(err, errlen, FCSP_EINVAL, "region directory path too long: %s", dir);
    return FCSP_OK;
}

static int prepare_dirs(const char *dir, int create, char *err, size_t errlen)
{
    char users[PATH_MAX];
    int rc = check_or_make_dir(dir, create, dir_mode(), err, errlen);
    if (rc == FCSP_OK)
        rc = users_dir(dir, users, sizeof users, err, errlen);
    if (rc == FCSP_OK)
        rc = check_or_make_dir(users, create, users_dir_mode(), err, errlen);
    return rc;
}

FCSP_API int fcsp_region_dir_prepare(const char *dir, char *err, size_t errlen)
{
    if (!dir || dir[0] != '/')
        return fcsp_err(err, errlen, FCSP_EINVAL, "region directory must be an absolute path, not '%s'",
                        dir ? dir : "(null)");
    int rc = prepare_dirs(dir, 1, err, errlen);
    char users[PATH_MAX];
    struct stat st;
    /* root's users/ directory must let every uid create its own file, and only that */
    if (rc == FCSP_OK && geteuid() == 0 && users_dir(dir, users, sizeof users, NULL, 0) == FCSP_OK &&
        lstat(users, &st) == 0 && st.st_uid == 0 && (st.st_mode & 07777) != 01733 && chmod(users, 01733) != 0)
        return fcsp_err(err, errlen, FCSP_EIO, "cannot set mode 1733 on %s: %s", users, strerror(errno));
    return rc;
}

FCSP_API int fcsp_region_path(const char *dir, uint32_t uid, char *buf, size_t len)
{
    if (!dir || dir[0] != '/' || (size_t)snprintf(buf, len, "%s/users/%u.region", dir, (unsigned)uid) >= len)
        return FCSP_EINVAL;
    return FCSP_OK;
}

static int validate_header(const struct fcsp_region *r, const char *path, char *err, size_t errlen)
{
    const struct fcsp_region_header *h = &r->header;
    if (h->version != FCSP_REGION_VERSION || h->header_size != sizeof(struct fcsp_region_header) ||
        h->total_size != sizeof(struct fcsp_region) || h->max_gpus != FCSP_MAX_GPUS ||
        h->max_tenants != FCSP_MAX_TENANTS || h->max_procs != FCSP_MAX_PROCS || h->cacheline != FCSP_CACHELINE)
        return fcsp_err(err, errlen, FCSP_ESTALE,
                        "region %s has layout version %u (size %llu), this fcsp expects version %u (size %zu): "
                        "refused; " REMEDY,
                        path, h->version, (unsigned long long)h->total_size, FCSP_REGION_VERSION,
                        sizeof(struct fcsp_region));
    return FCSP_OK;
}

/* Whether an open region file is one uid's own: a regular file owned by it, mode 0600, one link. Anything else in
 * users/ was put there by someone else (a squat) and is never used. */
static int check_owner(int fd, const char *path, uint32_t uid, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return fcsp_err(err, errlen, FCSP_EIO, "region %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_uid != uid || (st.st_mode & 07777) != 0600 || st.st_nlink != 1)
        return fcsp_err(err, errlen, FCSP_EPERM,
                        "region %s is not uid %u's own (a %s owned by uid %u, mode %04o, %lu links): refused; "
                        "another user created it, and `fcsp node` removes it",
                        path, (unsigned)uid, S_ISREG(st.st_mode) ? "file" : "non-regular file", (unsigned)st.st_uid,
                        (unsigned)(st.st_mode & 07777), (unsigned long)st.st_nlink);
    return FCSP_OK;
}

static const char *kind_of(mode_t mode)
{
    return S_ISREG(mode) ? "file" : S_ISDIR(mode) ? "directory" : S_ISLNK(mode) ? "symbolic link" : "special file";
}

int fcsp_region_clear_squat(const char *dir, const char *path, uint32_t uid)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    fcsp_log(FCSP_LOG_WARN, "removed %s: a %s owned by uid %u, not uid %u's own accounting file (another user put it "
                            "there)",
             path, kind_of(st.st_mode), (unsigned)st.st_uid, (unsigned)uid);
    if (!S_ISDIR(st.st_mode))
        return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
    /* A directory may hold anything: move it out of users/ at once (the name is free again) into the directory
     * only root writes, where the daemon deletes it without following links (region_guard.py). */
    static _Atomic unsigned seq;
    char aside[PATH_MAX];
    /* relaxed: only makes the names unique */
    unsigned n = atomic_fetch_add_explicit(&seq, 1, memory_order_relaxed);
    if ((size_t)snprintf(aside, sizeof aside, "%s/" FCSP_SQUAT_PREFIX "%u-%d-%u", dir, (unsigned)uid, (int)getpid(),
                         n) >= sizeof aside)
        return -1;
    return rename(path, aside) == 0 || errno == ENOENT ? 0 : -1;
}

/* Size a fresh region file with real blocks (a full filesystem is an error here, never a SIGBUS on first touch),
 * fill its header and publish the magic. */
static int init_region_file(int fd, const char *path, char *err, size_t errlen)
{
    int e = posix_fallocate(fd, 0, (off_t)sizeof(struct fcsp_region));
    if (e != 0)
        return fcsp_err(err, errlen, FCSP_EIO, "cannot allocate %zu bytes for region %s: %s",
                        sizeof(struct fcsp_region), path, strerror(e));
    struct fcsp_region *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (r == MAP_FAILED)
        return fcsp_err(err, errlen, FCSP_EIO, "cannot map region %s: %s", path, strerror(errno));
    /* The file is fresh (fallocate zero-fills); fill the header, then publish the magic. */
    struct fcsp_region_header *h = &r->header;
    h->version = FCSP_REGION_VERSION;
    h->header_size = sizeof(struct fcsp_region_header);
    h->total_size = sizeof(struct fcsp_region);
    h->max_gpus = FCSP_MAX_GPUS;
    h->max_tenants = FCSP_MAX_TENANTS;
    h->max_procs = FCSP_MAX_PROCS;
    h->cacheline = FCSP_CACHELINE;
    h->created_ns = fcsp_realtime_ns();
    /* release: whoever reads the magic with acquire sees every header field above */
    __atomic_store_n(&h->magic, FCSP_REGION_MAGIC, __ATOMIC_RELEASE);
    munmap(r, sizeof *r);
    return FCSP_OK;
}

/* root, for another uid: build the file privately (in the region directory, which only root writes), hand it to
 * the uid, then link it into users/. A squat in its place is removed (root may, in the sticky directory). */
static int create_for_uid(const char *dir, const char *path, uint32_t uid, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/.region-%u.%d.tmp", dir, (unsigned)uid, (int)getpid()) >= sizeof tmp)
        return fcsp_err(err, errlen, FCSP_EINVAL, "region directory path too long: %s", dir);
    unlink(tmp);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return fcsp_err(err, errlen, FCSP_EIO, "cannot create %s: %s", tmp, strerror(errno));
    int rc = FCSP_OK;
    if (fchown(fd, uid, (gid_t)-1) != 0 || fchmod(fd, 0600) != 0)
        rc = fcsp_err(err, errlen, FCSP_EIO, "cannot give %s to uid %u: %s", tmp, (unsigned)uid, strerror(errno));
    if (rc == FCSP_OK)
        rc = init_region_file(fd, path, err, errlen);
    for (int tries = 0; rc == FCSP_OK && tries < 8; tries++) {
        if (link(tmp, path) == 0)
            break;
        if (errno != EEXIST) {
            rc = fcsp_err(err, errlen, FCSP_EIO, "cannot link region %s: %s", path, strerror(errno));
            break;
        }
        int old = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        int own = old >= 0 && check_owner(old, path, uid, NULL, 0) == FCSP_OK;
        if (old >= 0)
            close(old);
        if (own)
            break; /* the uid made its own meanwhile: keep it */
        fcsp_region_clear_squat(dir, path, uid);
    }
    close(fd);
    unlink(tmp);
    return rc;
}

static int open_region_file(const char *dir, const char *path, uint32_t uid, int create, char *err, size_t errlen)
{
    /* root making a uid's file (a scheduler registering its tenant) replaces whatever another user put there */
    int replace = create && geteuid() == 0 && uid != geteuid();
    for (int tries = 0;; tries++) {
        int fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0 && (!replace || check_owner(fd, path, uid, NULL, 0) == FCSP_OK))
            return fd;
        int e = errno;
        if ((fd >= 0 || e != ENOENT) && replace && tries < 8) {
            if (fd >= 0)
                close(fd);
            fcsp_region_clear_squat(dir, path, uid);
            continue;
        }
        if (fd >= 0)
            return fd; /* check_owner refuses it */
        struct stat st;
        if (e != ENOENT && lstat(path, &st) == 0 && (st.st_uid != uid || !S_ISREG(st.st_mode)))
            return fcsp_err(err, errlen, FCSP_EPERM,
                            "region %s is not uid %u's own (a %s owned by uid %u, mode %04o): refused; another user "
                            "created it, and `fcsp node` removes it",
                            path, (unsigned)uid, kind_of(st.st_mode), (unsigned)st.st_uid,
                            (unsigned)(st.st_mode & 07777));
        if (e != ENOENT)
            return fcsp_err(err, errlen, e == EACCES ? FCSP_EPERM : FCSP_EIO, "cannot open region %s: %s", path,
                            strerror(e));
        if (!create)
            return fcsp_err(err, errlen, FCSP_ENOENT, "no region at %s", path);
        if (tries >= 8)
            return fcsp_err(err, errlen, FCSP_EIO, "cannot create region %s: it keeps disappearing", path);
        if (uid != geteuid()) {
            int rc = create_for_uid(dir, path, uid, err, errlen);
            if (rc)
                return rc;
            continue;
        }
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST)
            continue; /* lost the race to another creator: open theirs */
        if (fd < 0)
            return fcsp_err(err, errlen, errno == EACCES ? FCSP_EPERM : FCSP_EIO, "cannot create region %s: %s%s",
                            path, strerror(errno),
                            errno == EACCES ? " (its directory is not writable: run `fcsp node` as root)" : "");
        int rc = fchmod(fd, 0600) == 0 ? FCSP_OK
                                       : fcsp_err(err, errlen, FCSP_EIO, "region %s: %s", path, strerror(errno));
        if (rc == FCSP_OK)
            rc = init_region_file(fd, path, err, errlen);
        if (rc) {
            unlink(path);
            close(fd);
            return rc;
        }
        return fd;
    }
}

int fcsp_region_map_open_uid(const char *dir, uint32_t uid, int create, struct fcsp_region_map *out, char *err,
                             size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    out->uid = uid;
    if (uid != geteuid() && geteuid() != 0)
        return fcsp_err(err, errlen, FCSP_EPERM, "only root opens another uid's region");
    int rc = prepare_dirs(dir, create, err, errlen);
    if (rc)
        return rc;
    if (fcsp_region_path(dir, uid, out->path, sizeof out->path) != FCSP_OK)
        return fcsp_err(err, errlen, FCSP_EINVAL, "region directory path too long: %s", dir);
    int fd = open_region_file(dir, out->path, uid, create, err, errlen);
    if (fd < 0)
        return fd;
    rc = check_owner(fd, out->path, uid, err, errlen);
    if (rc) {
        close(fd);
        return rc;
    }
    struct stat st;
    fstat(fd, &st);
    /* A concurrent creator may still be sizing the file: wait for it, bounded. */
    uint64_t deadline = fcsp_now_ms() + FCSP_REGION_WAIT_MS;
    while ((size_t)st.st_size < sizeof(struct fcsp_region) && fcsp_now_ms() < deadline) {
        sleep_ms(5);
        if (fstat(fd, &st) != 0)
            break;
    }
    if ((size_t)st.st_size != sizeof(struct fcsp_region)) {
        close(fd);
        return fcsp_err(err, errlen, FCSP_ESTALE,
                        "region %s has size %lld, expected %zu (another fcsp version, truncated or corrupt): "
                        "refused; " REMEDY,
                        out->path, (long long)st.st_size, sizeof(struct fcsp_region));
    }
    void *p = mmap(NULL, sizeof(struct fcsp_region), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        return fcsp_err(err, errlen, FCSP_EIO, "cannot map region %s: %s", out->path, strerror(e));
    }
    struct fcsp_region *r = p;
    uint64_t magic;
    /* acquire: pairs with the creator's release store of the magic, so the header fields are visible */
    while ((magic = __atomic_load_n(&r->header.magic, __ATOMIC_ACQUIRE)) == 0 && fcsp_now_ms() < deadline)
        sleep_ms(5);
    if (magic != FCSP_REGION_MAGIC) {
        munmap(p, sizeof(struct fcsp_region));
        close(fd);
        return fcsp_err(err, errlen, FCSP_ESTALE,
                        "region %s has magic 0x%016llx, expected 0x%016llx (not an fcsp region, or its creator died "
                        "while creating it): refused; " REMEDY,
                        out->path, (unsigned long long)magic, (unsigned long long)FCSP_REGION_MAGIC);
    }
    rc = validate_header(r, out->path, err, errlen);
    if (rc) {
        munmap(p, sizeof(struct fcsp_region));
        close(fd);
        return rc;
    }
    out->r = r;
    out->fd = fd;
    out->writable = 1;
    return FCSP_OK;
}

int fcsp_region_map_open(const char *dir, int create, struct fcsp_region_map *out, char *err, size_t errlen)
{
    return fcsp_region_map_open_uid(dir, (uint32_t)geteuid(), create, out, err, errlen);
}

void fcsp_region_map_close(struct fcsp_region_map *m)
{
    if (m->r)
        munmap(m->r, sizeof(struct fcsp_region));
    if (m->fd >= 0)
        close(m->fd);
    m->r = NULL;
    m->fd = -1;
}

int fcsp_region_lock(const struct fcsp_region_map *m) { return fcsp_region_lock_wait(m, FCSP_REGION_WAIT_MS); }

int fcsp_region_lock_wait(const struct fcsp_region_map *m, unsigned wait_ms)
{
    uint64_t deadline = fcsp_now_ms() + wait_ms;
    for (;;) {
        if (flock(m->fd, LOCK_EX | LOCK_NB) == 0)
            return FCSP_OK;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return FCSP_EIO;
        if (fcsp_now_ms() >= deadline)
            return FCSP_EBUSY;
        sleep_ms(1);
    }
}

void fcsp_region_unlock(const struct fcsp_region_map *m) { flock(m->fd, LOCK_UN); }

void fcsp_region_bump_topology(struct fcsp_region *r)
{
    /* release: a snapshot that reads the new value (acquire) also sees the slot changes made before it */
    atomic_fetch_add_explicit(&r->header.topology_seq, 1, memory_order_release);
}

void fcsp_atomic_copy_from(void *dst, const void *shared_src, size_t n)
{
    uint64_t *d = dst;
    const uint64_t *s = shared_src;
    for (size_t i = 0; i < n / 8; i++)
        d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED); /* relaxed: the seqlock's fences order the copy */
}

void fcsp_atomic_copy_to(void *shared_dst, const void *src, size_t n)
{
    uint64_t *d = shared_dst;
    const uint64_t *s = src;
    for (size_t i = 0; i < n / 8; i++)
        __atomic_store_n(&d[i], s[i], __ATOMIC_RELAXED); /* relaxed: the seqlock's fences order the copy */
}
