/* The SM timeline of a simulated GPU, shared by all processes: when each SM is free again. A kernel that needs n
 * SMs takes the n that are free earliest, starts when all of them are free (and not before it may), and keeps them
 * busy until it ends. */
#include "sim_state.h"

/* Moves the k smallest values of t[0..n) to t[0..k) (any order) and returns the k-th smallest (quickselect). */
static int64_t select_kth(int64_t *t, int *idx, int n, int k)
{
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        int64_t pivot = t[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (t[i] < pivot)
                i++;
            while (t[j] > pivot)
                j--;
            if (i <= j) {
                int64_t tv = t[i];
                t[i] = t[j];
                t[j] = tv;
                int ti = idx[i];
                idx[i] = idx[j];
                idx[j] = ti;
                i++;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break;
    }
    return t[want];
}

int64_t sim_timeline_place(struct sim_shared *sh, int dev, int nsms, int64_t earliest_ns, int64_t dur_ns)
{
    struct sim_gpu *g = &sh->gpu[dev];
    int64_t t[SIM_MAX_SMS];
    int idx[SIM_MAX_SMS];
    sim_gpu_lock(g);
    int n = (int)g->sms;
    if (nsms < 1)
        nsms = 1;
    if (nsms > n)
        nsms = n;
    int64_t start;
    if (nsms == n) {
        start = earliest_ns;
        for (int i = 0; i < n; i++)
            if (g->sm_free_ns[i] > start)
                start = g->sm_free_ns[i];
        for (int i = 0; i < n; i++)
            g->sm_free_ns[i] = start + dur_ns;
    } else {
        for (int i = 0; i < n; i++) {
            t[i] = g->sm_free_ns[i];
            idx[i] = i;
        }
        int64_t kth = select_kth(t, idx, n, nsms);
        start = kth > earliest_ns ? kth : earliest_ns;
        for (int i = 0; i < nsms; i++)
            g->sm_free_ns[idx[i]] = start + dur_ns;
    }
    sim_gpu_unlock(g);
    return start;
}

int sim_timeline_busy_sms(struct sim_shared *sh, int dev, int64_t now_ns)
{
    struct sim_gpu *g = &sh->gpu[dev];
    int busy = 0;
    sim_gpu_lock(g);
    for (uint32_t i = 0; i < g->sms; i++)
        if (g->sm_free_ns[i] > now_ns)
            busy++;
    sim_gpu_unlock(g);
    return busy;
}
