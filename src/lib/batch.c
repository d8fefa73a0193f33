/* batch.c - see batch.h. */
#include "batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int batch_init(batch *b, size_t size, int64_t max_wait_ms, size_t capacity) {
    *b = (batch){0};
    if (size == 0 || max_wait_ms < 0 || capacity < size || capacity > BATCH_CAPACITY_MAX)
        return -EINVAL;
    batch_entry *e = calloc(capacity, sizeof(*e));
    if (!e)
        return -ENOMEM;
    *b = (batch){
        .size = size,
        .max_wait_ms = max_wait_ms,
        .capacity = capacity,
        .entries = e,
    };
    return 0;
}

void batch_free(batch *b) {
    if (!b)
        return;
    free(b->entries);
    *b = (batch){0};
}

int batch_add(batch *b, const char *id, int64_t ready_since_ms) {
    size_t len = id ? strnlen(id, BATCH_ID_SIZE) : 0;
    if (len == 0 || len >= BATCH_ID_SIZE)
        return -EINVAL;
    if (b->count >= b->capacity)
        return -ENOSPC;
    if (b->head + b->count == b->capacity) {
        /* The free room is all before head: slide the window down. */
        memmove(b->entries, b->entries + b->head, b->count * sizeof(*b->entries));
        b->head = 0;
    }
    /* Tasks mostly arrive in time order: the walk back usually stops at once. */
    size_t end = b->head + b->count, pos = end;
    while (pos > b->head && b->entries[pos - 1].ready_since_ms > ready_since_ms)
        pos--;
    memmove(b->entries + pos + 1, b->entries + pos, (end - pos) * sizeof(*b->entries));
    batch_entry *e = &b->entries[pos];
    memcpy(e->id, id, len);
    memset(e->id + len, 0, BATCH_ID_SIZE - len);
    e->ready_since_ms = ready_since_ms;
    b->count++;
    return 0;
}

int batch_remove(batch *b, const char *id) {
    if (!id)
        return -ENOENT;
    size_t end = b->head + b->count;
    for (size_t i = b->head; i < end; i++) {
        if (strncmp(b->entries[i].id, id, BATCH_ID_SIZE) != 0)
            continue;
        memmove(b->entries + i, b->entries + i + 1, (end - i - 1) * sizeof(*b->entries));
        if (--b->count == 0)
            b->head = 0;
        return 0;
    }
    return -ENOENT;
}

/* How long the oldest has waited at now_ms; 0 for a now before it. */
static uint64_t oldest_waited(const batch *b, int64_t now_ms) {
    int64_t oldest = b->entries[b->head].ready_since_ms;
    return now_ms > oldest ? (uint64_t)now_ms - (uint64_t)oldest : 0;
}

bool batch_due(const batch *b, int64_t now_ms) {
    if (b->count == 0)
        return false;
    return b->count >= b->size || oldest_waited(b, now_ms) >= (uint64_t)b->max_wait_ms;
}

int64_t batch_due_in_ms(const batch *b, int64_t now_ms) {
    if (b->count == 0)
        return -1;
    if (batch_due(b, now_ms))
        return 0;
    /* Not due: waited < max_wait_ms, so the difference fits. */
    return b->max_wait_ms - (int64_t)oldest_waited(b, now_ms);
}

size_t batch_take(batch *b, batch_id *ids_out, size_t max) {
    size_t n = b->count;
    if (n > b->size)
        n = b->size;
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++)
        memcpy(ids_out[i], b->entries[b->head + i].id, BATCH_ID_SIZE);
    b->head += n;
    b->count -= n;
    if (b->count == 0)
        b->head = 0;
    return n;
}

size_t batch_count(const batch *b) { return b->count; }

int64_t batch_oldest_ms(const batch *b) {
    return b->count ? b->entries[b->head].ready_since_ms : INT64_MAX;
}
