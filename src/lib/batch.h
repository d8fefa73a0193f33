/*
 * batch.h - batch assembly for a queue in batch mode (`batch: {size,
 * max_wait}`): the handler gets `{"batch": [task, ...]}` once `size` tasks
 * wait or the oldest has waited `max_wait`.
 *
 * The task engine adds the id of each task as it becomes ready, asks
 * batch_due() (or arms a timer for batch_due_in_ms()), and then takes up
 * to `size` ids, oldest first, to build the handler's input.  Building
 * the JSON and reading the handler's `{"failed": [...]}` answer are done
 * elsewhere.
 *
 * Pure logic: no clock, no I/O; time is passed in as milliseconds.  The
 * buffer is allocated once by batch_init() with a fixed capacity (adds
 * beyond it fail with -ENOSPC) and released by batch_free().  Ids are
 * copied in; the caller keeps ownership of what it passes.
 */
#ifndef TEND_LIB_BATCH_H
#define TEND_LIB_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An id is an opaque NUL-terminated string of 1 to BATCH_ID_SIZE-1 bytes. */
#define BATCH_ID_SIZE 32
typedef char batch_id[BATCH_ID_SIZE];

/* The largest capacity batch_init() accepts. */
#define BATCH_CAPACITY_MAX 1000000

typedef struct batch_entry {
    batch_id id;
    int64_t ready_since_ms;
} batch_entry;

/* Fields are read-only outside batch.c. */
typedef struct batch {
    size_t size;          /* a full batch */
    int64_t max_wait_ms;  /* the oldest waits at most this long */
    size_t capacity;
    batch_entry *entries; /* [head, head + count), sorted by ready_since_ms */
    size_t head, count;
} batch;

/*
 * Sets b up empty, holding at most capacity ids.  Returns 0; -EINVAL for
 * size 0, a negative max_wait_ms, or a capacity below size or above
 * BATCH_CAPACITY_MAX; -ENOMEM.  On failure b is zeroed (batch_free() on it
 * is harmless).
 */
int batch_init(batch *b, size_t size, int64_t max_wait_ms, size_t capacity);

/* Releases the buffer and zeroes b; NULL-safe, idempotent. */
void batch_free(batch *b);

/*
 * Adds a copy of id, ready since ready_since_ms.  Entries are kept oldest
 * first; an id added with an earlier time than some already there goes
 * before them (equal times keep the order of adding).  The caller ensures
 * an id is not added twice.  Returns 0; -EINVAL for an empty or too long
 * id (BATCH_ID_SIZE - 1 bytes at most); -ENOSPC when full.
 */
int batch_add(batch *b, const char *id, int64_t ready_since_ms);

/*
 * Removes id (e.g. the task was cancelled while waiting).  O(count).
 * Returns 0 or -ENOENT.
 */
int batch_remove(batch *b, const char *id);

/* True when size ids wait, or the oldest has waited max_wait_ms at now_ms. */
bool batch_due(const batch *b, int64_t now_ms);

/* Ms until batch_due() turns true: 0 when due, -1 when empty. */
int64_t batch_due_in_ms(const batch *b, int64_t now_ms);

/*
 * Moves the oldest min(count, size, max) ids into ids_out (which holds max
 * ids) and returns how many.  It takes whether or not the batch is due:
 * the engine decides when (e.g. at shutdown it may flush).
 */
size_t batch_take(batch *b, batch_id *ids_out, size_t max);

/* Ids waiting. */
size_t batch_count(const batch *b);

/* When the oldest waiting id became ready (for the wait metric); INT64_MAX when empty. */
int64_t batch_oldest_ms(const batch *b);

#endif
