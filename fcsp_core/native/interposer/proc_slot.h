/* Tenants and process slots in the node region: joining, leaving, reclaiming slots of dead processes, and the
 * heartbeat thread. */
#ifndef FCSP_PROC_SLOT_H
#define FCSP_PROC_SLOT_H

#include "common/region.h"
#include "interposer/limits_env.h"

/* Under the region lock: join (or create) the tenant named cfg->tenant and claim a process slot for this process.
 * Returns 0, or a negative FCSP_E* with a message in err. */
int fcsp_attach(struct fcsp_region_map *m, const struct fcsp_config *cfg, int policy_managed, int *tenant_idx,
                int *proc_idx, char *err, size_t errlen);

/* Release this process's slot and its accounting (normal exit). */
void fcsp_detach(struct fcsp_region_map *m, int tenant_idx, int proc_idx);

/* Whether the process in slot p is gone (dead, or its PID reused). */
int fcsp_proc_is_dead(const struct fcsp_proc *p);

/* Under the region lock: drop one process from a tenant; an ephemeral tenant goes with its last process. */
void fcsp_tenant_leave(struct fcsp_region *r, int tenant_idx);

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

/* Under the region lock: record a slot's pid (0: free) in the dense index and start its heartbeat. */
void fcsp_index_proc(struct fcsp_region *r, int proc_idx, int32_t pid);

/* Under the region lock, for a slot whose counters are exact (no accounting window open): give its charges back
 * to its tenant (released[g] = what it held, if released is not NULL) and free it. The caller then leaves the
 * tenant and bumps the topology. Shared by a normal exit (fcsp_detach) and a reclaim (reclaim.c). */
void fcsp_slot_give_back(struct fcsp_region *r, int proc_idx, uint64_t released[]);
/* Under the region lock: mark a slot free, in the slot and in the dense index. */
void fcsp_slot_free(struct fcsp_region *r, int proc_idx);

/* Start the heartbeat thread (idempotent per process). */
void fcsp_heartbeat_start(void);
void fcsp_heartbeat_stop(void);
/* In a fork child: it has no heartbeat thread. */
void fcsp_heartbeat_forget(void);

#endif
