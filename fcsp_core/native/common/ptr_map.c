#include "ptr_map.h"

#include <stdlib.h>

static size_t slot_of(uint64_t key, size_t mask)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & mask;
}

static int grow(struct ptr_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    uint64_t *nk = calloc(ncap, sizeof *nk);
    void **nv = calloc(ncap, sizeof *nv);
    if (nk == NULL || nv == NULL) {
        free(nk);
        free(nv);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == 0)
            continue;
        size_t j = slot_of(m->keys[i], ncap - 1);
        while (nk[j] != 0)
            j = (j + 1) & (ncap - 1);
        nk[j] = m->keys[i];
        nv[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = nk;
    m->vals = nv;
    m->cap = ncap;
    return 0;
}

/* Index of key, or (size_t)-1. Caller holds mu. */
static size_t lookup(const struct ptr_map *m, uint64_t key)
{
    if (m->cap == 0)
        return (size_t)-1;
    size_t mask = m->cap - 1;
    for (size_t i = slot_of(key, mask);; i = (i + 1) & mask) {
        if (m->keys[i] == key)
            return i;
        if (m->keys[i] == 0)
            return (size_t)-1;
    }
}

int ptr_map_put(struct ptr_map *m, uint64_t key, void *val)
{
    int rc = -1;
    pthread_mutex_lock(&m->mu);
    if (key != 0 && lookup(m, key) == (size_t)-1 && ((m->count + 1) * 2 <= m->cap || grow(m) == 0)) {
        size_t mask = m->cap - 1, i = slot_of(key, mask);
        while (m->keys[i] != 0)
            i = (i + 1) & mask;
        m->keys[i] = key;
        m->vals[i] = val;
        m->count++;
        rc = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

void *ptr_map_get(struct ptr_map *m, uint64_t key)
{
    pthread_mutex_lock(&m->mu);
    size_t i = lookup(m, key);
    void *v = i == (size_t)-1 ? NULL : m->vals[i];
    pthread_mutex_unlock(&m->mu);
    return v;
}

void *ptr_map_take(struct ptr_map *m, uint64_t key)
{
    pthread_mutex_lock(&m->mu);
    size_t i = lookup(m, key);
    void *v = NULL;
    if (i != (size_t)-1) {
        v = m->vals[i];
        /* backward-shift deletion keeps linear probing chains intact without tombstones */
        size_t mask = m->cap - 1, j = i;
        m->keys[i] = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (m->keys[j] == 0)
                break;
            size_t h = slot_of(m->keys[j], mask);
            int stays = (j > i) ? (h > i && h <= j) : (h > i || h <= j);
            if (!stays) {
                m->keys[i] = m->keys[j];
                m->vals[i] = m->vals[j];
                m->keys[j] = 0;
                i = j;
            }
        }
        m->count--;
    }
    pthread_mutex_unlock(&m->mu);
    return v;
}

void *ptr_map_find(struct ptr_map *m, int (*fn)(uint64_t key, void *val, void *arg), void *arg)
{
    void *found = NULL;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] != 0 && fn(m->keys[i], m->vals[i], arg)) {
            found = m->vals[i];
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return found;
}
