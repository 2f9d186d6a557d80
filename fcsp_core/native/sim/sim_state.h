/* The simulated node: per-GPU memory counters, SM timeline and the table of processes, in a file
 * ($FCSP_SIM_DIR/sim-state) that every process of the node maps, or in private memory without FCSP_SIM_DIR.
 * Shared by libcuda.so.1 and libnvidia-ml.so.1 (each links its own copy of this code, hidden).
 *
 * Locking: procs_mu (the process table) may be taken before a GPU's mu, never after. Both are process-shared
 * robust mutexes: the holder may be SIGKILLed, the next locker then marks the mutex consistent and goes on.
 */
#ifndef FCSP_SIM_STATE_H
#define FCSP_SIM_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "sim_config.h"

#define SIM_STATE_MAGIC 0x6663737053494d32ULL /* "fcspSIM2": with the layout fingerprint */
#define SIM_MAX_PROCS 512
#define SIM_STATE_FILE "sim-state"

struct sim_gpu {
    pthread_mutex_t mu; /* guards everything below but the constants */
    unsigned char uuid[16];
    uint64_t total_bytes;
    uint32_t sms;
    uint32_t pad;
    uint64_t live_bytes; /* physical: every allocation, pool caches included, of every process */
    uint64_t peak_bytes; /* max ever of live_bytes (resettable) */
    int64_t sm_free_ns[SIM_MAX_SMS]; /* CLOCK_MONOTONIC time at which each SM is free */
};

struct sim_proc {
    int32_t pid; /* 0: free slot */
    uint32_t ctx_mask; /* bit d: the process made a context on GPU d (under procs_mu) */
    uint64_t start_time; /* /proc/<pid>/stat field 22, to tell a reused pid */
    uint64_t live_bytes[SIM_MAX_GPUS]; /* under the GPU's mu */
};

/* A VMM allocation exported to a shareable handle (a POSIX fd). Like the driver's, its memory lives while any
 * process holds a handle or a mapping of it, or any of its fds is open anywhere (an fd is an open file description
 * of `path` holding an OFD read lock: the lock lives exactly as long as the description). Under procs_mu. */
#define SIM_MAX_SHARES 64
struct sim_share {
    uint64_t id; /* 0: a free entry */
    int32_t dev;
    int32_t payer; /* the process slot its bytes are charged to (-1: no process holds it, only fds) */
    uint64_t bytes;
    uint64_t holders[SIM_MAX_PROCS / 64]; /* slots holding a handle or a mapping of it */
    char path[SIM_DIR_MAX + 64];
};

struct sim_shared {
    _Atomic uint64_t magic; /* published last, with release */
    uint64_t size; /* sizeof(struct sim_shared) */
    uint64_t layout; /* sim_state_layout(): a file of another layout of the same size is refused too */
    uint32_t ngpus;
    uint32_t pad;
    uint64_t seed;
    pthread_mutex_t procs_mu;
    struct sim_proc procs[SIM_MAX_PROCS];
    struct sim_gpu gpu[SIM_MAX_GPUS];
    uint64_t next_share_id; /* under procs_mu */
    struct sim_share shares[SIM_MAX_SHARES];
};

/* A fingerprint of this build's layout of struct sim_shared: every struct's size and every field's offset and
 * size, and the table sizes. Computed, not typed, so a changed layout needs no version bump to be told apart. */
uint64_t sim_state_layout(void);

/* Maps the state of cfg (creating it if this process is the first). Returns 0, or with a message on stderr -2 if
 * FCSP_SIM_DIR is not a directory and -1 on other failures. */
int sim_state_map(const struct sim_config *cfg, struct sim_shared **out);
/* Maps the existing state file in dir without creating it. Returns 0, or -1 (no file, bad file). */
int sim_state_map_existing(const char *dir, struct sim_shared **out);
void sim_state_unmap(struct sim_shared *sh);

/* Claims a slot in the process table for this process. Returns its index, or -1 when the table is full. */
int sim_proc_register(struct sim_shared *sh);
/* Records that this process has a context on dev (for NVML's process list). */
void sim_proc_note_context(struct sim_shared *sh, int slot, int dev);
/* Releases the memory of processes that are gone (SIGKILLed or exited without freeing), like the driver does. */
void sim_reap_dead(struct sim_shared *sh);
/* Whether the process pid that started at start_time (0: any) is alive and not a zombie (reads /proc). */
int sim_pid_alive(int32_t pid, uint64_t start_time);

void sim_gpu_lock(struct sim_gpu *g);
void sim_gpu_unlock(struct sim_gpu *g);
void sim_robust_lock(pthread_mutex_t *mu);

/* Charges bytes of GPU dev to process slot: 0, or -1 when live + bytes would exceed the total (after reaping). */
int sim_mem_charge(struct sim_shared *sh, int slot, int dev, uint64_t bytes);
void sim_mem_uncharge(struct sim_shared *sh, int slot, int dev, uint64_t bytes);
/* Reads live/peak of dev (after reaping). */
void sim_mem_stats(struct sim_shared *sh, int dev, uint64_t *live, uint64_t *peak);
void sim_mem_reset_peak(struct sim_shared *sh, int dev);

/* ---- sim_share.c: VMM allocations shared between processes ---- */
/* Shares an allocation of bytes on dev charged to slot: opens its file in dir and returns an fd for it (a new
 * open file description holding the lock), *id its share. -1 when the table is full or the file fails. */
int sim_share_export(struct sim_shared *sh, const char *dir, int slot, int dev, uint64_t bytes, uint64_t *id);
/* Another fd of share id (each export hands out a new one). -1 if it is gone. */
int sim_share_fd(struct sim_shared *sh, uint64_t id);
/* The share an fd from sim_share_export names; slot now holds it. 0, or -1 (not such an fd, share gone). */
int sim_share_import(struct sim_shared *sh, int fd, int slot, uint64_t *id, int *dev, uint64_t *bytes);
/* slot holds no handle or mapping of share id any more: its charge moves to another holder (or to no process),
 * and the memory is freed once no holder and no fd is left. */
void sim_share_drop(struct sim_shared *sh, uint64_t id, int slot);
/* The reaper's part, for a dead slot (caller holds procs_mu): as sim_share_drop for every share it held. */
void sim_share_reap_slot(struct sim_shared *sh, int slot);
/* Frees the shares nobody holds whose fds are all closed (caller holds procs_mu). */
void sim_share_sweep(struct sim_shared *sh);

/* NVML-style "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" of dev into buf (at least 41 bytes). */
void sim_format_uuid(const struct sim_shared *sh, int dev, char *buf);

/* Places a kernel that needs nsms SMs for dur_ns, not before earliest_ns, on GPU dev's SM timeline; returns its
 * start time. */
int64_t sim_timeline_place(struct sim_shared *sh, int dev, int nsms, int64_t earliest_ns, int64_t dur_ns);
/* How many SMs of dev are busy at now_ns. */
int sim_timeline_busy_sms(struct sim_shared *sh, int dev, int64_t now_ns);

#endif
