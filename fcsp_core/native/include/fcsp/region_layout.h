/* Layout of the accounting region (one file per uid, <region dir>/users/<uid>.region, 0600: shared read-write by that
 * uid's fcsp processes and mapped by the root node daemon) and of the policy table (limits set by the node manager;
 * tenants map it read-only).
 *
 * This header is the single definition of both files' layout. Change anything here and bump the matching
 * version: a process that meets a file of another version, magic or size refuses it with a clear message.
 *
 * Concurrency model: every field that more than one process writes is a C11 atomic and is only touched with an
 * explicit memory order (see region.c, admission.c, proc_slot.c for the orders and why). Structures written by
 * different processes live on separate cache lines (FCSP_CACHELINE) so one tenant's hot counters never bounce
 * another tenant's.
 */
#ifndef FCSP_REGION_LAYOUT_H
#define FCSP_REGION_LAYOUT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "fcsp/limits.h"

/* 128, not 64: x86's adjacent-line prefetcher pulls pairs of 64-byte lines, so 64-byte padding still shares. */
#define FCSP_CACHELINE 128

#define FCSP_REGION_MAGIC 0x3147455250534346ull /* "FCSPREG1" little endian */
/* Bump the version with any change to a struct below; tests/test_layout_version.py fails on a layout change whose
 * digest is not recorded here (and on a digest recorded for a version that already had another). */
#define FCSP_REGION_VERSION 3u /* 2: reaper statistics; 3: one file per uid, the tenant's own cap (cap_set) */
#define FCSP_REGION_LAYOUT_DIGEST "8511149dda78b959"
#define FCSP_POLICY_MAGIC 0x314c4f5050534346ull /* "FCSPPOL1" */
#define FCSP_POLICY_VERSION 2u /* 2: sm_mode (the scheduler picks time slices or spatial) */
#define FCSP_POLICY_LAYOUT_DIGEST "8b391a0a8e906e2f"

/* ---------------------------------------------------------------------------------------------------------------
 * Accounting region
 * ------------------------------------------------------------------------------------------------------------- */

enum fcsp_gpu_state { FCSP_GPU_FREE = 0, FCSP_GPU_CLAIMING = 1, FCSP_GPU_READY = 2 };

/* One physical GPU, keyed by UUID. Written once by the first process that meets the GPU, read by everyone. */
struct fcsp_gpu_entry {
    alignas(FCSP_CACHELINE) _Atomic uint32_t state; /* fcsp_gpu_state; READY is stored with release after the fields */
    uint32_t sm_count;                              /* multiprocessors, from the driver */
    uint64_t total_bytes;                           /* physical memory, from the driver */
    char uuid[FCSP_UUID_LEN];                       /* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", NUL-terminated */
    /* Reaper statistics: written by reapers under the region lock, read by the exporter. */
    _Atomic uint64_t reaped_total; /* dead processes whose slot held memory on this GPU, reclaimed */
};

enum fcsp_tenant_state { FCSP_TENANT_FREE = 0, FCSP_TENANT_CLAIMING = 1, FCSP_TENANT_ACTIVE = 2 };

enum fcsp_tenant_flags {
    FCSP_TENANT_EPHEMERAL = 1u << 0, /* removed by the last process that leaves (standalone, env-configured) */
    FCSP_TENANT_POLICY = 1u << 1     /* limits come from the policy table; removed by the manager */
};

/* nprocs value that marks a tenant being torn down: joiners see it and start over. */
#define FCSP_TENANT_CLOSING UINT32_MAX

/* A heartbeat older than this makes a slot a candidate for the liveness check (the owner beats every 100 ms). */
#define FCSP_STALE_BEAT_MS 1000

/* A tenant's counters on one GPU. Written by all the tenant's processes (hot: every allocation), so each sits on
 * its own cache line. */
