/* The fake device address space of this process. Device memory is not backed, so addresses are only numbers;
 * they are unique, aligned, and (for linear memory) above 2^47, where no user-space host mapping can be, so they
 * never collide with host-backed managed memory. */
#include <stdatomic.h>

#include "sim_cuda.h"

struct region {
    uint64_t base, span;
};

static const struct region g_regions[] = {
    [SIM_VA_LINEAR] = {0x800000000000ULL, 1ULL << 44}, /* one span per GPU, GPU d at base + d * span */
    [SIM_VA_LOW32] = {0x10000000ULL, 0xE0000000ULL}, /* for the 32-bit (pre-3.2) ABI */
    [SIM_VA_RESERVE] = {0x1000000000000ULL, 1ULL << 46}, /* cuMemAddressReserve */
    [SIM_VA_HANDLE] = {0x2000000000000ULL, 1ULL << 46}, /* array, mipmap and VMM handles */
};

static _Atomic uint64_t g_next[SIM_VA_HANDLE + 1][SIM_MAX_GPUS];

uint64_t sim_va_alloc(enum sim_va_region region, int dev, uint64_t size, uint64_t align)
{
    const struct region *r = &g_regions[region];
    int slot = region == SIM_VA_LINEAR ? dev : 0;
    uint64_t base = r->base + (region == SIM_VA_LINEAR ? (uint64_t)dev * r->span : 0);
    if (align == 0)
        align = 1;
    /* relaxed: the counter only hands out distinct ranges; nothing else is published through it */
    uint64_t cur = atomic_load_explicit(&g_next[region][slot], memory_order_relaxed);
    for (;;) {
        uint64_t start = (cur + align - 1) / align * align;
        if (start < cur || size > r->span || start > r->span - size)
            return 0;
        uint64_t next = start + size;
        if (atomic_compare_exchange_weak_explicit(&g_next[region][slot], &cur, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return base + start; /* every base is aligned to 256 MiB or more */
    }
}
