#include "interposer/alloc_map.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "common/log.h"
#include "interposer/acct.h"

#define KEY_EMPTY 0ull
#define KEY_TOMB UINT64_MAX
#define KEY_BUSY (UINT64_MAX - 1)
#define MAX_PROBE 4096

struct entry {
    _Atomic uint64_t key;
    _Atomic uint64_t size;
    _Atomic uint32_t meta; /* kind << 16 | ordinal */
    uint32_t pad;
};

static struct entry *table;
static uint64_t mask;

int fcsp_map_init(void)
{
    if (table)
        return 0;
    uint64_t n = 1ull << 17;
    const char *v = getenv("FCSP_ALLOC_MAP_ENTRIES");
    if (v && *v) {
        char *end;
        unsigned long long want = strtoull(v, &end, 10);
        if (*end || want < 1024 || want > (1ull << 26) || (want & (want - 1)))
            fcsp_log(FCSP_LOG_WARN, "FCSP_ALLOC_MAP_ENTRIES=%s: not valid: use a power of two from 1024 to 67108864; "
                                    "using 131072", v);
        else
            n = want;
    }
    /* NORESERVE: pages cost memory only once entries land on them */
    void *p = mmap(NULL, n * sizeof(struct entry), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    mask = n - 1;
    table = p;
    return 0;
}

void fcsp_map_reset(void)
{
    fcsp_acct_reset(); /* and the rest of this process's accounting bookkeeping */
    if (table)
        munmap(table, (mask + 1) * sizeof(struct entry));
    table = NULL;
    mask = 0;
}

static inline uint64_t slot_of(uint64_t key, enum fcsp_alloc_kind kind)
{
    uint64_t h = (key ^ ((uint64_t)kind << 56)) * 0x9E3779B97F4A7C15ull;
    return (h ^ (h >> 29)) & mask;
}

int fcsp_map_insert(uint64_t key, enum fcsp_alloc_kind kind, uint64_t size, int ordinal)
{
    if (!table || key == KEY_EMPTY || key >= KEY_BUSY)
        return -1;
    uint64_t i = slot_of(key, kind);
    for (int n = 0; n < MAX_PROBE; n++, i = (i + 1) & mask) {
        struct entry *e = &table[i];
        /* relaxed: a hint only; the CAS below decides */
        uint64_t k = atomic_load_explicit(&e->key, memory_order_relaxed);
        if (k != KEY_EMPTY && k != KEY_TOMB)
            continue;
        /* acquire: we own the slot only after the previous owner's release of it */
        if (!atomic_compare_exchange_strong_explicit(&e->key, &k, KEY_BUSY, memory_order_acquire,
                                                     memory_order_relaxed))
            continue;
        atomic_store_explicit(&e->size, size, memory_order_relaxed);
        atomic_store_explicit(&e->meta, ((uint32_t)kind << 16) | (uint32_t)ordinal, memory_order_relaxed);
        /* release: a remover that finds the key (acquire) sees size and meta */
        atomic_store_explicit(&e->key, key, memory_order_release);
        return 0;
    }
    return -1;
}

int fcsp_map_remove(uint64_t key, enum fcsp_alloc_kind kind, uint64_t *size, int *ordinal)
{
    if (!table || key == KEY_EMPTY || key >= KEY_BUSY)
        return -1;
    uint64_t i = slot_of(key, kind);
    for (int n = 0; n < MAX_PROBE; n++, i = (i + 1) & mask) {
        struct entry *e = &table[i];
        /* acquire: pairs with the inserter's release of the key */
        uint64_t k = atomic_load_explicit(&e->key, memory_order_acquire);
        if (k == KEY_EMPTY)
            return -1;
        if (k != key)
            continue;
        uint32_t meta = atomic_load_explicit(&e->meta, memory_order_relaxed);
        if ((meta >> 16) != (uint32_t)kind)
            continue;
        uint64_t sz = atomic_load_explicit(&e->size, memory_order_relaxed);
        /* acq_rel: we take the entry (acquire) and hand the slot back for reuse (release) */
        if (!atomic_compare_exchange_strong_explicit(&e->key, &k, KEY_TOMB, memory_order_acq_rel,
                                                     memory_order_relaxed))
            return -1; /* a concurrent free of the same key won */
        *size = sz;
        *ordinal = (int)(meta & 0xffff);
        return 0;
    }
    return -1;
}
