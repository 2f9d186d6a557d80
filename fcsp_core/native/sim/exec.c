/* The simulated GPU front end of this process: work queued on streams is placed on the GPUs' shared SM timelines
 * by one engine thread, in stream order. A stream's next item is placed once its previous item has started (or
 * ends within LOOKAHEAD_NS), so processes sharing a GPU interleave their kernels instead of one process reserving
 * the future for all of its queued work. Synchronisation sleeps until the placed work's end time.
 *
 * Lock order: g_exec_mu, then a GPU's shared mutex (inside sim_timeline_place). */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "sim_clock.h"
#include "sim_cuda.h"

#define LOOKAHEAD_NS 1000000LL

enum item_kind { ITEM_WORK, ITEM_EVENT, ITEM_WAIT };

struct sim_item {
    struct sim_item *next;
    enum item_kind kind;
    int nsms; /* ITEM_WORK: 0 for copies */
    int64_t dur_ns;
    int64_t enq_ns;
    struct CUevent_st *ev;
    uint64_t seq;
};

static pthread_mutex_t g_exec_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_work_cond; /* wakes the engine: new work */
static pthread_cond_t g_progress_cond; /* wakes waiters: work placed */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_engine_ok;
static struct CUstream_st *g_streams; /* every stream, under g_exec_mu */

static void unref_event(struct CUevent_st *ev)
{
    if (--ev->refs == 0 && ev->destroyed)
        free(ev);
}

/* Places the head item of s if it may start now; returns 1 if it did, 0 if it must wait (*wake: until when). */
static int place_head(struct CUstream_st *s, int64_t now, int64_t *wake)
{
    struct sim_item *it = s->head;
    int64_t tail = s->has_placed ? s->placed_end : 0;
    if (it->kind == ITEM_WORK && s->has_placed) {
        int64_t eligible = s->placed_end - LOOKAHEAD_NS;
        if (s->placed_start < eligible)
            eligible = s->placed_start;
        if (now < eligible) {
            if (eligible < *wake)
                *wake = eligible;
            return 0;
        }
    }
    if (it->kind == ITEM_WAIT && it->ev->state == SIM_EVENT_PENDING)
        return 0; /* the event's stream gets there first; its progress wakes us */
    int64_t earliest = tail > it->enq_ns ? tail : it->enq_ns;
    switch (it->kind) {
    case ITEM_WORK: {
        int64_t start = it->nsms > 0 ? sim_timeline_place(g_sim_sh, s->dev, it->nsms, earliest, it->dur_ns) : earliest;
        s->placed_start = start;
        s->placed_end = start + it->dur_ns;
        s->has_placed = 1;
        break;
    }
    case ITEM_EVENT:
        if (it->seq == it->ev->seq) {
            it->ev->time_ns = earliest;
            it->ev->state = SIM_EVENT_TIMED;
        }
        unref_event(it->ev);
        break;
    case ITEM_WAIT:
        if (it->ev->state == SIM_EVENT_TIMED && it->ev->time_ns > tail) {
            s->placed_end = it->ev->time_ns;
            if (!s->has_placed)
                s->placed_start = it->ev->time_ns;
            s->has_placed = 1;
        }
        unref_event(it->ev);
        break;
    }
    s->head = it->next;
    if (s->head == NULL)
        s->tail = NULL;
    s->pending--;
    free(it);
    return 1;
}

static void *engine(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_exec_mu);
    for (;;) {
        int64_t now = sim_now_ns(), wake = INT64_MAX;
        int progressed = 0, pending = 0;
        for (struct CUstream_st **ps = &g_streams; *ps;) {
            struct CUstream_st *s = *ps;
            while (s->head && place_head(s, now, &wake))
                progressed = 1;
            if (s->head)
                pending = 1;
            if (s->destroyed && s->head == NULL) {
                *ps = s->next;
                free(s);
                continue;
            }
            ps = &s->next;
        }
        if (progressed) {
            pthread_cond_broadcast(&g_progress_cond);
            continue; /* placed events may unblock waits on other streams */
        }
        if (!pending || wake == INT64_MAX) {
            pthread_cond_wait(&g_work_cond, &g_exec_mu);
        } else {
            struct timespec ts = {.tv_sec = wake / 1000000000LL, .tv_nsec = wake % 1000000000LL};
            pthread_cond_timedwait(&g_work_cond, &g_exec_mu, &ts);
        }
    }
    return NULL;
}

static void start_engine(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g_work_cond, &ca);
    pthread_cond_init(&g_progress_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_attr_t ta;
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals go to the application's threads */
    pthread_t t;
    g_engine_ok = pthread_create(&t, &ta, engine, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&ta);
}

/* Takes g_exec_mu with the engine running. */
static void lock_exec(void)
{
    pthread_once(&g_once, start_engine);
    pthread_mutex_lock(&g_exec_mu);
}

struct CUstream_st *sim_exec_new_stream(int dev, CUcontext ctx, unsigned int flags, int priority, int builtin)
{
    struct CUstream_st *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->magic = SIM_MAGIC_STREAM;
    s->dev = dev;
    s->ctx = ctx;
    s->flags = flags;
    s->priority = priority;
    s->builtin = builtin;
    lock_exec();
    s->next = g_streams;
    g_streams = s;
    pthread_mutex_unlock(&g_exec_mu);
    return s;
}

