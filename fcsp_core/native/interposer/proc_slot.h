/* Tenants and process slots in the node region: joining and leaving (attach, detach), and the slot primitives
 * that a reclaim (reclaim.h) shares with them. */
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

/* Under the region lock: record a slot's pid (0: free) in the dense index and start its heartbeat. */
void fcsp_index_proc(struct fcsp_region *r, int proc_idx, int32_t pid);

/* Under the region lock, for a slot whose counters are exact (no accounting window open): give its charges back
 * to its tenant (released[g] = what it held, if released is not NULL) and free it. The caller then leaves the
 * tenant and bumps the topology. Shared by a normal exit (fcsp_detach) and a reclaim (reclaim.c). */
void fcsp_slot_give_back(struct fcsp_region *r, int proc_idx, uint64_t released[]);
/* Under the region lock: mark a slot free, in the slot and in the dense index. */
void fcsp_slot_free(struct fcsp_region *r, int proc_idx);

#endif
