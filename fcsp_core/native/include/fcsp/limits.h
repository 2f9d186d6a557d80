/* Fixed sizes shared by the region layout, the C API and the Python bindings (fcsp_core/c_constants.py reads these
 * defines through cffi; installed as lib/include/fcsp/limits.h). Integer defines only. */
#ifndef FCSP_LIMITS_H
#define FCSP_LIMITS_H

#define FCSP_MAX_GPUS 16
#define FCSP_MAX_TENANTS 256
#define FCSP_MAX_PROCS 1024
#define FCSP_UUID_LEN 48
#define FCSP_NAME_LEN 64
#define FCSP_ERR_LEN 256

/* The simulated driver's limits (sim/sim_config.h; FCSP_SIM_GPUS and FCSP_SIM_SMS accept 1 to these). Not part of
 * the region layout. */
#define FCSP_SIM_MAX_GPUS 8
#define FCSP_SIM_MAX_SMS 1024

#endif /* FCSP_LIMITS_H */
