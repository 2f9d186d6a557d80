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
static int check_or_make_dir(const char *dir, int create, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(dir, &st) != 0) {
        if (errno != ENOENT || !create)
            return fcsp_err(err, errlen, errno == ENOENT ? FCSP_ENOENT : FCSP_EIO, "region directory %s: %s", dir,
                            strerror(errno));
        /* Root's node directory is readable by all jobs; a user's stays private. */
        mode_t mode = geteuid() == 0 ? 0755 : 0700;
        if (mkdir(dir, mode) != 0 && errno != EEXIST)
            return fcsp_err(err, errlen, FCSP_EIO, "cannot create region directory %s: %s", dir, strerror(errno));
        if (lstat(dir, &st) != 0)
            return fcsp_err(err, errlen, FCSP_EIO, "region directory %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return fcsp_err(err, errlen, FCSP_EPERM, "region directory %s is not a directory (symbolic links are refused)",
                        dir);
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return fcsp_err(err, errlen, FCSP_EPERM, "region directory %s is owned by uid %u, not root or you", dir,
                        (unsigned)st.st_uid);
    if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
        return fcsp_err(err, errlen, FCSP_EPERM, "region directory %s is world-writable: refused", dir);
    return FCSP_OK;
}

FCSP_API int fcsp_region_dir_prepare(const char *dir, char *err, size_t errlen)
{
    if (!dir || dir[0] != '/')
        return fcsp_err(err, errlen, FCSP_EINVAL, "region directory must be an absolute path, not '%s'",
                        dir ? dir : "(null)");
    return check_or_make_dir(dir, 1, err, errlen);
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

static void init_region(struct fcsp_region *r)
{
    /* The file is fresh (ftruncate zero-fills); fill the header, then publish the magic. */
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
}

/* Mode of a new region file: FCSP_REGION_MODE (octal) if set; root's shared node region 0666 so every user's jobs
 * can account in it (limits themselves live in the root-only policy file); a user's own region 0600. */
static mode_t region_file_mode(void)
{
    const char *m = getenv("FCSP_REGION_MODE");
    if (m && *m) {
        char *end;
        unsigned long v = strtoul(m, &end, 8);
        if (!*end && v <= 0666)
            return (mode_t)v;
        fcsp_log(FCSP_LOG_WARN, "FCSP_REGION_MODE='%s' is not valid: use an octal mode up to 0666; using the default",
                 m);
    }
    return geteuid() == 0 ? 0666 : 0600;
}

static int open_region_file(const char *path, int create, int *writable, char *err, size_t errlen)
{
    for (;;) {
        int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        *writable = 1;
        if (fd < 0 && errno == EACCES && !create) {
            fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            *writable = 0;
        }
        if (fd >= 0)
            return fd;
        if (errno == ELOOP)
            return fcsp_err(err, errlen, FCSP_EPERM, "region %s is a symbolic link: refused", path);
        if (errno != ENOENT)
            return fcsp_err(err, errlen, errno == EACCES ? FCSP_EPERM : FCSP_EIO, "cannot open region %s: %s", path,
                            strerror(errno));
        if (!create)
            return fcsp_err(err, errlen, FCSP_ENOENT, "no region at %s", path);
        mode_t mode = region_file_mode();
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0 && errno == EEXIST)
            continue; /* lost the race to another creator: open theirs */
        if (fd < 0)
            return fcsp_err(err, errlen, FCSP_EIO, "cannot create region %s: %s", path, strerror(errno));
        if (fchmod(fd, mode) != 0 || ftruncate(fd, (off_t)sizeof(struct fcsp_region)) != 0) {
            int e = errno;
            unlink(path);
            close(fd);
            return fcsp_err(err, errlen, FCSP_EIO, "cannot size region %s: %s", path, strerror(e));
        }
        void *p = mmap(NULL, sizeof(struct fcsp_region), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            unlink(path);
            close(fd);
            return fcsp_err(err, errlen, FCSP_EIO, "cannot map region %s: %s", path, strerror(e));
        }
        init_region(p);
        munmap(p, sizeof(struct fcsp_region));
        return fd;
    }
}

int fcsp_region_map_open(const char *dir, int create, struct fcsp_region_map *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    int rc = check_or_make_dir(dir, create, err, errlen);
    if (rc)
        return rc;
    if ((size_t)snprintf(out->path, sizeof out->path, "%s/region", dir) >= sizeof out->path)
        return fcsp_err(err, errlen, FCSP_EINVAL, "region directory path too long: %s", dir);
    int fd = open_region_file(out->path, create, &out->writable, err, errlen);
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fcsp_err(err, errlen, FCSP_EPERM, "region %s is not a regular file: refused", out->path);
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        close(fd);
        return fcsp_err(err, errlen, FCSP_EPERM, "region %s is owned by uid %u, not root or you: refused", out->path,
                        (unsigned)st.st_uid);
    }
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
    int prot = PROT_READ | (out->writable ? PROT_WRITE : 0);
    void *p = mmap(NULL, sizeof(struct fcsp_region), prot, MAP_SHARED, fd, 0);
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
    return FCSP_OK;
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

int fcsp_region_lock(const struct fcsp_region_map *m)
{
    uint64_t deadline = fcsp_now_ms() + FCSP_REGION_WAIT_MS;
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
