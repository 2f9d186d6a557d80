/* Surgery on a node region for tests/test_node_*.py: states that only a process killed at the worst moment leaves
 * behind, written under the region lock as a dying lock holder would.
 *
 *   region_poke FILE reaping PID [partial]   mark PID's LIVE slot REAPING, as a reaper that died inside the
 *                                            reclaim; with partial, its GPU 0 bytes are already taken off its tenant
 *   region_poke FILE nprocs TENANT N         set a tenant's process count (a process killed inside a slot change)
 *   region_poke FILE proc-state INDEX VALUE  write a raw state into process slot INDEX (corruption)
 *   region_poke FILE offsets                 print where the header's version and slot 0's state are
 *   region_poke FILE fake-gpus               take every free GPU entry with a made-up GPU
 *   region_poke FILE fill-tenants            take every free tenant slot (policy tenants "filler-N", no process)
 *   region_poke FILE fill-procs PID START    take every free process slot for the live process (PID, START) in
 *                                            tenant slot 0 (exhaustion without a thousand real processes)
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fcsp/region_layout.h"

static int usage(void)
{
    fprintf(stderr, "usage: region_poke FILE reaping PID [partial] | nprocs TENANT N | proc-state INDEX VALUE | "
                    "offsets | fake-gpus | fill-tenants | fill-procs PID START\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    if (strcmp(argv[2], "offsets") == 0) {
        printf("version=%zu proc_state=%zu proc_size=%zu\n", offsetof(struct fcsp_region, header.version),
               offsetof(struct fcsp_region, procs[0].state), sizeof(struct fcsp_proc));
        return 0;
    }
    int fd = open(argv[1], O_RDWR);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        perror(argv[1]);
        return 1;
    }
    struct fcsp_region *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (r == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    int rc = 1;
    if (strcmp(argv[2], "reaping") == 0 && argc >= 4) {
        int32_t pid = atoi(argv[3]);
        for (int i = 0; i < FCSP_MAX_PROCS; i++) {
            struct fcsp_proc *p = &r->procs[i];
            if (atomic_load(&p->state) != FCSP_PROC_LIVE || p->pid != pid)
                continue;
            atomic_store(&p->state, FCSP_PROC_REAPING);
            if (argc >= 5 && strcmp(argv[4], "partial") == 0)
                atomic_fetch_sub(&r->tenants[p->tenant].gpu[0].used_bytes, atomic_load(&p->used_bytes[0]));
            printf("slot %d of pid %d now REAPING\n", i, pid);
            rc = 0;
            break;
        }
    } else if (strcmp(argv[2], "nprocs") == 0 && argc >= 5) {
        for (int i = 0; i < FCSP_MAX_TENANTS; i++) {
            struct fcsp_tenant *t = &r->tenants[i];
            if (atomic_load(&t->state) == FCSP_TENANT_ACTIVE && strncmp(t->name, argv[3], FCSP_NAME_LEN) == 0) {
                atomic_store(&t->nprocs, (uint32_t)atoi(argv[4]));
                rc = 0;
                break;
            }
        }
    } else if (strcmp(argv[2], "fake-gpus") == 0) {
        for (int i = 0; i < FCSP_MAX_GPUS; i++) {
            struct fcsp_gpu_entry *g = &r->gpus[i];
            if (atomic_load(&g->state) != FCSP_GPU_FREE)
                continue;
            snprintf(g->uuid, sizeof g->uuid, "GPU-fake-%d", i);
            g->total_bytes = 1ull << 40;
            g->sm_count = 1;
            atomic_store(&g->state, FCSP_GPU_READY);
        }
        atomic_fetch_add(&r->header.topology_seq, 1);
        rc = 0;
    } else if (strcmp(argv[2], "fill-tenants") == 0) {
        for (int i = 0; i < FCSP_MAX_TENANTS; i++) {
            struct fcsp_tenant *t = &r->tenants[i];
            if (atomic_load(&t->state) != FCSP_TENANT_FREE)
                continue;
            snprintf(t->name, sizeof t->name, "filler-%d", i);
            t->flags = FCSP_TENANT_POLICY;
            atomic_store(&t->nprocs, 0);
            atomic_store(&t->state, FCSP_TENANT_ACTIVE);
            atomic_store(&r->header.tenant_key[i], 1u);
        }
        atomic_fetch_add(&r->header.topology_seq, 1);
        rc = 0;
    } else if (strcmp(argv[2], "fill-procs") == 0 && argc >= 5) {
        uint32_t n = 0;
        for (int i = 0; i < FCSP_MAX_PROCS; i++) {
            struct fcsp_proc *p = &r->procs[i];
            if (atomic_load(&p->state) != FCSP_PROC_FREE)
                continue;
            p->pid = atoi(argv[3]);
            p->start_time = strtoull(argv[4], NULL, 10);
            p->tenant = 0;
            atomic_store(&p->state, FCSP_PROC_LIVE);
            atomic_store(&r->header.proc_pid[i], p->pid);
            n++;
        }
        atomic_fetch_add(&r->tenants[0].nprocs, n);
        atomic_fetch_add(&r->header.topology_seq, 1);
        rc = 0;
    } else if (strcmp(argv[2], "proc-state") == 0 && argc >= 5) {
        atomic_store(&r->procs[atoi(argv[3])].state, (uint32_t)atoi(argv[4]));
        rc = 0;
    } else {
        rc = usage();
    }
    if (rc == 1)
        fprintf(stderr, "region_poke: nothing matched\n");
    munmap(r, sizeof *r);
    close(fd); /* drops the lock */
    return rc;
}
