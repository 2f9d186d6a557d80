/* libFuzzer target for the shared size and percentage parsers (interposer, SPANK plugin, Python).
 * Invariants: never crash; on success exactly one of bytes/percent is set and within range; an SM share is 1..100. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fcsp/fcsp_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char err[256];
    uint64_t bytes = 1;
    double pct = 1;
    if (fcsp_parse_mem_limit(text, &bytes, &pct, err, sizeof err) == FCSP_OK) {
        if ((bytes != 0) == (pct != 0))
            abort();
        if (pct != 0 && !(pct > 0 && pct <= 100))
            abort();
    } else if (bytes != 0 || pct != 0 || !err[0]) {
        abort();
    }
    uint32_t sm = 7;
    if (fcsp_parse_sm_limit(text, &sm, err, sizeof err) == FCSP_OK) {
        if (sm < 1 || sm > 100)
            abort();
    } else if (sm != 0 || !err[0]) {
        abort();
    }
    free(text);
    return 0;
}
