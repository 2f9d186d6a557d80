/* The accounting files behind a region handle: the caller's own, and for root every uid's trusted file under
 * <dir>/users/. A file is trusted only when its owner is the uid its name says (region.c checks); anything another
 * user put in a uid's place is removed here, so nobody can deny a uid its accounting by squatting its name. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "fcsp/fcsp_api.h"
#include "interposer/api_handle.h"

static struct fcsp_region_file *add_file(fcsp_region_handle *h, uint32_t uid)
{
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 8;
        struct fcsp_region_file *f = realloc(h->files, (size_t)cap * sizeof *f);
        if (!f)
            return NULL;
        h->files = f;
        h->cap = cap;
    }
    struct fcsp_region_file *f = &h->files[h->n++];
    memset(f, 0, sizeof *f);
    f->map.fd = -1;
    f->uid = uid;
    f->state = FCSP_FILE_ABSENT;
    return f;
}

/* (Re)open file f; its state and reason say how it went. Returns 1 if it is mapped now and was not before. */
static int try_map(fcsp_region_handle *h, struct fcsp_region_file *f, int create, int *rc_out)
{
    if (f->state == FCSP_FILE_MAPPED)
        return 0;
    int rc = fcsp_region_map_open_uid(h->dir, f->uid, create, &f->map, f->reason, sizeof f->reason);
    if (rc_out)
        *rc_out = rc;
    if (rc == FCSP_OK) {
        f->state = FCSP_FILE_MAPPED;
        f->reason[0] = '\0';
        h->generation++;
        return 1;
    }
    f->state = rc == FCSP_ENOENT ? FCSP_FILE_ABSENT : FCSP_FILE_REFUSED;
    fcsp_region_path(h->dir, f->uid, f->map.path, sizeof f->map.path);
    return 0;
}

int fcsp_handle_open(fcsp_region_handle *h, const char *dir, int create, char *err, size_t errlen)
{
    if (!dir || dir[0] != '/' || (size_t)snprintf(h->dir, sizeof h->dir, "%s", dir) >= sizeof h->dir)
        return fcsp_err(err, errlen, FCSP_EINVAL, "region directory must be an absolute path, not '%s'",
                        dir ? dir : "(null)");
    h->node = geteuid() == 0;
    struct fcsp_region_file *own = add_file(h, (uint32_t)geteuid());
    if (!own)
        return fcsp_err(err, errlen, FCSP_EIO, "out of memory");
    int rc = FCSP_OK;
    try_map(h, own, create, &rc);
    if (rc == FCSP_OK) {
        fcsp_region_rescan(h);
        return FCSP_OK;
    }
    /* root without a file of its own yet: the node's view is every other uid's */
    if (!h->node || rc != FCSP_ENOENT || fcsp_region_rescan(h) == 0)
        return fcsp_err(err, errlen, rc, "%s", h->files[0].reason); /* rescan may have moved `own` */
    return FCSP_OK;
}

void fcsp_handle_close(fcsp_region_handle *h)
{
    for (int i = 0; i < h->n; i++)
        fcsp_region_map_close(&h->files[i].map);
    free(h->files);
    h->files = NULL;
    h->n = h->cap = 0;
}

/* "<uid>.region" -> uid; -1 for any other name. */
static long long parse_name(const char *name)
{
    char *end;
    if (name[0] < '0' || name[0] > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(name, &end, 10);
    if (errno || v > UINT32_MAX || strcmp(end, ".region") != 0)
        return -1;
    return (long long)v;
}

/* Remove what another user put in users/ (root may, in the sticky directory); 1 if removed. */
static int remove_squat(const fcsp_region_handle *h, const char *users, const char *name, long long uid)
{
    char path[PATH_MAX];
    struct stat st;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", users, name) >= sizeof path || lstat(path, &st) != 0)
        return 0;
    if (uid >= 0 && S_ISREG(st.st_mode) && st.st_uid == (uid_t)uid)
        return 0; /* the uid's own: trusted or refused on its own merits */
    return fcsp_region_clear_squat(h->dir, path, uid >= 0 ? (uint32_t)uid : UINT32_MAX) == 0;
}

/* Whether a mapped file's path now names another file (a uid may remove its own file, in the sticky directory). */
static int replaced(const struct fcsp_region_file *f)
{
    struct stat mapped, now;
    return f->state == FCSP_FILE_MAPPED && fstat(f->map.fd, &mapped) == 0 &&
           (lstat(f->map.path, &now) != 0 || now.st_ino != mapped.st_ino || now.st_dev != mapped.st_dev);
}

FCSP_API int fcsp_region_rescan(fcsp_region_handle *h)
{
    if (h->node) {
        char users[PATH_MAX];
        DIR *d = NULL;
        if ((size_t)snprintf(users, sizeof users, "%s/users", h->dir) < sizeof users)
            d = opendir(users);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            long long uid = parse_name(e->d_name);
            if (remove_squat(h, users, e->d_name, uid) || uid < 0)
                continue;
            struct fcsp_region_file *f = NULL;
            for (int i = 0; i < h->n && !f; i++)
                if (h->files[i].uid == (uint32_t)uid)
                    f = &h->files[i];
            if (!f && !(f = add_file(h, (uint32_t)uid)))
                break;
            if (f != &h->files[0] && replaced(f)) { /* its owner removed it and made another: follow */
                fcsp_region_map_close(&f->map);
                f->state = FCSP_FILE_ABSENT;
                h->generation++;
            }
            try_map(h, f, 0, NULL);
        }
        if (d)
            closedir(d);
    }
    int mapped = 0;
    for (int i = 0; i < h->n; i++)
        mapped += h->files[i].state == FCSP_FILE_MAPPED;
    return mapped;
}

void fcsp_handle_refuse(fcsp_region_handle *h, int i, const char *reason)
{
    struct fcsp_region_file *f = &h->files[i];
    fcsp_region_map_close(&f->map);
    f->state = FCSP_FILE_REFUSED;
    snprintf(f->reason, sizeof f->reason, "%s", reason);
    h->generation++;
}

FCSP_API int fcsp_region_files(fcsp_region_handle *h, struct fcsp_region_file_info *out, int max)
{
    int n = 0;
    for (int i = 0; i < h->n && n < max; i++) {
        const struct fcsp_region_file *f = &h->files[i];
        struct fcsp_region_file_info *o = &out[n++];
        memset(o, 0, sizeof *o);
        o->uid = f->uid;
        o->state = f->state;
        snprintf(o->path, sizeof o->path, "%s", f->map.path);
        snprintf(o->reason, sizeof o->reason, "%s", f->reason);
    }
    return n;
}

FCSP_API const char *fcsp_region_file(const fcsp_region_handle *h) { return h->files[0].map.path; }
