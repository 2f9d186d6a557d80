/* Configuration of the simulated driver, read from the environment at cuInit / nvmlInit:
 *   FCSP_SIM_GPUS       number of GPUs, 1..8 (default 1)
 *   FCSP_SIM_MEM        memory per GPU: bytes, or a number with K/M/G/T (binary) optionally followed by B/iB
 *                       (80G, 81920M, 1.5GiB); default 80G
 *   FCSP_SIM_SMS        SMs per GPU, 1..1024 (default 132)
 *   FCSP_SIM_KERNEL_US  wave time in microseconds: a number (the default for every kernel), or a list of
 *                       name=us items with an optional default=us item (spin=200,noop=1,default=5); default 5
 *   FCSP_SIM_DIR        directory of the shared state file sim-state; unset: state private to the process
 * GPUs, memory and SMs only matter to the process that creates the state file: the file then describes the node.
 */
#ifndef FCSP_SIM_CONFIG_H
#define FCSP_SIM_CONFIG_H

#include <stddef.h>

#include "fcsp/limits.h"

#define SIM_MAX_GPUS FCSP_SIM_MAX_GPUS /* with the Python side's checks, from one header */
#define SIM_MAX_SMS FCSP_SIM_MAX_SMS
#define SIM_MAX_KERNEL_RULES 32
#define SIM_KERNEL_NAME_MAX 128
#define SIM_DIR_MAX 4000

struct sim_kernel_rule {
    char name[SIM_KERNEL_NAME_MAX];
    double wave_us;
};

struct sim_config {
    int gpus;
    unsigned long long mem_bytes;
    int sms;
    double default_wave_us;
    int nrules;
    struct sim_kernel_rule rules[SIM_MAX_KERNEL_RULES];
    int has_dir;
    char dir[SIM_DIR_MAX];
    int mig; /* FCSP_SIM_MIG=1: the devices are MIG instances of one GPU (cuDeviceGetUuid gives that GPU's UUID,
              * cuDeviceGetUuid_v2 each instance's own, as the driver does) */
};

/* Reads the environment into *cfg. Returns 0, or -1 after printing one line to stderr that names the variable,
 * its value and what is accepted. */
int sim_config_load(struct sim_config *cfg);

/* Parses a size ("123", "64K", "1.5G", "80GiB", "512MB"). Returns 0 on success, -1 on a malformed or huge value. */
int sim_parse_size(const char *s, unsigned long long *out);

/* The wave time of kernel `name` in microseconds. */
double sim_config_wave_us(const struct sim_config *cfg, const char *name);

#endif
