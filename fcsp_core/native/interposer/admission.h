/* Admission of device memory against the tenant's cap: lock-free, no scan, two atomic read-modify-writes on the
 * hot path (the tenant's per-GPU counter, shared; this process's slot counter, private to it). */
#ifndef FCSP_ADMISSION_H
#define FCSP_ADMISSION_H

#include <stdint.h>

#include "interposer/gpu_map.h"

/* Reserve size bytes on d for this tenant: 0 if admitted, -1 if the cap refuses it. */
int fcsp_admit(struct fcsp_dev *d, uint64_t size);
/* Charge memory the driver already holds (a pool or graph reservation that grew past what was admitted), cap or
 * not: the counter tells the truth, later admissions see it. */
void fcsp_charge(struct fcsp_dev *d, uint64_t size);
/* Give back a reservation or a freed allocation. */
void fcsp_release(struct fcsp_dev *d, uint64_t size);
/* This tenant's bytes in use on d. */
uint64_t fcsp_tenant_used(const struct fcsp_dev *d);

#endif
