/* What an fcsp_region_handle of the public C API is (shared by api.c, api_files.c and api_node.c): the caller's
 * own accounting file and, for root, every other uid's. */
#ifndef FCSP_API_HANDLE_H
#define FCSP_API_HANDLE_H

#include <limits.h>

#include "common/region.h"
#include "fcsp/fcsp_api.h"
#include "fcsp/limits.h"

struct fcsp_region_file {
    struct fcsp_region_map map; /* map.r is NULL unless state == FCSP_FILE_MAPPED */
    uint32_t uid;
    uint32_t state; /* FCSP_FILE_* */
    char reason[FCSP_ERR_LEN];
};

struct fcsp_region_handle {
    char dir[PATH_MAX];
    int node; /* root: the handle maps every uid's file */
    int n, cap;
    struct fcsp_region_file *files; /* files[0] is the caller's own; entries are only appended (stable indexes) */
    uint64_t generation;            /* bumped when a file is mapped or unmapped */
    /* The node's GPUs as the daemon knows them (NVML): snapshots keep room for them, so GPU entries another uid
     * wrote into its own file cannot crowd the real ones out of the merged list. */
    char gpu_seed[FCSP_MAX_GPUS][FCSP_UUID_LEN];
    int nseed;
};

/* How long the daemon waits for the lock of another uid's file: not at all (a user holding their own lock must not
 * stall the node's reaping of everyone else). */
#define FCSP_OTHER_LOCK_WAIT_MS 0

static inline int fcsp_file_is_own(const struct fcsp_region_handle *h, int i)
{
    (void)h;
    return i == 0;
}

static inline unsigned fcsp_file_lock_wait(const struct fcsp_region_handle *h, int i)
{
    return fcsp_file_is_own(h, i) ? FCSP_REGION_WAIT_MS : FCSP_OTHER_LOCK_WAIT_MS;
}

/* Open the handle's files (api_files.c): the caller's own (created if create), and for root every other uid's. */
int fcsp_handle_open(fcsp_region_handle *h, const char *dir, int create, char *err, size_t errlen);
void fcsp_handle_close(fcsp_region_handle *h);
/* Unmap file i and list it as refused (a corrupt file of another uid). */
void fcsp_handle_refuse(fcsp_region_handle *h, int i, const char *reason);

#endif