void sim_exec_destroy_stream(struct CUstream_st *s)
{
    lock_exec();
    s->destroyed = 1; /* queued work completes; the engine frees the stream once it is drained */
    s->magic = 0;
    pthread_cond_signal(&g_work_cond);
    pthread_mutex_unlock(&g_exec_mu);
}

static void push(struct CUstream_st *s, struct sim_item *it)
{
    it->enq_ns = sim_now_ns();
    if (s->tail)
        s->tail->next = it;
    else
        s->head = it;
    s->tail = it;
    s->pending++;
    pthread_cond_signal(&g_work_cond);
}

void sim_exec_enqueue(struct CUstream_st *s, int nsms, int64_t dur_ns)
{
    struct sim_item *it = calloc(1, sizeof *it);
    if (it == NULL)
        return; /* out of host memory: the work is dropped, as if it took no time */
    it->kind = ITEM_WORK;
    it->nsms = nsms;
    it->dur_ns = dur_ns;
    lock_exec();
    while (s->pending >= SIM_QUEUE_DEPTH && g_engine_ok)
        pthread_cond_wait(&g_progress_cond, &g_exec_mu); /* a full launch queue blocks, like the driver */
    push(s, it);
    pthread_mutex_unlock(&g_exec_mu);
}

void sim_exec_record(struct CUevent_st *ev, struct CUstream_st *s)
{
    lock_exec();
    ev->seq++;
    if (s->head == NULL) {
        int64_t now = sim_now_ns();
        ev->time_ns = (s->has_placed && s->placed_end > now) ? s->placed_end : now;
        ev->state = SIM_EVENT_TIMED;
    } else {
        struct sim_item *it = calloc(1, sizeof *it);
        if (it != NULL) {
            it->kind = ITEM_EVENT;
            it->ev = ev;
            it->seq = ev->seq;
            ev->refs++;
            ev->state = SIM_EVENT_PENDING;
            push(s, it);
        }
    }
    pthread_mutex_unlock(&g_exec_mu);
}

void sim_exec_wait_event(struct CUstream_st *s, struct CUevent_st *ev)
{
    lock_exec();
    if (ev->state != SIM_EVENT_NEVER) {
        struct sim_item *it = calloc(1, sizeof *it);
        if (it != NULL) {
            it->kind = ITEM_WAIT;
            it->ev = ev;
            ev->refs++;
            push(s, it);
        }
    }
    pthread_mutex_unlock(&g_exec_mu);
}

void sim_exec_sync_stream(struct CUstream_st *s)
{
    lock_exec();
    while (s->head && g_engine_ok)
        pthread_cond_wait(&g_progress_cond, &g_exec_mu);
    int64_t end = s->has_placed ? s->placed_end : 0;
    pthread_mutex_unlock(&g_exec_mu);
    sim_sleep_until_ns(end);
}

int sim_exec_stream_busy(struct CUstream_st *s)
{
    lock_exec();
    int busy = s->head != NULL || (s->has_placed && s->placed_end > sim_now_ns());
    pthread_mutex_unlock(&g_exec_mu);
    return busy;
}

void sim_exec_sync_device(int dev)
{
    lock_exec();
    int64_t end = 0;
    for (;;) {
        int queued = 0;
        end = 0;
        for (struct CUstream_st *s = g_streams; s; s = s->next) {
            if (s->dev != dev)
                continue;
            if (s->head)
                queued = 1;
            if (s->has_placed && s->placed_end > end)
                end = s->placed_end;
        }
        if (!queued || !g_engine_ok)
            break;
        pthread_cond_wait(&g_progress_cond, &g_exec_mu);
    }
    pthread_mutex_unlock(&g_exec_mu);
    sim_sleep_until_ns(end);
}

void sim_exec_sync_event(struct CUevent_st *ev)
{
    lock_exec();
    while (ev->state == SIM_EVENT_PENDING && g_engine_ok)
        pthread_cond_wait(&g_progress_cond, &g_exec_mu);
    int64_t t = ev->state == SIM_EVENT_TIMED ? ev->time_ns : 0;
    pthread_mutex_unlock(&g_exec_mu);
    sim_sleep_until_ns(t);
}

int sim_exec_event_busy(struct CUevent_st *ev)
{
    lock_exec();
    int busy = ev->state == SIM_EVENT_PENDING || (ev->state == SIM_EVENT_TIMED && ev->time_ns > sim_now_ns());
    pthread_mutex_unlock(&g_exec_mu);
    return busy;
}

CUresult sim_exec_elapsed(float *ms, struct CUevent_st *a, struct CUevent_st *b)
{
    CUresult rc = CUDA_SUCCESS;
    lock_exec();
    int64_t now = sim_now_ns();
    if (a->state == SIM_EVENT_NEVER || b->state == SIM_EVENT_NEVER)
        rc = CUDA_ERROR_INVALID_HANDLE;
    else if (a->state == SIM_EVENT_PENDING || b->state == SIM_EVENT_PENDING || a->time_ns > now || b->time_ns > now)
        rc = CUDA_ERROR_NOT_READY;
    else
        *ms = (float)((double)(b->time_ns - a->time_ns) / 1e6);
    pthread_mutex_unlock(&g_exec_mu);
    return rc;
}

void sim_exec_destroy_event(struct CUevent_st *ev)
{
    lock_exec();
    ev->magic = 0;
    ev->destroyed = 1;
    if (ev->refs == 0)
        free(ev);
    pthread_mutex_unlock(&g_exec_mu);
}
