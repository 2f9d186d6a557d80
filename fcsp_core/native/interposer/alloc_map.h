/* Lock-free map of this process's live device allocations: key (device pointer, VMM handle, array handle) ->
 * size and device, so frees are attributed without asking the driver. Open addressing, fixed capacity
 * (FCSP_ALLOC_MAP_ENTRIES, a power of two, default 131072), no resize, tombstones reused. */
#ifndef FCSP_ALLOC_MAP_H
#define FCSP_ALLOC_MAP_H

#include <stdint.h>

enum fcsp_alloc_kind { FCSP_KIND_PTR = 1, FCSP_KIND_VMM = 2, FCSP_KIND_ARRAY = 3, FCSP_KIND_MIPMAP = 4 };

int fcsp_map_init(void);
/* 0 on success, -1 if the probe window is full. */
int fcsp_map_insert(uint64_t key, enum fcsp_alloc_kind kind, uint64_t size, int ordinal);
/* 0 and the entry's size/ordinal if found (and removed), -1 if absent. */
int fcsp_map_remove(uint64_t key, enum fcsp_alloc_kind kind, uint64_t *size, int *ordinal);
/* Fork child: drop the parent's entries (and every other accounting table: fcsp_acct_reset). */
void fcsp_map_reset(void);

#endif
