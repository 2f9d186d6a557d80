/* The heartbeat thread (heartbeat.c): slot liveness, live policy changes, SM-time counters. */
#ifndef FCSP_HEARTBEAT_H
#define FCSP_HEARTBEAT_H

/* Start the heartbeat thread (idempotent per process). */
void fcsp_heartbeat_start(void);
void fcsp_heartbeat_stop(void);
/* In a fork child: it has no heartbeat thread. */
void fcsp_heartbeat_forget(void);

#endif
