/* Creating, publishing and mapping the shared state file. */
#include "sim_state.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sim_clock.h"

#define PUBLISH_WAIT_NS 3000000000LL

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void init_robust(pthread_mutex_t *mu)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(mu, &a);
    pthread_mutexattr_destroy(&a);
}

#define FIELD(type, f) offsetof(struct type, f), sizeof(((struct type *)0)->f)

uint64_t sim_state_layout(void)
{
    static const uint64_t figures[] = {
        sizeof(struct sim_gpu), FIELD(sim_gpu, mu), FIELD(sim_gpu, uuid), FIELD(sim_gpu, total_bytes),
        FIELD(sim_gpu, sms), FIELD(sim_gpu, live_bytes), FIELD(sim_gpu, peak_bytes), FIELD(sim_gpu, sm_free_ns),
        sizeof(struct sim_proc), FIELD(sim_proc, pid), FIELD(sim_proc, ctx_mask), FIELD(sim_proc, start_time),
        FIELD(sim_proc, live_bytes),
        sizeof(struct sim_share), FIELD(sim_share, id), FIELD(sim_share, dev), FIELD(sim_share, payer),
        FIELD(sim_share, bytes), FIELD(sim_share, holders), FIELD(sim_share, path),
        sizeof(struct sim_shared), FIELD(sim_shared, magic), FIELD(sim_shared, size), FIELD(sim_shared, layout),
        FIELD(sim_shared, ngpus), FIELD(sim_shared, seed), FIELD(sim_shared, procs_mu), FIELD(sim_shared, procs),
        FIELD(sim_shared, gpu), FIELD(sim_shared, next_share_id), FIELD(sim_shared, shares),
        SIM_MAX_PROCS, SIM_MAX_GPUS, SIM_MAX_SMS, SIM_MAX_SHARES,
    };
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over the figures */
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++)
        for (int b = 0; b < 64; b += 8) {
            h ^= (figures[i] >> b) & 0xff;
            h *= 0x100000001b3ULL;
        }
    return h;
}

/* Fills a zeroed state from cfg. The magic is stored by the caller once everything else is in place. */
static void init_state(struct sim_shared *sh, const struct sim_config *cfg)
{
    sh->size = sizeof *sh;
    sh->layout = sim_state_layout();
    sh->ngpus = (uint32_t)cfg->gpus;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)sim_now_ns();
    sh->seed = seed;
    init_robust(&sh->procs_mu);
    for (int d = 0; d < cfg->gpus; d++) {
        struct sim_gpu *g = &sh->gpu[d];
        init_robust(&g->mu);
        uint64_t x = seed + (uint64_t)d * 0x1000193ULL;
        uint64_t a = splitmix64(&x), b = splitmix64(&x);
        memcpy(g->uuid, &a, 8);
        memcpy(g->uuid + 8, &b, 8);
        g->uuid[6] = (unsigned char)((g->uuid[6] & 0x0f) | 0x40); /* looks like a version-4 UUID */
        g->uuid[8] = (unsigned char)((g->uuid[8] & 0x3f) | 0x80);
        g->total_bytes = cfg->mem_bytes;
        g->sms = (uint32_t)cfg->sms;
    }
}

static int map_private(const struct sim_config *cfg, struct sim_shared **out)
{
    void *p = mmap(NULL, sizeof(struct sim_shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "fcsp-sim: cannot allocate the simulator state: %s\n", strerror(errno));
        return -1;
    }
    struct sim_shared *sh = p;
    init_state(sh, cfg);
    /* release: nothing reads it concurrently here, but keep the one publication rule of the file case */
    atomic_store_explicit(&sh->magic, SIM_STATE_MAGIC, memory_order_release);
    *out = sh;
    return 0;
}

