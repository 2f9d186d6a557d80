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

/* Under the region lock: release a dead process's slot and accounting. Returns the bytes released, or -1 if its
 * tenant's live processes could not be quiesced in time (left for a later attempt). */
long long fcsp_reclaim_slot(struct fcsp_region *r, int proc_idx);

/* Under the region lock: record a slot's pid (0: free) in the dense index and start its heartbeat. */
void fcsp_index_proc(struct fcsp_region *r, int proc_idx, int32_t pid);

/* Start the heartbeat thread (idempotent per process). */
void fcsp_heartbeat_start(void);
void fcsp_heartbeat_stop(void);
/* In a fork child: it has no heartbeat thread. */
void fcsp_heartbeat_forget(void);

#endif
