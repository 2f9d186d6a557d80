/* Opening, creating and validating the node region and policy files (see include/fcsp/region_layout.h). */
#ifndef FCSP_REGION_H
#define FCSP_REGION_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "fcsp/region_layout.h"

struct fcsp_region_map {
    struct fcsp_region *r;
    int fd;
    int writable;
    uint32_t uid; /* whose accounting file it is */
    char path[PATH_MAX];
};

struct fcsp_policy_map {
    const struct fcsp_policy *p; /* mapped read-only */
    int fd;
    char path[PATH_MAX];
};

/* How long an opener waits for a concurrent creator to finish, and for the structure lock. */
#define FCSP_REGION_WAIT_MS 2000

/* Open (create != 0: create if missing) uid's accounting file <dir>/users/<uid>.region. Only that uid or root may;
 * the file is trusted only when it is a regular file owned by uid, mode 0600, with one link (anything else was
 * put there by another user: FCSP_EPERM naming its owner). Root creating it for another uid replaces a squat. */
int fcsp_region_map_open_uid(const char *dir, uint32_t uid, int create, struct fcsp_region_map *out, char *err,
                             size_t errlen);
/* Root: take whatever another user put at uid's path out of users/ (logged): unlinked, or for a directory moved
 * into dir as FCSP_SQUAT_PREFIX... for the daemon to delete. 0 when the name is free. */
#define FCSP_SQUAT_PREFIX ".squat-"
int fcsp_region_clear_squat(const char *dir, const char *path, uint32_t uid);
/* This process's own file (uid = geteuid()). */
int fcsp_region_map_open(const char *dir, int create, struct fcsp_region_map *out, char *err, size_t errlen);
void fcsp_region_map_close(struct fcsp_region_map *m);

/* Structure lock: serialises claiming/releasing GPU, tenant and process slots (never taken on the hot path).
 * flock(2), so a holder killed with SIGKILL releases it. Gives up after FCSP_REGION_WAIT_MS. */
int fcsp_region_lock(const struct fcsp_region_map *m);
/* The same, giving up after wait_ms (0: one try). */
int fcsp_region_lock_wait(const struct fcsp_region_map *m, unsigned wait_ms);
void fcsp_region_unlock(const struct fcsp_region_map *m);
void fcsp_region_bump_topology(struct fcsp_region *r);

/* Read-only policy table; returns FCSP_ENOENT when there is none (no manager: env limits apply). */
int fcsp_policy_map_open(const char *dir, struct fcsp_policy_map *out, char *err, size_t errlen);
void fcsp_policy_map_close(struct fcsp_policy_map *m);
/* Consistent copy of the entry for tenant (seqlock read); FCSP_ENOENT if absent. */
int fcsp_policy_lookup(const struct fcsp_policy *p, const char *tenant, struct fcsp_policy_entry *out);
uint64_t fcsp_policy_generation(const struct fcsp_policy *p);

/* Word-wise relaxed atomic copies: the seqlock protocol tolerates torn reads, C11 does not tolerate plain racing
 * accesses. Both pointers 8-byte aligned, n a multiple of 8. */
void fcsp_atomic_copy_from(void *dst, const void *shared_src, size_t n);
void fcsp_atomic_copy_to(void *shared_dst, const void *src, size_t n);

#endif
