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

#endif /* FCSP_LIMITS_H */