/* Waits for the creator to size and publish the file; returns the mapping or NULL. */
static struct sim_shared *map_published(int fd, const char *path, int quiet)
{
    int64_t deadline = sim_now_ns() + PUBLISH_WAIT_NS;
    struct stat st;
    for (;;) {
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            if (!quiet)
                fprintf(stderr, "fcsp-sim: %s is not a regular file\n", path);
            return NULL;
        }
        if ((size_t)st.st_size == sizeof(struct sim_shared))
            break;
        /* the creator sizes the file in one ftruncate: any size but 0 and the right one is not ours */
        if (st.st_size != 0 || sim_now_ns() > deadline) {
            if (!quiet)
                fprintf(stderr, "fcsp-sim: %s has the wrong size for a simulator state (remove it)\n", path);
            return NULL;
        }
        usleep(1000);
    }
    void *p = mmap(NULL, sizeof(struct sim_shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        if (!quiet)
            fprintf(stderr, "fcsp-sim: cannot map %s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct sim_shared *sh = p;
    /* acquire: pairs with the creator's release, so the initialised state is visible once the magic is */
    while (atomic_load_explicit(&sh->magic, memory_order_acquire) != SIM_STATE_MAGIC) {
        if (sim_now_ns() > deadline) {
            if (!quiet)
                fprintf(stderr, "fcsp-sim: %s is not a simulator state file (bad magic; remove it)\n", path);
            munmap(p, sizeof(struct sim_shared));
            return NULL;
        }
        usleep(1000);
    }
    if (sh->size != sizeof(struct sim_shared) || sh->layout != sim_state_layout() || sh->ngpus < 1 ||
        sh->ngpus > SIM_MAX_GPUS) {
        if (!quiet)
            fprintf(stderr, "fcsp-sim: %s was written by another version of the simulator (remove it)\n", path);
        munmap(p, sizeof(struct sim_shared));
        return NULL;
    }
    return sh;
}

static int state_path(const char *dir, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s", dir, SIM_STATE_FILE);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

int sim_state_map(const struct sim_config *cfg, struct sim_shared **out)
{
    if (!cfg->has_dir)
        return map_private(cfg, out);
    struct stat dst;
    if (stat(cfg->dir, &dst) != 0 || !S_ISDIR(dst.st_mode)) {
        fprintf(stderr, "fcsp-sim: invalid FCSP_SIM_DIR='%s': expected an existing directory\n", cfg->dir);
        return -2;
    }
    char path[SIM_DIR_MAX + 32];
    if (state_path(cfg->dir, path, sizeof path) != 0)
        return -1;
    /* A group/world-writable directory is meant to be shared: let the same group/others use the state. */
    mode_t mode = 0600 | ((dst.st_mode & S_IWGRP) ? 0060 : 0) | ((dst.st_mode & S_IWOTH) ? 0006 : 0);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd >= 0) {
        if (fchmod(fd, mode) != 0 || ftruncate(fd, (off_t)sizeof(struct sim_shared)) != 0) {
            fprintf(stderr, "fcsp-sim: cannot size %s: %s\n", path, strerror(errno));
            close(fd);
            unlink(path);
            return -1;
        }
        void *p = mmap(NULL, sizeof(struct sim_shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED) {
            fprintf(stderr, "fcsp-sim: cannot map %s: %s\n", path, strerror(errno));
            unlink(path);
            return -1;
        }
        struct sim_shared *sh = p;
        init_state(sh, cfg);
        /* release: publishes the initialised state to processes that load the magic with acquire */
        atomic_store_explicit(&sh->magic, SIM_STATE_MAGIC, memory_order_release);
        *out = sh;
        return 0;
    }
    if (errno != EEXIST) {
        fprintf(stderr, "fcsp-sim: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "fcsp-sim: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct sim_shared *sh = map_published(fd, path, 0);
    close(fd);
    if (sh == NULL)
        return -1;
    *out = sh;
    return 0;
}

int sim_state_map_existing(const char *dir, struct sim_shared **out)
{
    char path[SIM_DIR_MAX + 32];
    if (dir == NULL || state_path(dir, path, sizeof path) != 0)
        return -1;
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct sim_shared *sh = map_published(fd, path, 1);
    close(fd);
    if (sh == NULL)
        return -1;
    *out = sh;
    return 0;
}

void sim_state_unmap(struct sim_shared *sh)
{
    if (sh)
        munmap(sh, sizeof *sh);
}

void sim_robust_lock(pthread_mutex_t *mu)
{
    int rc = pthread_mutex_lock(mu);
    if (rc == EOWNERDEAD)
        pthread_mutex_consistent(mu); /* the holder died; the counters it guards are updated in one step */
}

void sim_gpu_lock(struct sim_gpu *g)
{
    sim_robust_lock(&g->mu);
}

void sim_gpu_unlock(struct sim_gpu *g)
{
    pthread_mutex_unlock(&g->mu);
}

void sim_format_uuid(const struct sim_shared *sh, int dev, char *buf)
{
    const unsigned char *u = sh->gpu[dev].uuid;
    snprintf(buf, 41, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
             u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}
