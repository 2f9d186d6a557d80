#include "interposer/bg_thread.h"

#include <pthread.h>
#include <signal.h>

int fcsp_start_bg_thread(void *(*main)(void *))
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024); /* sanitizer builds need more than 64 KiB */
    pthread_t th;
    int rc = pthread_create(&th, &attr, main, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
