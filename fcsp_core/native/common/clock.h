/* Clocks and process identity shared by every part of fcsp. */
#ifndef FCSP_CLOCK_H
#define FCSP_CLOCK_H

#include <stdint.h>
#include <sys/types.h>

uint64_t fcsp_now_ms(void);       /* CLOCK_MONOTONIC, comparable across processes of one boot */
uint64_t fcsp_now_ns(void);       /* CLOCK_MONOTONIC */
uint64_t fcsp_realtime_ns(void);  /* CLOCK_REALTIME */
/* Start time of pid (field 22 of /proc/<pid>/stat, clock ticks since boot); 0 if the process does not exist.
 * (pid, start time) names a process uniquely: a reused PID has a later start time. */
uint64_t fcsp_proc_start_time(pid_t pid);

/* Whether the process (pid, start_time) still runs: gone, a zombie, or a reused PID all count as dead. */
int fcsp_proc_alive(pid_t pid, uint64_t start_time);

/* A spin-wait hint to the CPU (x86 pause, Arm yield): cheaper for the sibling hyperthread than a busy loop. */
static inline void fcsp_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

#endif
