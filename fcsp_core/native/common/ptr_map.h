/* A small thread-safe hash map from non-zero 64-bit keys (addresses, handles) to pointers. */
#ifndef FCSP_PTR_MAP_H
#define FCSP_PTR_MAP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct ptr_map {
    pthread_mutex_t mu;
    uint64_t *keys; /* 0: empty slot */
    void **vals;
    size_t cap; /* power of two, or 0 */
    size_t count;
};

#define PTR_MAP_INIT {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, 0}

/* 0 on success; -1 if the key is present already or memory ran out. */
int ptr_map_put(struct ptr_map *m, uint64_t key, void *val);
void *ptr_map_get(struct ptr_map *m, uint64_t key);
/* Removes the key and returns its value (NULL if absent): of two racing takes, one wins. */
void *ptr_map_take(struct ptr_map *m, uint64_t key);
/* Calls fn for each entry, under the map's lock, until fn returns non-zero; returns that value's entry value. */
void *ptr_map_find(struct ptr_map *m, int (*fn)(uint64_t key, void *val, void *arg), void *arg);

#endif
