/* The public C API of libfcsp.so: what the Python region manager (cffi, ABI mode), the SPANK plugin and tools use.
 *
 * The part between FCSP_CDEF_BEGIN and FCSP_CDEF_END is read verbatim by fcsp_core/_native.py as cffi's cdef, so it
 * must stay in the C subset cffi parses: plain integer #defines, structs, prototypes; no includes, no attributes.
 */
#ifndef FCSP_API_H
#define FCSP_API_H

#include <stddef.h>
#include <stdint.h>

#include "fcsp/limits.h"

#if defined(FCSP_BUILDING_LIB)
#define FCSP_API __attribute__((visibility("default")))
#else
#define FCSP_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* FCSP_CDEF_BEGIN */
#define FCSP_OK 0
#define FCSP_EINVAL -1   /* bad argument or value */
#define FCSP_ENOENT -2   /* no such region, policy file or tenant */
#define FCSP_ESTALE -3   /* region/policy file of another magic, version or size: refused, not trusted */
#define FCSP_EFULL -4    /* no free slot */
#define FCSP_EPERM -5    /* permission or ownership refused */
#define FCSP_EIO -6      /* a system call failed */
#define FCSP_EBUSY -7    /* in use (e.g. removing a tenant that still has processes) */

struct fcsp_gpu_info {
    int32_t index;
    uint32_t sm_count;
    uint64_t total_bytes;
    uint64_t used_bytes; /* sum over tenants */
    char uuid[48];
    /* node daemon: */
    uint64_t reaped_total; /* dead processes that held memory here, reclaimed */
    uint32_t nprocs;       /* live processes holding memory here */
    uint32_t reserved;
};

struct fcsp_tenant_gpu_info {
    uint64_t used_bytes;
    uint64_t limit_bytes; /* 0 = no cap */
    uint64_t peak_bytes;
    uint64_t refused_total;
    uint32_t sm_limit_pct; /* 0 = no cap */
    uint32_t reserved;
    /* compute caps: */
    uint64_t sm_granted_ns_total;   /* GPU time charged to admitted launches */
    uint64_t sm_throttled_ns_total; /* time launches waited for their tenant's tokens */
    uint64_t launches_total;        /* kernel and graph launches */
};

/* fcsp_tenant_info.flags, .nprocs and fcsp_proc_info.state hold region_layout.h's values (api.c asserts they agree). */
#define FCSP_TENANT_INFO_EPHEMERAL 1         /* flags: removed by its last process */
#define FCSP_TENANT_INFO_POLICY 2            /* flags: its limits come from the policy table */
#define FCSP_TENANT_INFO_CLOSING 0xFFFFFFFF  /* nprocs while the tenant is torn down */
#define FCSP_PROC_INFO_FREE 0
#define FCSP_PROC_INFO_CLAIMING 1
#define FCSP_PROC_INFO_LIVE 2
#define FCSP_PROC_INFO_REAPING 3

struct fcsp_tenant_info {
    int32_t index; /* unique in the snapshot: file position * 256 + slot */
    uint32_t uid;  /* owner of the accounting file the tenant is in */
    uint32_t flags;  /* FCSP_TENANT_INFO_EPHEMERAL | FCSP_TENANT_INFO_POLICY */
    uint32_t nprocs; /* FCSP_TENANT_INFO_CLOSING while torn down */
    uint64_t created_ns;
    char name[64];
    struct fcsp_tenant_gpu_info gpu[16];
    /* node daemon: */
    uint64_t reaped_total;       /* dead processes reclaimed */
    uint64_t reaped_bytes_total; /* device memory their reclaims gave back */
};

struct fcsp_proc_info {
    int32_t index; /* unique in the snapshot: file position * 1024 + slot */
    int32_t pid;
    uint32_t tenant; /* the index of its tenant's fcsp_tenant_info */
    uint32_t state;  /* FCSP_PROC_INFO_* */
    uint32_t in_op;
    uint32_t uid; /* owner of the accounting file the slot is in (the pid is what that uid wrote) */
    uint64_t start_time;
    uint64_t heartbeat_ms;
    uint64_t used_bytes[16];
};

/* A snapshot covers every accounting file the handle maps (root: every uid's; a user: their own). GPUs are merged
 * by UUID: gpus[k].index == k, and tenants' gpu[] and processes' used_bytes[] are indexed by it. */
