/* Monotonic clock helpers of the simulated driver. CLOCK_MONOTONIC is one clock for every process of the host, so
 * absolute times can live in the shared state (SM timeline) and be compared across processes. */
#ifndef FCSP_SIM_CLOCK_H
#define FCSP_SIM_CLOCK_H

#include <stdint.h>

int64_t sim_now_ns(void);
/* Sleeps until the absolute CLOCK_MONOTONIC time t_ns (returns at once if it has passed). */
void sim_sleep_until_ns(int64_t t_ns);

#endif