struct fcsp_tenant_gpu {
    alignas(FCSP_CACHELINE) _Atomic uint64_t used_bytes; /* admitted device memory; CAS-updated by admission */
    /* The tenant's caps (0 = none): the policy's (every process writes the same), else those of the first of its
     * processes to use the GPU (cap_set says they are set); a process never enforces a larger one than these. */
    _Atomic uint64_t limit_bytes;
    _Atomic uint64_t peak_bytes;    /* high-water mark of used_bytes */
    _Atomic uint64_t refused_total; /* allocations refused by the cap */
    _Atomic uint32_t sm_limit_pct;
    _Atomic uint32_t cap_set; /* 0 until limit_bytes/sm_limit_pct are the tenant's; written under the region lock */
    /* Compute (second line, hot on every capped launch; sm_limiter.c). Units are nanoseconds of GPU time. */
    alignas(FCSP_CACHELINE) _Atomic uint64_t sm_tat_ns; /* GCRA theoretical arrival time, CLOCK_MONOTONIC ns;
                                                          * also how neighbours tell the tenant is active */
    _Atomic uint64_t sm_granted_ns_total;                /* GPU time charged to admitted launches */
    _Atomic uint64_t sm_throttled_ns_total;              /* time launches waited for tokens */
    _Atomic uint64_t launches_total;                     /* kernel and graph launches seen (bypassed ones too) */
};

/* A tenant: a set of processes sharing one cap per GPU (an `fcsp run`, a Slurm step, a Ray task). */
struct fcsp_tenant {
    alignas(FCSP_CACHELINE) _Atomic uint32_t state; /* fcsp_tenant_state; ACTIVE stored with release after name */
    _Atomic uint32_t nprocs;                        /* attached processes, FCSP_TENANT_CLOSING while torn down */
    /* Reaper gate: while non-zero, admission waits so a reaper can recompute used_bytes from live process slots
     * (only needed when a process died inside an accounting window, see admission.c). Holds the gate time in ms
     * (CLOCK_MONOTONIC) so a gate left by a dead reaper expires. */
    _Atomic uint64_t reap_gate_ms;
    uint32_t flags;      /* fcsp_tenant_flags, written before ACTIVE */
    uint32_t uid;        /* creator's uid, written before ACTIVE (informative: the file's owner is the truth) */
    uint64_t created_ns; /* CLOCK_REALTIME, written before ACTIVE */
    char name[FCSP_NAME_LEN];
    /* Reaper statistics: written by reapers under the region lock (zeroed by the creator of the tenant), read by the
     * exporter. Kept apart from the admission counters (gpu[]) and from the SM-time fields to come. */
    _Atomic uint64_t reaped_total;       /* dead processes of this tenant whose slot was reclaimed */
    _Atomic uint64_t reaped_bytes_total; /* device memory those reclaims gave back, all GPUs */
    struct fcsp_tenant_gpu gpu[FCSP_MAX_GPUS];
};

enum fcsp_proc_state {
    FCSP_PROC_FREE = 0,
    FCSP_PROC_CLAIMING = 1, /* being filled in by its owner */
    FCSP_PROC_LIVE = 2,
    /* A reaper holds it: nobody may claim it until it returns to FREE. Reapers run under the region lock (a flock,
     * released when its holder dies), so a lock holder that meets a REAPING slot knows its reaper died halfway (or
     * deferred the reclaim) and finishes it (reclaim.c). */
    FCSP_PROC_REAPING = 3
};

/* A process attached to a tenant. Every field but state is written by the owner only (and by a reaper once the
 * owner is dead), so no two writers share its lines. */
struct fcsp_proc {
    alignas(FCSP_CACHELINE) _Atomic uint32_t state; /* fcsp_proc_state */
    _Atomic uint32_t in_op;                         /* owner threads inside an accounting window (admission.c) */
    int32_t pid;
    uint32_t tenant;          /* index into tenants[] */
    uint64_t start_time;      /* /proc/<pid>/stat starttime: guards against PID reuse */
    uint64_t reserved;
    alignas(FCSP_CACHELINE) _Atomic uint64_t used_bytes[FCSP_MAX_GPUS]; /* what this process holds, per GPU */
};

struct fcsp_region_header {
    uint64_t magic; /* stored last (release) by the creator: a reader that sees it sees the whole header */
    uint32_t version;
    uint32_t header_size;
    uint64_t total_size; /* sizeof(struct fcsp_region) */
    uint32_t max_gpus;
    uint32_t max_tenants;
    uint32_t max_procs;
    uint32_t cacheline;
    uint64_t created_ns;
    /* Bumped (release) whenever a GPU, tenant or process slot changes state; snapshots retry while it moves. */
    alignas(FCSP_CACHELINE) _Atomic uint64_t topology_seq;
    /* Reaper statistics: dead processes reclaimed on this node since the region was created (by reapers, under the
     * region lock). On topology_seq's line: both change only when slots change hands. */
    _Atomic uint64_t reaped_total;
    /* Dense indexes, so a process that attaches reads a few pages instead of every tenant's and process's lines
     * (~200 pages, ~100 us of page faults). Written under the region lock together with the slot they describe. */
    alignas(FCSP_CACHELINE) _Atomic uint32_t tenant_key[FCSP_MAX_TENANTS]; /* 0 free, else name hash | 1 */
    alignas(FCSP_CACHELINE) _Atomic int32_t proc_pid[FCSP_MAX_PROCS];      /* 0 free, else the slot's pid */
    /* Each slot's heartbeat (CLOCK_MONOTONIC ms), written by the owner's heartbeat thread every 100 ms: a reaper
     * or an attaching process only asks the kernel about slots whose heartbeat went stale. */
    alignas(FCSP_CACHELINE) _Atomic uint64_t proc_beat_ms[FCSP_MAX_PROCS];
};