struct fcsp_snapshot {
    uint64_t topology_seq;
    uint64_t now_ms; /* CLOCK_MONOTONIC ms when taken, comparable with heartbeat_ms */
    uint32_t ngpus;
    uint32_t ntenants;
    uint32_t nprocs;
    uint32_t nfiles;       /* accounting files read */
    uint64_t reaped_total; /* dead processes reclaimed since the files were created */
    uint32_t truncated;    /* tenants and processes left out: more than the arrays hold */
    uint32_t unsettled;    /* other uids' files whose slots kept changing during the copy: copied as they were */
    struct fcsp_gpu_info gpus[16];
    struct fcsp_tenant_info tenants[1024];
    struct fcsp_proc_info procs[4096];
};

/* One accounting file of a handle (fcsp_region_files). */
#define FCSP_FILE_MAPPED 0  /* trusted and in use */
#define FCSP_FILE_REFUSED 1 /* another layout, corrupt: not used (reason says why) */
#define FCSP_FILE_ABSENT 2  /* gone */

struct fcsp_region_file_info {
    uint32_t uid;
    uint32_t state; /* FCSP_FILE_* */
    char path[4096];
    char reason[256];
};

struct fcsp_policy_gpu_in {
    char uuid[48];
    uint64_t mem_limit_bytes;
    uint32_t sm_limit_pct;
    uint32_t reserved;
};

/* How a tenant's SM share is kept (fcsp_policy_in.sm_mode). A tenant with a policy entry runs spatially (an MPS
 * partition, FCSP_SM_MODE=spatial) only when its entry says so: spatial can give a tenant more than its time share
 * (each MPS client of a tenant gets the whole partition), so the job's own environment cannot choose it. */
#define FCSP_POLICY_SM_TIME 0
#define FCSP_POLICY_SM_SPATIAL 1

struct fcsp_policy_in {
    char tenant[64];
    int64_t uid; /* -1 = any uid */
    uint64_t mem_limit_bytes;
    uint32_t sm_limit_pct;
    uint32_t ngpus;
    uint32_t sm_mode; /* FCSP_POLICY_SM_TIME (0) or FCSP_POLICY_SM_SPATIAL */
    struct fcsp_policy_gpu_in gpu[16];
};

/* One reclaim done by fcsp_region_reap. */
#define FCSP_REAP_RECOMPUTED 1 /* it died inside an accounting window: its tenant was recomputed from live slots */
#define FCSP_REAP_PENDING 2    /* a reaper died while reclaiming it (or deferred it); this one finished the job */
#define FCSP_REAP_DEFERRED 4   /* its tenant could not be quiesced in time: the slot stays REAPING, retried */

struct fcsp_reap_event {
    int32_t pid;
    uint32_t tenant_index;
    uint64_t start_time;     /* of the dead process (/proc/<pid>/stat field 22) */
    uint64_t released_bytes; /* device memory given back to its tenant, all GPUs */
    uint64_t released_gpu_bytes[16]; /* the same per region GPU index */
    uint32_t flags;                  /* FCSP_REAP_* */
    uint32_t proc_index;             /* as fcsp_proc_info.index */
    char tenant[64];
    uint32_t uid;                    /* whose accounting file */
    uint32_t reserved;
};

typedef struct fcsp_region_handle fcsp_region_handle;

const char *fcsp_version(void);
/* FCSP_REGION_VERSION: the node region layout this library speaks. */
uint32_t fcsp_region_layout_version(void);

/* Directory that holds the region and policy files: $FCSP_REGION_DIR, else /run/fcsp for root or when it exists,
 * else $XDG_RUNTIME_DIR/fcsp. Returns FCSP_ENOENT (and a message in err) when none applies. */
int fcsp_region_dir_default(char *buf, size_t len, char *err, size_t errlen);

/* Open (create != 0: create if missing) the caller's accounting file in dir, <dir>/users/<euid>.region. For root
 * the handle is the node's view: it also maps every other uid's trusted file (fcsp_region_rescan), and opening
 * succeeds without root's own file when others exist. */
int fcsp_region_open(const char *dir, int create, fcsp_region_handle **out, char *err, size_t errlen);
void fcsp_region_close(fcsp_region_handle *h);
/* The caller's own accounting file. */
const char *fcsp_region_file(const fcsp_region_handle *h);
/* <dir>/users/<uid>.region; FCSP_EINVAL if it does not fit. */
int fcsp_region_path(const char *dir, uint32_t uid, char *buf, size_t len);
/* Root: map the trusted files of uids that appeared since, retry refused ones, and remove what another user put
 * in a uid's place (a file not owned by the uid its name says: logged). Returns how many files are mapped. */
int fcsp_region_rescan(fcsp_region_handle *h);
/* The daemon vouches for a GPU of this node (from NVML): snapshots always keep room for it, whatever GPU entries
 * other uids wrote into their own files. FCSP_EFULL past 16. */
