#include "interposer/hook_lookup.h"

#include <string.h>

#include "common/log.h"
#include "interposer/real_driver.h"

#define FCSP_STR_(x) #x
#define FCSP_STR(x) FCSP_STR_(x)
#define FCSP_IS_PER_THREAD(variant) (sizeof(FCSP_STR(variant)) > 1)

#define FCSP_HOOK_ENTRY(sym, base, since, variant, ret, params, args)                                               \
    {#sym, #base, since, FCSP_IS_PER_THREAD(variant), FCSP_LIB_CUDA, (void *)&sym, (void *const *)&fcsp_real.sym},
#define FCSP_HOOK_ENTRY_NVML(sym, ret, params, args)                                                                \
    {#sym, #sym, 0, 0, FCSP_LIB_NVML, (void *)&sym, (void *const *)&fcsp_real_nvml.sym},

static const struct fcsp_hook hooks[] = {FCSP_CUDA_HOOKS(FCSP_HOOK_ENTRY) FCSP_NVML_HOOKS(FCSP_HOOK_ENTRY_NVML)};
#define NHOOKS ((int)(sizeof hooks / sizeof hooks[0]))

/* A plain loop, not strcmp: dlsym reaches here while sanitizer runtimes initialise (see hooks_resolve.c). */
FCSP_NO_SANITIZE static int same(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

FCSP_NO_SANITIZE const struct fcsp_hook *fcsp_hook_by_name(const char *name)
{
    /* ~45 entries, asked at load time only (dlsym, cuGetProcAddress): a scan beats building an index. */
    for (int i = 0; i < NHOOKS; i++)
        if (name[0] == hooks[i].name[0] && same(name, hooks[i].name))
            return &hooks[i];
    return NULL;
}

void *fcsp_hook_swap_proc(const char *base, void *real_pfn, int cuda_version, cuuint64_t flags)
{
    if (fcsp_real_cuda_resolve() != 0)
        return real_pfn;
    /* First choice: the variant whose real address the driver just returned: its resolution is then exactly the
     * driver's (version, flags, and any rule we do not know). */
    const struct fcsp_hook *best = NULL;
    int candidates = 0;
    for (int i = 0; i < NHOOKS; i++) {
        const struct fcsp_hook *h = &hooks[i];
        if (h->lib != FCSP_LIB_CUDA || !same(h->base, base))
            continue;
        candidates++;
        if (*h->real == real_pfn)
            return h->wrapper;
    }
    if (!candidates)
        return real_pfn;
    /* The driver handed out an address that is not one of its exports (some drivers return internal entry points).
     * Resolve as the driver documents it: the newest ABI not newer than cuda_version, in the per-thread form when
     * asked for. */
    int want_pt = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
    for (int pass = 0; pass < 2 && !best; pass++) {
        for (int i = 0; i < NHOOKS; i++) {
            const struct fcsp_hook *h = &hooks[i];
            if (h->lib != FCSP_LIB_CUDA || !same(h->base, base) || h->since > cuda_version || !*h->real)
                continue;
            /* pass 0: exact stream flavour; pass 1: the legacy form when no per-thread form exists */
            if ((pass == 0 && h->per_thread != want_pt) || (pass == 1 && h->per_thread))
                continue;
            if (!best || h->since > best->since)
                best = h;
        }
    }
    if (!best) {
        fcsp_log(FCSP_LOG_WARN, "cuGetProcAddress(%s, %d): no wrapper matches the driver's answer; forwarding it "
                                "unwrapped (allocations through it are not capped)",
                 base, cuda_version);
        return real_pfn;
    }
    fcsp_log(FCSP_LOG_DEBUG, "cuGetProcAddress(%s, %d, %llu): resolved by version to %s", base, cuda_version,
             (unsigned long long)flags, best->name);
    return best->wrapper;
}
