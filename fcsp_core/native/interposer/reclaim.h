/* Reclaiming the slots of dead processes (reclaim.c): called under the region lock by an attaching process
 * (proc_slot.c) and by the node daemon (api_node.c). */
#ifndef FCSP_RECLAIM_H
#define FCSP_RECLAIM_H

#include <stdint.h>

#include "common/region.h"

/* What one reclaim did (for the node daemon's reap events). */
struct fcsp_reclaim_info {
    int32_t pid;
    uint64_t start_time;
    int tenant;
    int recomputed; /* the tenant was recomputed from its live slots (it died inside an accounting window) */
    int pending;    /* the slot was REAPING: a reaper died halfway, or an earlier reclaim was deferred */
    int deferred;   /* this reclaim could not quiesce the tenant: the slot stays REAPING */
    uint64_t released[FCSP_MAX_GPUS];
};

/* How long a reclaim waits for a tenant's live processes to leave their accounting windows (windows last
 * microseconds): in the uid's own processes, and in the daemon for another uid's file (whose processes could hold
 * a window open on purpose to stall the node's reaping of everyone else). */
#define FCSP_RECLAIM_QUIESCE_MS 500
#define FCSP_RECLAIM_QUIESCE_OTHER_MS 50

/* Under the region lock (reclaim.c): release a dead process's slot (LIVE) or finish a pending reclaim (REAPING),
 * and count it in the reaper statistics. Returns the bytes released, or -1 if the tenant's live processes could
 * not be quiesced within quiesce_ms (the slot stays REAPING for the next lock holder). info may be NULL. */
long long fcsp_reclaim_slot(struct fcsp_region *r, int proc_idx, struct fcsp_reclaim_info *info, unsigned quiesce_ms);

/* Under the region lock (reclaim.c): set every tenant's process count to the number of its LIVE or REAPING slots
 * (a process killed inside a slot change can leave it off by one); an ephemeral tenant left with none is freed.
 * Returns how many tenants were repaired. */
int fcsp_tenants_recount(struct fcsp_region *r);

#endif
