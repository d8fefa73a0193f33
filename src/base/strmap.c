/*
 * strmap.c - see strmap.h.  Linear probing, at most half full; FNV-1a.
 */
#include "strmap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s) {
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static strmap_slot *slot_of(strmap_slot *slots, size_t cap, const char *key) {
    size_t i = (size_t)hash(key) & (cap - 1);
    while (slots[i].key && strcmp(slots[i].key, key) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int resize(strmap *m, size_t cap) {
    strmap_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            *slot_of(slots, cap, m->slots[i].key) = m->slots[i];
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int strmap_init(strmap *m, size_t expected) {
    memset(m, 0, sizeof(*m));
    size_t cap = 8;
    while (cap / 2 < expected && cap < SIZE_MAX / 4)
        cap *= 2;
    return resize(m, cap);
}

void strmap_done(strmap *m) {
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

int strmap_put(strmap *m, const char *key, size_t value, size_t *existing) {
    if (m->cap == 0 || (m->n + 1) * 2 > m->cap) {
        int r = resize(m, m->cap ? m->cap * 2 : 8);
        if (r < 0)
            return r;
    }
    strmap_slot *s = slot_of(m->slots, m->cap, key);
    if (s->key) {
        if (existing)
            *existing = s->value;
        return 0;
    }
    *s = (strmap_slot){key, value};
    m->n++;
    return 1;
}

long strmap_get(const strmap *m, const char *key) {
    if (m->cap == 0)
        return -1;
    const strmap_slot *s = slot_of(m->slots, m->cap, key);
    return s->key ? (long)s->value : -1;
}
