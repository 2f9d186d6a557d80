/* The simulated driver's export list (fcsp_core/native/sim/sim_exports.h, nvml_sim.h) against the interposer's
 * hook table (fcsp_core/native/interposer/hook_table.h), without NVIDIA's headers; tests/test_exports.py compiles
 * this file, and compiling is the test. For every function fcsp hooks or calls:
 * - the simulator declares it with the same prototype (a second declaration with other types does not compile);
 * - for a hooked CUDA function, the simulator answers cuGetProcAddress for the same base name at the same
 *   since-version (each export defines an enum constant SIM_SINCE_<symbol> and SIM_BASE_<symbol>_<base>, which
 *   the hook's entry then names: a hook the simulator lacks, or files under another base, does not compile). */
#include "interposer/hook_table.h"
#include "nvml_sim.h"
#include "sim_exports.h"

#define SIM_FACTS(symbol, base, since, per_thread, ret, params) SIM_SINCE_##symbol = since, SIM_BASE_##symbol##_##base,
enum sim_facts { SIM_CUDA_EXPORTS(SIM_FACTS) SIM_FACTS_END };

#define SAME_PROTOTYPE(symbol, ret, params)                                                                        \
    _Static_assert(__builtin_types_compatible_p(__typeof__(&symbol), ret(*) params),                              \
                   "hook_table.h and the simulated driver declare " #symbol " differently");

#define CHECK_HOOK(symbol, base, since, variant, ret, params, args)                                                \
    SAME_PROTOTYPE(symbol, ret, params)                                                                            \
    _Static_assert(SIM_SINCE_##symbol == since, "hook_table.h's since-version of " #symbol " is not the sim's");  \
    _Static_assert(SIM_BASE_##symbol##_##base >= 0, #symbol ": the same base name in hook_table.h and the sim");
FCSP_CUDA_HOOKS(CHECK_HOOK)

#define CHECK_USED(symbol, ret, params) SAME_PROTOTYPE(symbol, ret, params)
FCSP_CUDA_USED(CHECK_USED)
FCSP_NVML_USED(CHECK_USED)

#define CHECK_NVML_HOOK(symbol, ret, params, args) SAME_PROTOTYPE(symbol, ret, params)
FCSP_NVML_HOOKS(CHECK_NVML_HOOK)
