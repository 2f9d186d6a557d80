/* The library's own threads (heartbeat, launch sampler): detached, small stack, every signal blocked so signals
 * stay with the application's threads. */
#ifndef FCSP_BG_THREAD_H
#define FCSP_BG_THREAD_H

/* 0 on success, else the pthread_create error. */
int fcsp_start_bg_thread(void *(*main)(void *));

#endif