int fcsp_region_trust_gpu(fcsp_region_handle *h, const char *uuid);
/* The handle's files (the caller's own first); returns how many were written. */
int fcsp_region_files(fcsp_region_handle *h, struct fcsp_region_file_info *out, int max);
/* A copy of every mapped file, each consistent: retried until none of its GPU, tenant or process slots changed
 * state during the copy (another uid's file that never settles is copied as it was, and counted in unsettled). */
int fcsp_region_snapshot(fcsp_region_handle *h, struct fcsp_snapshot *out);
/* Remove uid's tenant that has no attached process. FCSP_EBUSY if it still has some, FCSP_ENOENT if absent. */
int fcsp_region_tenant_remove(fcsp_region_handle *h, uint32_t uid, const char *tenant);

/* Node daemon. Create (if missing) and check a region directory as fcsp_region_open(create=1) would: for root
 * 0755 with users/ 1733 (sticky, not listable), for a user 0700 with users/ 0700; owned by root or the caller
 * and not writable by others unless sticky. */
int fcsp_region_dir_prepare(const char *dir, char *err, size_t errlen);
/* In every mapped file, under its lock (another uid's file whose lock is taken is skipped this pass): reclaim every
 * process slot whose process the kernel says is dead (gone, a zombie, or its PID reused: the start time decides; a
 * process whose /proc entry cannot be read counts as alive), releasing its memory accounting and its tenant
 * membership, and finish reclaims a dead reaper left halfway (REAPING slots). A LIVE slot is checked against the
 * kernel only when its heartbeat is at least min_heartbeat_age_ms old (0: every slot). Also repairs tenants' process
 * counts from the slots. Writes up to max events (a reclaim past max is left for the next call); returns how many,
 * or a negative FCSP_E*. */
int fcsp_region_reap(fcsp_region_handle *h, uint64_t min_heartbeat_age_ms, struct fcsp_reap_event *events, int max);
/* The handle's topology sequence: it moves whenever a GPU, tenant or process slot of a mapped file changes state,
 * or the set of mapped files changes (one load per file, for a daemon that follows slot changes without copying
 * snapshots). */
uint64_t fcsp_region_topology_seq(fcsp_region_handle *h);
/* Under each file's lock: check the header and every slot for values no fcsp process writes (corruption).
 * FCSP_ESTALE with the first problem in err if the caller's own file is corrupt; another uid's corrupt file is
 * unmapped and listed as refused (fcsp_region_files), and FCSP_OK returned. */
int fcsp_region_check(fcsp_region_handle *h, char *err, size_t errlen);

/* Policy table (only the manager, i.e. the directory's owner, may write it). Writers serialise on <dir>/policy.lock,
 * which only the manager can open. Root putting an entry for a uid also creates that uid's accounting file (owned
 * by it, replacing anything another user put in its place), so a scheduler's tenant cannot be squatted. */
int fcsp_policy_put(const char *dir, const struct fcsp_policy_in *in, char *err, size_t errlen);
int fcsp_policy_remove(const char *dir, const char *tenant, char *err, size_t errlen);
/* Create the policy table if missing (empty, 0644) and check it; FCSP_ESTALE for a table of another layout. */
int fcsp_policy_init(const char *dir, char *err, size_t errlen);
/* Copies up to max entries; returns how many, or a negative FCSP_E*. */
int fcsp_policy_list(const char *dir, struct fcsp_policy_in *out, int max, char *err, size_t errlen);

/* Parsers shared by the interposer, the SPANK plugin and Python (one grammar everywhere).
 * Memory limit: bytes ("8589934592"), a size with a binary unit ("8G", "8192M", "1.5GiB", "512k"), or a percentage
 * of the GPU ("50%"). Exactly one of *bytes / *percent is set non-zero. */
int fcsp_parse_mem_limit(const char *text, uint64_t *bytes, double *percent, char *err, size_t errlen);
/* SM limit: an integer percentage 1..100, optionally followed by '%'. */
int fcsp_parse_sm_limit(const char *text, uint32_t *pct, char *err, size_t errlen);
/* Tenant name: 1 to FCSP_NAME_LEN - 1 printable ASCII characters, no spaces. FCSP_OK or FCSP_EINVAL. */
int fcsp_parse_tenant(const char *text, char *err, size_t errlen);

/* What libfcsp would read from envp ("NAME=value" strings, NULL-terminated) in a job: FCSP_OK, or FCSP_EINVAL with
 * the first refused value in err, in the one line the library would print ("FCSP_SM_LIMIT=150: ..."). */
int fcsp_env_check(char **envp, char *err, size_t errlen);
/* FCSP_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* FCSP_API_H */
