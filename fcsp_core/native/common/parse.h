/* Internal pieces of the one grammar (parse.c) that other C code checks shared memory with. */
#ifndef FCSP_COMMON_PARSE_H
#define FCSP_COMMON_PARSE_H

#include <stddef.h>

/* Whether the buffer s of cap bytes holds a name: 1 to cap - 1 printable ASCII characters without spaces, then a
 * NUL (it reads no further than cap, so a corrupt, unterminated buffer is safe). The tenant-name rule
 * (fcsp_parse_tenant) and the check of names and UUIDs in a region. */
int fcsp_printable_name(const char *s, size_t cap);

#endif