struct fcsp_region {
    struct fcsp_region_header header;
    struct fcsp_gpu_entry gpus[FCSP_MAX_GPUS];
    struct fcsp_tenant tenants[FCSP_MAX_TENANTS];
    struct fcsp_proc procs[FCSP_MAX_PROCS];
};

_Static_assert(offsetof(struct fcsp_region_header, magic) == 0, "magic must come first");
_Static_assert(sizeof(struct fcsp_tenant_gpu) == 2 * FCSP_CACHELINE, "tenant gpu counters: memory line + compute line");
_Static_assert(sizeof(struct fcsp_proc) == 2 * FCSP_CACHELINE, "proc slot: identity line + counters line");
_Static_assert(offsetof(struct fcsp_tenant, gpu) == FCSP_CACHELINE, "tenant identity and statistics: one line");
_Static_assert(sizeof(struct fcsp_gpu_entry) == FCSP_CACHELINE, "gpu entry: one line");
_Static_assert(offsetof(struct fcsp_region, gpus) % FCSP_CACHELINE == 0, "gpus aligned");
_Static_assert(offsetof(struct fcsp_region, tenants) % FCSP_CACHELINE == 0, "tenants aligned");
_Static_assert(offsetof(struct fcsp_region, procs) % FCSP_CACHELINE == 0, "procs aligned");
_Static_assert(sizeof(struct fcsp_region) < 8u * 1024u * 1024u, "region stays small");

/* ---------------------------------------------------------------------------------------------------------------
 * Policy table (written only by the node manager: root, or the owner of the region directory)
 * ------------------------------------------------------------------------------------------------------------- */

struct fcsp_policy_gpu {
    char uuid[FCSP_UUID_LEN]; /* "" = unused */
    uint64_t mem_limit_bytes; /* 0 = no cap */
    uint32_t sm_limit_pct;    /* 0 = no cap */
    uint32_t reserved;
};

/* One tenant's limits. Writers serialise on flock(2) of the file and publish through seq (a seqlock): odd while
 * being written; readers retry until they read the same even value before and after copying. */
struct fcsp_policy_entry {
    alignas(FCSP_CACHELINE) _Atomic uint32_t seq;
    uint32_t reserved0;           /* keeps seq alone in the first 8-byte word (readers copy from word 1 on) */
    uint32_t in_use;
    uint32_t ngpus;               /* used entries of gpu[] */
    int64_t uid;                  /* only processes of this uid may take the entry; -1 = any */
    uint64_t mem_limit_bytes;     /* cap on every GPU without an entry in gpu[]; 0 = no cap */
    uint32_t sm_limit_pct;        /* likewise; 0 = no cap */
    uint32_t sm_mode;             /* FCSP_POLICY_SM_TIME or _SPATIAL (fcsp_api.h): the writer picks, never the job */
    char tenant[FCSP_NAME_LEN];
    struct fcsp_policy_gpu gpu[FCSP_MAX_GPUS];
};

struct fcsp_policy_header {
    uint64_t magic;
    uint32_t version;
    uint32_t max_entries;
    uint64_t total_size;
    /* Bumped (release) after every entry change: processes poll it from the heartbeat to apply live changes. */
    alignas(FCSP_CACHELINE) _Atomic uint64_t generation;
};

struct fcsp_policy {
    struct fcsp_policy_header header;
    struct fcsp_policy_entry entries[FCSP_MAX_TENANTS];
};

_Static_assert(offsetof(struct fcsp_policy, entries) % FCSP_CACHELINE == 0, "policy entries aligned");

#endif /* FCSP_REGION_LAYOUT_H */
